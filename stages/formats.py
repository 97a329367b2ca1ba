"""Image file formats: one MIME table for photos read and images written, one extension table."""

from __future__ import annotations

from PIL import Image

# Pillow format name -> MIME type; MPO is a JPEG file, so it is labelled as one.
MIME = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
        "TIFF": "image/tiff", "BMP": "image/bmp", "GIF": "image/gif"}
# Output formats the pipeline writes ([write] format_copies, channel rendition presets) -> Pillow name
OUTPUT = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
EXTENSION = {"png": "png", "jpeg": "jpg", "webp": "webp"}


def mime_type(fmt: str) -> str:
    """MIME type of a Pillow format name ("JPEG") or an output format ("jpeg")."""
    key = OUTPUT.get(fmt, fmt).upper()
    return MIME.get(key) or Image.MIME.get(key) or "application/octet-stream"
