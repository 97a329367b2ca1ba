"""Encoding: lossless PNG, the JPEG/WebP formats, RGBA layers and JPEG thumbnails (arrays in, bytes out)."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
from isal import isal_zlib
from PIL import Image

from stages.resample import shrink

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPE = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type (grey, RGB, RGBA)
_FILTER_UP = 2


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", isal_zlib.crc32(data, isal_zlib.crc32(kind)))


def _deflate(raw: bytes | np.ndarray, level: int) -> bytes:
    """zlib stream: 0 stored, 1-3 ISA-L (fast), 4-9 zlib at that level (smaller, several times slower).
    `raw` may be a C-contiguous uint8 array: both compressors read its buffer, no bytes copy."""
    if 1 <= level <= 3:
        return isal_zlib.compress(raw, level)
    return zlib.compress(raw, level)


def encode_png(pixels: np.ndarray, compress_level: int) -> bytes:
    """Lossless PNG bytes of an HxW, HxWx1, HxWx3 or HxWx4 uint8 array, with no metadata of its own
    (provenance comes from the C2PA manifest).

    PNG encoding was the largest CPU cost after the scene generator: Pillow tries five row filters
    per row and deflates with zlib. Here every row gets the "up" filter (one vectorised
    subtraction) and levels 1-3 deflate with ISA-L (`isal`), ~4x faster than zlib's level 1 for
    similar sizes; 4-9 use zlib (smaller, several times slower). Any PNG decoder reads the result.
    """
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
                     _chunk(b"IDAT", _deflate(filtered, compress_level)), _chunk(b"IEND", b"")))


def encode_format(pixels: np.ndarray, fmt: str, jpeg_quality: int, png_level: int = 1) -> bytes:
    """`fmt` (png, jpeg, webp): PNG as `encode_png`, JPEG lossy (4:4:4 so product edges keep their
    colour) or lossless WebP."""
    if fmt == "png":
        return encode_png(pixels, png_level)
    if fmt == "jpeg":
        return _encode_jpeg(pixels, jpeg_quality)
    buf = io.BytesIO()
    im = Image.fromarray(pixels)
    if fmt == "webp":
        # Lossless; method 1 / quality 20 is ~4x faster than the defaults for ~10% larger files.
        im.save(buf, format="WEBP", lossless=True, quality=20, method=1)
    else:
        raise ValueError(f"unknown image format {fmt!r}")
    return buf.getvalue()


def _encode_jpeg(pixels: np.ndarray, quality: int) -> bytes:
    """A baseline JPEG, 4:4:4, optimised Huffman tables: libjpeg-turbo through OpenCV, which writes
    the same bytes as Pillow's `save(quality=q, subsampling=0, optimize=True)` (the same library and
    settings: JFIF header, standard tables scaled by `quality`) in about two thirds of the time, as
    it encodes the whole image in one call instead of Pillow's buffer-sized pieces."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [
        cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_OPTIMIZE, 1,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    if not ok:
        raise ValueError(f"JPEG encoding failed for a {pixels.shape} image")
    return buf.tobytes()


def encode_rgba(rgb: np.ndarray, alpha: np.ndarray, compress_level: int) -> bytes:
    """An RGBA PNG (`encode_png`) of colour and alpha: the 4-channel image is made by OpenCV's
    RGB-to-RGBA conversion with the alpha channel put in after (about 2.5x faster than a merge)."""
    rgba = cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
    cv2.insertChannel(alpha, rgba, 3)
    return encode_png(rgba, compress_level)


def thumbnail_jpeg(pixels: np.ndarray, size: int) -> bytes:
    """A JPEG no larger than `size` px on its long edge; cut-outs (RGBA) are shown on white.

    Made once per image: the same bytes go into the C2PA manifest and into layers/*.jpg.
    """
    h, w = pixels.shape[:2]
    if pixels.ndim == 3 and pixels.shape[2] == 3 and max(h, w) > size:  # area average: a few ms at 1024², ~5 ms from 4 MP
        scale = size / max(h, w)
        pixels = shrink(pixels, (max(1, round(w * scale)), max(1, round(h * scale))))
    im = Image.fromarray(pixels)
    if im.mode == "RGBA":
        bg = Image.new("RGB", im.size, (255, 255, 255))
        bg.paste(im, mask=im.getchannel("A"))
        im = bg
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="JPEG", quality=82)
    return buf.getvalue()
