"""Loading photos: odd but valid files normalise to 8-bit sRGB, hostile ones become InputError."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from stages.errors import InputError
from stages.formats import mime_type
from stages.load import LoadedImage, LoadOptions, decode_image

ROOT = Path(__file__).resolve().parents[2]
SHOE = ROOT / "catalog" / "images" / "19_shoes_black-suede_white.jpg"
CUP = ROOT / "catalog" / "images" / "15_kitchen_coffee-cup_on-wood.png"
CFG = LoadOptions()

# D50-adapted sRGB primaries, as stored in ICC matrix/TRC profiles.
R_XYZ, G_XYZ, B_XYZ = (0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141)
D50 = (0.9642, 1.0, 0.8249)


def cfg(**kw: object) -> LoadOptions:
    return dataclasses.replace(CFG, **kw)


def load_image(path: str, options: LoadOptions) -> LoadedImage:
    """A photo file's bytes decoded as the pipeline decodes them (reading is ops.sources' work)."""
    return decode_image(Path(path).read_bytes(), options, name=str(path))


# --- file builders -------------------------------------------------------------------------


def png_bytes(w: int, h: int, depth: int, ctype: int, raw: bytes = b"") -> bytes:
    """A PNG written chunk by chunk, so the header can claim any size."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz(v: tuple[float, float, float]) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(c) for c in v)


def _desc(text: str) -> bytes:
    t = text.encode() + b"\0"
    return b"desc\0\0\0\0" + struct.pack(">I", len(t)) + t + struct.pack(">IIHB", 0, 0, 0, 0) + b"\0" * 67


def icc_profile(space: bytes, pcs_class: bytes, tags: dict[bytes, bytes]) -> bytes:
    """A minimal ICC v2 profile (header, tag table, tags) for the given colour space."""
    tags = {b"desc": _desc("test profile"), b"wtpt": _xyz(D50), b"cprt": b"text\0\0\0\0none\0", **tags}
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags.items():
        data += b"\0" * (-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (struct.pack(">I", size) + b"lcms" + struct.pack(">I", 0x02100000) + pcs_class + space
              + b"XYZ " + b"\0" * 12 + b"acsp" + b"\0" * 24 + struct.pack(">I", 0)
              + b"".join(_s15(c) for c in D50) + b"\0" * 48)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def rgb_profile_swapped() -> bytes:
    """An RGB profile whose first channel is blue and third is red: conversion must swap them."""
    curv = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(2.2 * 256))
    return icc_profile(b"RGB ", b"mntr", {b"rXYZ": _xyz(B_XYZ), b"gXYZ": _xyz(G_XYZ), b"bXYZ": _xyz(R_XYZ),
                                         b"rTRC": curv, b"gTRC": curv, b"bTRC": curv})


def cmyk_profile(swap_cm: bool) -> bytes:
    """A CMYK profile with a 2-point lut (simple subtractive model); swap_cm makes cyan ink act as magenta."""
    clut = []
    for c, m, y, k in itertools.product((0, 1), repeat=4):  # grid order: first channel slowest
        ink = (m, c, y) if swap_cm else (c, m, y)
        rgb = [(1 - v) * (1 - k) for v in ink]
        xyz = [sum(col[i] * v for col, v in zip((R_XYZ, G_XYZ, B_XYZ), rgb)) for i in range(3)]
        clut += [min(65535, round(v * 32768)) for v in xyz]  # XYZ PCS: 1.0 is 0x8000
    identity = struct.pack(">2H", 0, 65535)
    mft2 = (b"mft2\0\0\0\0" + bytes([4, 3, 2, 0])
            + b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1)) + struct.pack(">HH", 2, 2)
            + identity * 4 + struct.pack(f">{len(clut)}H", *clut) + identity * 3)
    return icc_profile(b"CMYK", b"prtr", {b"A2B0": mft2})


def save(tmp_path: Path, name: str, im: Image.Image, **params: object) -> Path:
    path = tmp_path / name
    im.save(path, **params)
    return path


# --- valid images --------------------------------------------------------------------------


def test_real_jpeg_loads_with_hash_and_facts() -> None:
    img = load_image(str(SHOE), CFG)
    assert isinstance(img, LoadedImage)
    assert img.rgb.shape == (534, 400, 3) and img.rgb.dtype == np.uint8
    assert img.rgb.flags["C_CONTIGUOUS"]
    assert img.alpha is None
    data = SHOE.read_bytes()
    assert img.source_bytes == data
    assert img.sha256 == hashlib.sha256(data).hexdigest()
    assert img.format == "JPEG" and mime_type(img.format) == "image/jpeg"
    assert img.info["size"] == [400, 534] and img.info["mode"] == "RGB" and img.info["frames"] == 1
    assert img.info["icc"] == "none" and img.info["exif_orientation"] == 1 and img.info["bit_depth"] == 8
    json.dumps(img.info)  # recorded as-is in run records
    # Same pixels as a plain Pillow decode: nothing was altered for an untagged sRGB photo.
    assert np.array_equal(img.rgb, np.asarray(Image.open(SHOE).convert("RGB")))


def test_real_png_loads() -> None:
    img = load_image(str(CUP), CFG)
    assert img.rgb.shape == (400, 600, 3) and img.format == "PNG"


def test_exif_orientation_6_is_applied(tmp_path: Path) -> None:
    a = np.zeros((64, 128, 3), np.uint8)
    a[:, :64] = (255, 0, 0)  # left half red
    a[:, 64:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(tmp_path, "rot.jpg", Image.fromarray(a), exif=exif.tobytes(), quality=95)
    img = load_image(str(path), CFG)
    # Orientation 6 means "rotate 90 degrees clockwise to display": the left edge goes to the top.
    assert img.rgb.shape == (128, 64, 3)
    top, bottom = img.rgb[10, 32].astype(int), img.rgb[118, 32].astype(int)
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60
    assert img.info["exif_orientation"] == 6 and img.info["size"] == [128, 64]


def test_embedded_rgb_profile_is_converted_to_srgb(tmp_path: Path) -> None:
    a = np.zeros((64, 64, 3), np.uint8)
    a[:, :32] = (255, 0, 0)
    a[:, 32:] = (128, 128, 128)
    path = save(tmp_path, "swapped.png", Image.fromarray(a), icc_profile=rgb_profile_swapped())
    img = load_image(str(path), CFG)
    assert img.info["icc"] == "converted"
    r, g, b = img.rgb[5, 5].astype(int)
    assert b > 230 and r < 30 and g < 30  # the profile says channel 1 is blue
    grey = img.rgb[5, 50].astype(int)
    assert grey.max() - grey.min() <= 3 and 110 < grey.mean() < 145  # neutrals stay neutral


def test_profile_conversion_keeps_alpha(tmp_path: Path) -> None:
    im = Image.new("RGBA", (64, 64), (255, 0, 0, 7))
    img = load_image(str(save(tmp_path, "a.png", im, icc_profile=rgb_profile_swapped())), CFG)
    assert img.alpha is not None and img.alpha[0, 0] == 7
    assert img.rgb[0, 0, 2] > 230 and img.rgb[0, 0, 0] < 30


def test_broken_icc_profile_is_ignored_not_fatal(tmp_path: Path) -> None:
    path = save(tmp_path, "bad.png", Image.new("RGB", (64, 64), (10, 200, 30)), icc_profile=b"not a profile")
    img = load_image(str(path), CFG)
    assert img.info["icc"] == "ignored-invalid"
    assert tuple(img.rgb[0, 0]) == (10, 200, 30)


def test_cmyk_jpeg_without_profile_is_converted_naively(tmp_path: Path) -> None:
    path = save(tmp_path, "cmyk.jpg", Image.new("CMYK", (64, 64), (0, 255, 255, 0)), quality=95)
    img = load_image(str(path), CFG)
    r, g, b = img.rgb[32, 32].astype(int)
    assert r > 200 and g < 60 and b < 60
    assert img.info["icc"] == "cmyk-naive" and img.info["mode"] == "CMYK"


@pytest.mark.parametrize(("swap", "channel"), [(False, 0), (True, 1)])
def test_cmyk_jpeg_with_profile_goes_through_the_profile(tmp_path: Path, swap: bool, channel: int) -> None:
    im = Image.new("CMYK", (64, 64), (0, 255, 255, 0))  # magenta + yellow ink: red in a normal press
    path = save(tmp_path, "cmyk_icc.jpg", im, quality=95, icc_profile=cmyk_profile(swap))
    img = load_image(str(path), CFG)
    assert img.info["icc"] == "converted"
    px = img.rgb[32, 32].astype(int)
    assert px[channel] > 180 and all(px[i] < 80 for i in range(3) if i != channel), px


def test_16bit_grey_png_uses_full_8bit_range(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 256).round().astype(np.uint16)
    ramp[128] = 128 * 257  # exactly 128 in 8 bits
    path = save(tmp_path, "g16.png", Image.fromarray(np.tile(ramp, (64, 1))))
    img = load_image(str(path), CFG)
    row = img.rgb[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255 and row[128] == 128
    assert np.all(np.diff(row) >= 0) and len(np.unique(row)) > 200  # scaled, not clipped
    assert np.array_equal(img.rgb[..., 0], img.rgb[..., 2])
    assert img.info["bit_depth"] == 16


def test_16bit_rgb_png_is_scaled(tmp_path: Path) -> None:
    a = np.zeros((64, 64, 3), ">u2")
    a[..., 0], a[..., 1], a[..., 2] = 0xFFFF, 0x8080, 0x0000
    raw = b"".join(b"\0" + a[i].tobytes() for i in range(64))
    path = tmp_path / "rgb48.png"
    path.write_bytes(png_bytes(64, 64, 16, 2, raw))
    img = load_image(str(path), CFG)
    assert tuple(img.rgb[0, 0]) == (255, 128, 0)
    assert img.info["bit_depth"] == 16


def test_palette_png_with_transparency_keeps_alpha(tmp_path: Path) -> None:
    im = Image.new("P", (64, 64), 1)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(0, (0, 0, 32, 64))
    path = save(tmp_path, "pal.png", im, transparency=0)
    img = load_image(str(path), CFG)
    assert img.alpha is not None and img.alpha.shape == (64, 64) and img.alpha.dtype == np.uint8
    assert img.alpha[0, 0] == 0 and img.alpha[0, 63] == 255
    assert tuple(img.rgb[0, 63]) == (255, 0, 0)


def test_rgba_with_real_transparency_keeps_alpha(tmp_path: Path) -> None:
    a = np.full((64, 64, 4), 255, np.uint8)
    a[0, 0, 3] = 254
    img = load_image(str(save(tmp_path, "a.png", Image.fromarray(a))), CFG)
    assert img.alpha is not None and img.alpha[0, 0] == 254 and img.alpha.flags["C_CONTIGUOUS"]
    assert img.rgb.shape == (64, 64, 3)


def test_opaque_rgba_drops_alpha(tmp_path: Path) -> None:
    path = save(tmp_path, "opaque.png", Image.new("RGBA", (64, 64), (1, 2, 3, 255)))
    img = load_image(str(path), CFG)
    assert img.alpha is None and img.rgb.shape == (64, 64, 3) and tuple(img.rgb[0, 0]) == (1, 2, 3)


@pytest.mark.parametrize("mode", ["L", "LA", "1"])
def test_grey_and_bilevel_become_three_channels(tmp_path: Path, mode: str) -> None:
    im = Image.new(mode, (64, 64), 255 if mode == "1" else (200 if mode == "L" else (200, 100)))
    img = load_image(str(save(tmp_path, f"{mode}.png", im)), CFG)
    assert img.rgb.shape == (64, 64, 3)
    expected = 255 if mode == "1" else 200
    assert np.all(img.rgb == expected)
    assert (img.alpha is not None) == (mode == "LA")
    assert img.info["bit_depth"] == (1 if mode == "1" else 8)


@pytest.mark.parametrize(("fmt", "params"), [("WEBP", {"lossless": True}), ("TIFF", {}), ("BMP", {})])
def test_other_allowed_formats(tmp_path: Path, fmt: str, params: dict[str, object]) -> None:
    path = save(tmp_path, f"x.{fmt.lower()}", Image.new("RGB", (64, 80), (250, 10, 20)), format=fmt, **params)
    img = load_image(str(path), CFG)
    assert img.format == fmt and img.rgb.shape == (80, 64, 3) and tuple(img.rgb[0, 0]) == (250, 10, 20)


def test_animated_gif_takes_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    img = load_image(str(path), CFG)
    assert img.info["frames"] == 3 and img.format == "GIF"
    assert tuple(img.rgb[10, 10]) == (255, 0, 0)


def test_decode_image_from_bytes_and_mime_types() -> None:
    data = SHOE.read_bytes()
    assert decode_image(data, CFG).sha256 == hashlib.sha256(data).hexdigest()
    assert mime_type("PNG") == "image/png" and mime_type("webp") == "image/webp"
    assert mime_type("MPO") == "image/jpeg" and mime_type("NOPE") == "application/octet-stream"


# --- refused inputs ------------------------------------------------------------------------


def refused(source: str | Path, config: LoadOptions = CFG) -> str:
    with pytest.raises(InputError) as exc:
        load_image(str(source), config)
    msg = str(exc.value)
    assert str(source).split("?")[0] in msg  # every message names the photo
    return msg


def test_zero_bytes() -> None:
    with pytest.raises(InputError, match="empty"):
        decode_image(b"", CFG, name="x")


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = SHOE.read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) * 6 // 10])
    assert "corrupt or truncated JPEG" in refused(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is a shopping list, not a photo\n" * 5)
    msg = refused(path)
    assert "not a supported image format" in msg and "text" in msg


def test_svg_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "logo.svg"
    path.write_text('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
                    '<rect width="64" height="64" fill="red"/></svg>')
    assert "not a supported image format (SVG)" in refused(path)


def test_eps_is_refused_by_the_allowlist(tmp_path: Path) -> None:
    path = tmp_path / "art.eps"
    path.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nshowpage\n%%EOF\n")
    assert "not a supported image format (EPS)" in refused(path)


def test_format_pillow_opens_but_not_allowed(tmp_path: Path) -> None:
    msg = refused(CUP, cfg(allowed_formats=("JPEG",)))
    assert "not a supported image format (PNG)" in msg and "allowed: JPEG" in msg


def test_decompression_bomb_far_over_pillows_limit(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(20000, 20000, 1, 0))  # a few hundred bytes claiming 400 MP
    assert path.stat().st_size < 1000
    assert "image is 20000x20000 = 400 MP, over the 40 MP limit" in refused(path)


def test_image_over_configured_pixel_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(png_bytes(8000, 6000, 1, 0))  # no valid pixel data: decoding would fail differently
    assert "image is 8000x6000 = 48 MP, over the 40 MP limit" in refused(path)


def test_pillow_bomb_warning_is_refused_even_when_config_allows_more(tmp_path: Path) -> None:
    path = tmp_path / "warn.png"
    path.write_bytes(png_bytes(10000, 10000, 1, 0))  # over Pillow's warning threshold (~89 MP)
    assert "10000x10000 = 100 MP" in refused(path, cfg(max_pixels=500_000_000))


def test_too_small(tmp_path: Path) -> None:
    path = save(tmp_path, "tiny.png", Image.new("RGB", (100, 32)))
    assert "100x32, smaller than the 64 px minimum side" in refused(path)
