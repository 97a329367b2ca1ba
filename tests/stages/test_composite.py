import cv2
import numpy as np
import pytest
from PIL import Image

from stages.check import decode_rgb, framing, product_pixels, verdict
from stages.composite import composite
from stages.config import CheckConfig, LayoutConfig
from stages.errors import StageError
from stages.layout import place_product
from stages.write import encode_png


@pytest.fixture
def layout(images):
    rgb = np.asarray(Image.open(images / "22_shoes_strap-sandals_white.jpg").convert("RGB"))
    h, w = rgb.shape[:2]
    alpha = np.zeros((h, w), np.uint8)
    cv2.ellipse(alpha, (w // 2, h // 2), (w // 3, h // 3), 0, 0, 360, 255, -1, cv2.LINE_AA)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 3)
    return place_product(rgb, alpha, LayoutConfig(width=512, height=512))


def test_opaque_product_pixels_survive_any_scene_exactly(layout):
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 256, size=layout.product_rgb.shape, dtype=np.uint8)
    out = composite(scene, layout)
    core = layout.product_alpha == 255
    assert core.sum() > 1000
    assert np.array_equal(out[core], layout.product_rgb[core])
    outside = layout.product_alpha == 0
    assert np.array_equal(out[outside], scene[outside])
    edge = ~core & ~outside
    lo = np.minimum(scene[edge], layout.product_rgb[edge]).astype(int)
    hi = np.maximum(scene[edge], layout.product_rgb[edge]).astype(int)
    assert np.all((out[edge] >= lo - 1) & (out[edge] <= hi + 1))  # a blend, nothing else


def test_pixel_check_passes_on_lossless_png_and_catches_a_changed_pixel(layout):
    out = composite(np.full_like(layout.product_rgb, 200), layout)
    cfg = CheckConfig()
    ok = product_pixels(decode_rgb(encode_png(out, 6)), layout, cfg)
    assert ok.passed and ok.value == 0
    ys, xs = np.nonzero(layout.product_alpha == 255)
    out[ys[10], xs[10], 1] ^= 1
    bad = product_pixels(decode_rgb(encode_png(out, 6)), layout, cfg)
    assert not bad.passed and bad.value == 1 and "1 of" in bad.message
    assert verdict([bad])[0] == "reject"


def test_pixel_check_catches_lossy_encoding(layout):
    import io
    out = composite(np.full_like(layout.product_rgb, 200), layout)
    buf = io.BytesIO()
    Image.fromarray(out).save(buf, format="JPEG", quality=90)
    assert not product_pixels(decode_rgb(buf.getvalue()), layout, CheckConfig()).passed


def test_framing_flags_a_cropped_product(layout):
    assert framing(layout, CheckConfig()).passed
    from dataclasses import replace
    alpha = layout.product_alpha.copy()
    alpha[:, 0] = 255
    cropped = replace(layout, product_alpha=alpha)
    res = framing(cropped, CheckConfig())
    assert not res.passed and "edge" in res.message
    assert verdict([res]) == ("review", ["framing: product touches the canvas edge (cropped)"])


def test_scene_of_wrong_size_is_refused(layout):
    with pytest.raises(StageError, match="does not match the canvas"):
        composite(np.zeros((10, 10, 3), np.uint8), layout)
