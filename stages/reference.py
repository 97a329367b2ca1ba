"""Style reference images: read once per worker, shared by every row that names them.

A campaign names one moodboard shot for thousands of SKUs, so decoded references are kept
(keyed by path, size and modification time) instead of being read for every product.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path

from stages.config import LoadConfig
from stages.errors import StagingError
from stages.load import decode_image, read_source
from stages.scene import ReferenceImage

_CACHE: OrderedDict[tuple[str, int, int], ReferenceImage] = OrderedDict()
_LOCK = threading.Lock()
CACHE_SIZE = 8


class ReferenceImageError(StagingError):
    """The reference image named by a row or the config cannot be read."""


def load_reference(path: str, cfg: LoadConfig) -> ReferenceImage:
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
