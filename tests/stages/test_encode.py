"""The fast PNG encoder: lossless for every supported layout and level, readable by libpng and Pillow;
the JPEG format: full chroma, the quality's tables, optimised codes."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from stages.encode import encode_png, encode_rgba


def _chunks(png: bytes) -> list[bytes]:
    out, pos = [], 8
    while pos < len(png):
        (n,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data, crc = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + n], png[pos + 8 + n : pos + 12 + n]
        assert struct.unpack(">I", crc)[0] == zlib.crc32(kind + data)
        out.append(kind)
        pos += 12 + n
    return out


def _pillow(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as im:
        im.load()
        return np.asarray(im)


@pytest.mark.parametrize("level", [0, 1, 2, 3, 4, 9])
def test_real_photo_and_its_layers_round_trip_exactly(images, level):
    rgb = np.asarray(Image.open(images / "21_shoes_bark-sandals-with-laces_on-blue.jpg").convert("RGB"))
    grey = np.ascontiguousarray(rgb[..., 1])
    rgba = np.dstack([rgb, np.where(grey > 128, 255, 0).astype(np.uint8)])
    for px in (rgb, grey, rgba, rgb[5:-7, 3:-11]):  # a non-contiguous view too
        png = encode_png(px, level)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and _chunks(png) == [b"IHDR", b"IDAT", b"IEND"]
        assert np.array_equal(_pillow(png), px)
        back = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
        if px.ndim == 3:
            back = cv2.cvtColor(back, cv2.COLOR_BGR2RGB if px.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
        assert np.array_equal(back, px)


def test_rgba_layer_is_colour_and_alpha_exactly(images):
    rgb = np.asarray(Image.open(images / "21_shoes_bark-sandals-with-laces_on-blue.jpg").convert("RGB"))
    alpha = np.ascontiguousarray(255 - rgb[..., 2])
    for c, a in ((rgb, alpha), (rgb[5:-7, 3:-11], alpha[5:-7, 3:-11])):  # views too
        png = encode_rgba(c, a, 1)
        assert png == encode_png(np.dstack([c, a]), 1)
        assert np.array_equal(_pillow(png), np.dstack([c, a]))


def test_edge_sizes_and_values_round_trip():
    rng = np.random.default_rng(5)
    for shape in [(1, 1), (1, 9, 3), (9, 1, 4), (3, 4, 1), (17, 33, 3)]:
        px = rng.integers(0, 256, shape, dtype=np.uint8)
        px.flat[0], px.flat[-1] = 0, 255  # wrap-around in the "up" differences
        assert np.array_equal(_pillow(encode_png(px, 1)).reshape(shape), px)


def test_compression_levels_compress():
    ramp = np.tile(np.arange(256, dtype=np.uint8), (256, 1))
    stored, fast, small = (len(encode_png(ramp, lv)) for lv in (0, 1, 9))
    assert stored > 256 * 257 and fast < stored / 20 and small <= fast


def test_unsupported_arrays_and_levels_are_refused():
    with pytest.raises(ValueError, match="uint16"):
        encode_png(np.zeros((4, 4), np.uint16), 1)
    with pytest.raises(ValueError, match="shape"):
        encode_png(np.zeros((4, 4, 2), np.uint8), 1)
    with pytest.raises(ValueError, match="empty"):
        encode_png(np.zeros((0, 4, 3), np.uint8), 1)
    with pytest.raises(ValueError, match="0..9"):
        encode_png(np.zeros((4, 4), np.uint8), 10)


@pytest.mark.parametrize("quality", [82, 92])
def test_jpeg_is_full_chroma_with_the_quality_tables_and_optimised_huffman_codes(images, quality):
    """JPEG copies keep colour at full resolution (4:4:4: product edges keep their colour), carry
    the standard tables scaled by `quality` (as Pillow writes them) and optimised Huffman codes
    (smaller than the standard ones), and decode close to the original."""
    from PIL import JpegImagePlugin

    from stages.encode import encode_format

    rgb = np.asarray(Image.open(next(p for p in sorted(images.iterdir()) if p.suffix == ".jpg")).convert("RGB"))
    data = encode_format(rgb, "jpeg", quality)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and im.size == (rgb.shape[1], rgb.shape[0])
        assert JpegImagePlugin.get_sampling(im) == 0  # 4:4:4
        tables = im.quantization
        decoded = np.asarray(im.convert("RGB"))
    plain, optimised = io.BytesIO(), io.BytesIO()
    Image.fromarray(rgb).save(plain, format="JPEG", quality=quality, subsampling=0)
    Image.fromarray(rgb).save(optimised, format="JPEG", quality=quality, subsampling=0, optimize=True)
    with Image.open(plain) as ref:
        assert tables == ref.quantization
    assert len(data) < len(plain.getvalue())
    assert len(data) == len(optimised.getvalue())
    diff = np.abs(decoded.astype(int) - rgb.astype(int))
    assert diff.mean() < (2.0 if quality >= 90 else 3.5) and np.percentile(diff, 99) <= 24
