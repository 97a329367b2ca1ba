"""Where a row's bytes come from: its photo (a local path or an http(s) URL) and its style reference."""

from __future__ import annotations

import hashlib
import http.client
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from pathlib import Path

from ops.config import Config
from ops.errors import TransientError
from stages.errors import InputError, StagingError
from stages.load import LoadedImage, LoadOptions, decode_image
from stages.scene.base import ReferenceImage

_CHUNK = 1 << 16
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
# Servers often label images generically; the decoder decides what the bytes really are.
_GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream"}
# HTTP answers that mean "not now" rather than "never": the row is tried again once.
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class TransientInputError(InputError, TransientError):
    """A photo could not be fetched for a reason that may pass: the row is tried again."""


class ReferenceImageError(StagingError):
    """The reference image named by a row or the config cannot be read."""


def _mb(n: int) -> str:
    for scale, unit in ((1e6, "MB"), (1e3, "kB")):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def _display(source: str) -> str:
    """The source as shown in messages: URL queries are dropped, they often carry access tokens."""
    if _SCHEME.match(source) and "://" in source:
        p = urllib.parse.urlsplit(source)
        return urllib.parse.urlunsplit((p.scheme, p.netloc, p.path, "", ""))
    return source


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """urllib would follow a redirect to ftp:; a photo URL may only lead to http(s)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise InputError(f"{_display(req.full_url)}: redirected to a non-http URL ({_display(newurl)})")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects)


def _fetch(url: str, cfg: LoadOptions) -> bytes:
    name = _display(url)
    deadline = time.monotonic() + cfg.url_timeout_s
    req = urllib.request.Request(url, headers={"User-Agent": "product-staging/1", "Accept": "image/*"})
    try:
        with _OPENER.open(req, timeout=cfg.url_timeout_s) as resp:
            ctype = (resp.headers.get_content_type() if resp.headers.get("Content-Type") else "").lower()
            if ctype not in _GENERIC_TYPES and not ctype.startswith("image/"):
                raise InputError(f"{name}: server sent {ctype}, not an image")
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > cfg.max_bytes:
                raise InputError(f"{name}: download is {_mb(int(length))}, over the {_mb(cfg.max_bytes)} limit")
            buf = bytearray()
            while chunk := resp.read(_CHUNK):
                buf += chunk
                if len(buf) > cfg.max_bytes:
                    raise InputError(f"{name}: download is over the {_mb(cfg.max_bytes)} limit")
                if time.monotonic() > deadline:
                    raise TimeoutError
            return bytes(buf)
    except urllib.error.HTTPError as exc:
        kind = TransientInputError if exc.code in _RETRY_STATUS else InputError
        raise kind(f"{name}: server answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise TransientInputError(f"{name}: timed out after {cfg.url_timeout_s:g} s") from None
        kind = TransientInputError if _passing(exc.reason) else InputError
        raise kind(f"{name}: could not fetch ({exc.reason})") from None
    except TimeoutError:
        raise TransientInputError(f"{name}: timed out after {cfg.url_timeout_s:g} s") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # reset, bad framing, malformed URL
        kind = TransientInputError if _passing(exc) else InputError
        raise kind(f"{name}: could not fetch ({exc})") from None


def _passing(reason: object) -> bool:
    """A network failure that may pass: a refused, reset or closed connection, a timeout, or a name
    server that could not answer for now (EAI_AGAIN)."""
    if isinstance(reason, (ConnectionError, TimeoutError)):
        return True
    return isinstance(reason, socket.gaierror) and reason.errno == socket.EAI_AGAIN


def read_source(source: str, cfg: LoadOptions) -> bytes:
    """The raw bytes of a local photo or an http(s) URL, bounded by `cfg.max_bytes`.

    Photos come from merchants, so every input is treated as hostile: downloads are bounded in
    bytes and time, redirects may only lead to http(s), and every failure becomes an `InputError`
    that names the photo, so one bad row is skipped instead of stopping the run. A failure that
    may pass on a second try (a timeout, HTTP 5xx or 429, a reset connection) is a
    `TransientInputError`, which the run retries once.
    """
    m = _SCHEME.match(source)
    if m:
        scheme = m.group(1).lower()
        if scheme in ("http", "https"):
            return _fetch(source, cfg)
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
            raise InputError(f"{source}: file is {_mb(size)}, over the {_mb(cfg.max_bytes)} limit")
        with path.open("rb") as fh:
            data = fh.read(cfg.max_bytes + 1)  # the file may grow after stat()
    except PermissionError:
        raise InputError(f"{source}: permission denied") from None
    except OSError as exc:
        raise InputError(f"{source}: could not read ({exc.strerror or exc})") from None
    if not data:
        raise InputError(f"{source}: file is empty (0 bytes)")
    if len(data) > cfg.max_bytes:
        raise InputError(f"{source}: file is over the {_mb(cfg.max_bytes)} limit")
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
