"""Decode one product photo's bytes into a normalised 8-bit sRGB array (the bytes are read by `ops.sources`)."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from stages.errors import ConfigError, InputError

_SRGB_NAMES = ("srgb iec61966-2.1", "srgb iec61966-2-1", "srgb built-in", "srgb")
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
_SIGNATURES = ((b"%pdf", "PDF"), (b"%!ps", "EPS"), (b"<!doctype html", "HTML"), (b"<html", "HTML"))


@dataclass(frozen=True)
class LoadOptions:
    """[load]: what a photo may be before it is decoded (and, for `ops.sources`, downloaded)."""

    max_pixels: int = 40_000_000  # refuse larger images before decoding them (decompression bombs)
    max_bytes: int = 50_000_000  # refuse larger files and downloads
    min_side: int = 64  # smaller photos cannot make a usable product shot
    allowed_formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "MPO")
    url_timeout_s: float = 20.0
    # What a catalog row may reach (read by ops.fetch and ops.catalog): photo URLs only public
    # addresses unless named here (host names, '*.domain', IP addresses or CIDR ranges)...
    allow_hosts: tuple[str, ...] = ()
    # ...and local photos only under the catalog's own folder and these (relative to the config file).
    local_roots: tuple[str, ...] = ()

    def check(self, where: str) -> None:
        if self.max_pixels <= 0:
            raise ConfigError(f"{where}.max_pixels = {self.max_pixels}: must be > 0")


@dataclass(frozen=True)
class LoadedImage:
    rgb: np.ndarray  # HxWx3 uint8, sRGB, EXIF orientation applied
    alpha: np.ndarray | None  # HxW uint8, only when some pixel is not fully opaque
    source_bytes: bytes  # exactly what was read: hashed and used as the C2PA ingredient
    sha256: str
    format: str  # Pillow format name, e.g. "JPEG"
    info: dict[str, Any]  # JSON-able facts about the original file


def _mp(n: int) -> str:
    return f"{n / 1e6:.1f}".removesuffix(".0") + " MP"


def _sniff(data: bytes) -> str:
    """A name for bytes Pillow will not open for us, so the message says what was sent."""
    head = data[:1024].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")) and b"<svg" in head:
        return "SVG"
    for sig, fmt in _SIGNATURES:
        if head.startswith(sig):
            return fmt
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        return "HEIC/AVIF"
    try:
        return Image.open(io.BytesIO(data)).format or "unknown"  # header only; never loaded
    except Exception:
        pass
    try:
        data[:4096].decode("utf-8")
        return "text, not an image"
    except UnicodeDecodeError:
        return "unrecognised data"


def _declared_size(data: bytes, formats: list[str]) -> tuple[int, int] | None:
    """Header size when Pillow refused to open a bomb, so the message can give the dimensions."""
    for fmt in formats:
        factory, accept = Image.OPEN[fmt]
        try:
            if accept is None or accept(data[:16]):
                return factory(io.BytesIO(data), "").size
        except Exception:
            continue
    return None


def _to_basic_mode(im: Image.Image) -> tuple[Image.Image, int]:
    """Reduce every Pillow mode to L, LA, RGB, RGBA or CMYK with 8-bit samples; also the source depth."""
    mode = im.mode
    if mode in ("L", "LA", "RGB", "RGBA", "CMYK"):
        return im, 8
    if mode == "1":
        return im.convert("L"), 1
    if mode in ("P", "PA"):
        keep_alpha = mode == "PA" or "transparency" in im.info
        return im.convert("RGBA" if keep_alpha else "RGB"), 8
    if mode.startswith("I;16") or mode == "I":  # 16-bit grey (Pillow decodes some as 32-bit "I")
        a = np.clip(np.asarray(im).astype(np.int64), 0, 65535)
        return Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8)), 16
    if mode in ("RGBa", "La"):
        return im.convert(mode.upper()), 8
    if mode in ("RGBX", "YCbCr", "HSV"):
        return im.convert("RGB"), 8
    raise ValueError(f"unsupported pixel mode {mode}")


def _to_srgb(im: Image.Image, icc: bytes | None) -> tuple[Image.Image, str]:
    """Convert colour to sRGB through the embedded profile; without one, assume sRGB."""
    alpha = im.getchannel("A") if im.mode in ("LA", "RGBA") else None
    base = im.convert(im.mode[:-1]) if alpha is not None else im
    note = "none"
    if icc:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            if ImageCms.getProfileDescription(src).strip().lower() in _SRGB_NAMES:
                note = "srgb"
            else:
                base = ImageCms.profileToProfile(
                    base, src, _SRGB, renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
                    outputMode="RGB", flags=ImageCms.Flags.BLACKPOINTCOMPENSATION)
                note = "converted"
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            note = "ignored-invalid"  # broken or mismatched profile: the pixels are still usable
    if base.mode == "CMYK" and note != "converted":
        note = "cmyk-naive"
    rgb = base if base.mode == "RGB" else base.convert("RGB")  # converting RGB to RGB would copy it
    return (Image.merge("RGBA", (*rgb.split(), alpha)) if alpha is not None else rgb), note


def decode_image(data: bytes, cfg: LoadOptions, name: str = "") -> LoadedImage:
    """Decode untrusted bytes: allowlisted format, pixel budget checked before decoding."""
    where = name or "image"
    if not data:
        raise InputError(f"{where}: file is empty (0 bytes)")
    Image.init()
    allowed = [f.upper() for f in cfg.allowed_formats if f.upper() in Image.OPEN]
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=allowed)
        except UnidentifiedImageError:
            raise InputError(f"{where}: not a supported image format ({_sniff(data)}); "
                             f"allowed: {', '.join(cfg.allowed_formats)}") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            size = _declared_size(data, allowed)
            shown = f"{size[0]}x{size[1]} = {_mp(size[0] * size[1])}" if size else str(exc)
            limit = min(cfg.max_pixels, Image.MAX_IMAGE_PIXELS or cfg.max_pixels)
            raise InputError(f"{where}: image is {shown}, over the {_mp(limit)} limit") from None
        except Exception as exc:
            raise InputError(f"{where}: corrupt or unreadable image header: {exc}") from None
        fmt = im.format or "unknown"
        w, h = im.size
        if w * h > cfg.max_pixels:
            raise InputError(f"{where}: image is {w}x{h} = {_mp(w * h)}, over the {_mp(cfg.max_pixels)} limit")
        if min(w, h) < cfg.min_side:
            raise InputError(f"{where}: image is {w}x{h}, smaller than the {cfg.min_side} px minimum side")
        depth_hint = 16 if any(";16" in str(t.args) for t in getattr(im, "tile", ()) or ()) else None
        try:
            frames = int(getattr(im, "n_frames", 1))
            im.seek(0)
            im.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InputError(f"{where}: {fmt} frame is too large: {exc}") from None
        except Exception as exc:
            raise InputError(f"{where}: corrupt or truncated {fmt}: {exc}") from None
    try:
        orientation = int(im.getexif().get(0x0112, 1))
    except Exception:
        orientation = 1  # unreadable EXIF does not make the pixels unusable
    icc = im.info.get("icc_profile")
    mode = im.mode
    try:
        upright = ImageOps.exif_transpose(im) if orientation != 1 else im
        basic, depth = _to_basic_mode(upright)
        out, icc_note = _to_srgb(basic, icc)
    except Exception as exc:
        raise InputError(f"{where}: cannot convert {fmt} ({mode}) to RGB: {exc}") from None
    arr = np.array(out, dtype=np.uint8)
    rgb = np.ascontiguousarray(arr[..., :3])
    alpha = None
    if arr.shape[-1] == 4 and arr[..., 3].min() < 255:
        alpha = np.ascontiguousarray(arr[..., 3])
    info = {"mode": mode, "size": [w, h], "exif_orientation": orientation, "icc": icc_note,
            "bit_depth": depth_hint or depth, "frames": frames}
    return LoadedImage(rgb=rgb, alpha=alpha, source_bytes=data, sha256=hashlib.sha256(data).hexdigest(),
                       format=fmt, info=info)
