"""A fast lossless PNG encoder for 8-bit grey, RGB and RGBA arrays.

PNG encoding was the largest CPU cost after the scene generator: Pillow tries five row filters
per row and deflates with zlib. Here every row gets the "up" filter (one vectorised subtraction)
and the stream is deflated with ISA-L (`isal`), which at its levels 1-3 is ~4x faster than zlib's
level 1 for similar sizes. Any PNG decoder reads the result; the pipeline's checks decode every
published file with Pillow and compare it with the product layer.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from isal import isal_zlib

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPE = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type (grey, RGB, RGBA)
_FILTER_UP = 2


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", isal_zlib.crc32(data, isal_zlib.crc32(kind)))


def _deflate(raw: bytes, level: int) -> bytes:
    """zlib stream: 0 stored, 1-3 ISA-L (fast), 4-9 zlib at that level (smaller, several times slower)."""
    if 1 <= level <= 3:
        return isal_zlib.compress(raw, level)
    return zlib.compress(raw, level)


def encode_png(pixels: np.ndarray, compress_level: int) -> bytes:
    """PNG bytes of an HxW, HxWx1, HxWx3 or HxWx4 uint8 array; no metadata chunks."""
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in _COLOR_TYPE):
        raise ValueError(f"cannot encode a {pixels.dtype} array of shape {pixels.shape} as an 8-bit PNG")
    if not 0 <= compress_level <= 9:
        raise ValueError(f"PNG compress level {compress_level}: must be 0..9")
    h, w = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if h == 0 or w == 0:
        raise ValueError(f"cannot encode an empty {w}x{h} image as a PNG")
    rows = np.ascontiguousarray(pixels).reshape(h, w * channels)
    filtered = np.empty((h, w * channels + 1), np.uint8)
    filtered[:, 0] = _FILTER_UP
    filtered[0, 1:] = rows[0]  # the row above the first is taken as zeros
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # modulo 256, as PNG defines it
    header = struct.pack(">IIBBBBB", w, h, 8, _COLOR_TYPE[channels], 0, 0, 0)
    return b"".join((_SIGNATURE, _chunk(b"IHDR", header),
                     _chunk(b"IDAT", _deflate(filtered.tobytes(), compress_level)), _chunk(b"IEND", b"")))
