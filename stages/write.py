"""Encoding and atomic writes of images, audit layers and thumbnails."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from stages.atomic import write_bytes
from stages.png_encode import encode_png as _encode_png


def encode_png(pixels: np.ndarray, compress_level: int) -> bytes:
    """Lossless PNG with no metadata of its own: provenance comes from the C2PA manifest.

    Levels 1-3 are fast (ISA-L, stages.png_encode); 4-9 use zlib and are several times slower.
    """
    return _encode_png(pixels, compress_level)


RENDITION_MIME = {"jpeg": "image/jpeg", "webp": "image/webp"}
RENDITION_EXT = {"jpeg": "jpg", "webp": "webp"}


def format_copy_name(stem: str, fmt: str) -> str:
    """File name of a master image's JPEG/WebP copy ([write].renditions)."""
    return f"{stem}.{RENDITION_EXT[fmt]}"


def encode_rendition(pixels: np.ndarray, fmt: str, jpeg_quality: int) -> bytes:
    """JPEG (lossy, 4:4:4 so product edges keep their colour) or lossless WebP."""
    buf = io.BytesIO()
    im = Image.fromarray(pixels)
    if fmt == "jpeg":
        im.save(buf, format="JPEG", quality=jpeg_quality, subsampling=0, optimize=True)
    elif fmt == "webp":
        # Lossless; method 1 / quality 20 is ~4x faster than the defaults for ~10% larger files.
        im.save(buf, format="WEBP", lossless=True, quality=20, method=1)
    else:
        raise ValueError(f"unknown rendition format {fmt!r}")
    return buf.getvalue()


def write_png(path: Path, pixels: np.ndarray, compress_level: int) -> None:
    write_bytes(path, encode_png(pixels, compress_level))


def encode_rgba(rgb: np.ndarray, alpha: np.ndarray, compress_level: int) -> bytes:
    return encode_png(cv2.merge([rgb, alpha]), compress_level)


def write_rgba(path: Path, rgb: np.ndarray, alpha: np.ndarray, compress_level: int) -> None:
    write_bytes(path, encode_rgba(rgb, alpha, compress_level))


def thumbnail_jpeg(pixels: np.ndarray, size: int) -> bytes:
    """A JPEG no larger than `size` px on its long edge; cut-outs (RGBA) are shown on white.

    Made once per image: the same bytes go into the C2PA manifest and into layers/*.jpg.
    """
    h, w = pixels.shape[:2]
    if pixels.ndim == 3 and pixels.shape[2] == 3 and max(h, w) > size:  # area average: a few ms at 1024²
        scale = size / max(h, w)
        pixels = cv2.resize(pixels, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    im = Image.fromarray(pixels)
    if im.mode == "RGBA":
        bg = Image.new("RGB", im.size, (255, 255, 255))
        bg.paste(im, mask=im.getchannel("A"))
        im = bg
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="JPEG", quality=82)
    return buf.getvalue()
