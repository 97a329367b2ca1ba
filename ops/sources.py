"""Where a row's bytes come from: its photo (a local path or an http(s) URL) and its style reference."""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from pathlib import Path

from ops.config import Config
from ops.fetch import fetch, shown, shown_size
from stages.errors import InputError, StagingError
from stages.load import LoadedImage, LoadOptions, decode_image
from stages.scene.base import ReferenceImage

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")


class ReferenceImageError(StagingError):
    """The reference image named by a row or the config cannot be read."""


def _display(source: str) -> str:
    """The source as shown in messages: a URL without credentials or query (they carry secrets)."""
    return shown(source) if _SCHEME.match(source) and "://" in source else source


def read_source(source: str, cfg: LoadOptions) -> bytes:
    """The raw bytes of a local photo or an http(s) URL, bounded by `cfg.max_bytes`.

    Photos come from merchants, so every input is treated as hostile: downloads are bounded in
    bytes and time and reach only the addresses `ops.fetch` allows, and every failure becomes an
    `InputError` that names the photo, so one bad row is skipped instead of stopping the run. A
    failure that may pass on a second try (a timeout, HTTP 5xx or 429, a reset connection) is a
    `TransientInputError`, which the run retries once.
    """
    m = _SCHEME.match(source)
    if m:
        scheme = m.group(1).lower()
        if scheme in ("http", "https"):
            return fetch(source, cfg)
        raise InputError(f"{_display(source)}: unsupported URL scheme '{scheme}:' (use http, https or a local path)")
    path = Path(source).expanduser()
    try:
        if not path.exists():
            raise InputError(f"{source}: photo not found")
        if path.is_dir():
            raise InputError(f"{source}: is a directory, not a photo")
        if not path.is_file():
            raise InputError(f"{source}: not a regular file")
        size = path.stat().st_size
        if size > cfg.max_bytes:
            raise InputError(f"{source}: file is {shown_size(size)}, over the {shown_size(cfg.max_bytes)} limit")
        with path.open("rb") as fh:
            data = fh.read(cfg.max_bytes + 1)  # the file may grow after stat()
    except PermissionError:
        raise InputError(f"{source}: permission denied") from None
    except OSError as exc:
        raise InputError(f"{source}: could not read ({exc.strerror or exc})") from None
    if not data:
        raise InputError(f"{source}: file is empty (0 bytes)")
    if len(data) > cfg.max_bytes:
        raise InputError(f"{source}: file is over the {shown_size(cfg.max_bytes)} limit")
    return data


def load_image(source: str, cfg: LoadOptions) -> LoadedImage:
    """Read and decode one photo; every failure is an `InputError` naming the source."""
    return decode_image(read_source(source, cfg), cfg, name=_display(source))


# Decoded style references, keyed by path, size and modification time: a campaign names one
# moodboard shot for thousands of SKUs, so it is read once per worker, not once per product.
_CACHE: OrderedDict[tuple[str, int, int], ReferenceImage] = OrderedDict()
_LOCK = threading.Lock()
CACHE_SIZE = 8


def load_reference(path: str, cfg: LoadOptions) -> ReferenceImage:
    """The decoded reference at `path` (an absolute or resolved local path)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise ReferenceImageError(f"reference image {path}: {exc.strerror or exc}") from exc
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    try:
        data = read_source(str(p), cfg)
        image = decode_image(data, cfg, name=str(p))
    except StagingError as exc:
        raise ReferenceImageError(f"reference image {path}: {exc}") from exc
    ref = ReferenceImage(image.rgb, hashlib.sha256(data).hexdigest(), p.name)
    with _LOCK:
        _CACHE[key] = ref
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return ref


def reference_for(cfg: Config, row_reference: str) -> ReferenceImage | None:
    """The row's reference image, else [scene].reference_image (relative to the config file), else none."""
    path = row_reference or (str(cfg.resolve(cfg.scene.reference_image)) if cfg.scene.reference_image else "")
    return load_reference(path, cfg.load) if path else None
