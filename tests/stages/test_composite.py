import cv2
import numpy as np
import pytest
from PIL import Image

from stages.check import verdict
from stages.check.pixels import CheckOptions, decode_rgb, framing, product_pixels
from stages.composite import composite
from stages.encode import encode_png
from stages.errors import StageError
from stages.layout import LayoutOptions, place_product
from stages.matte.plain_backdrop import PlainBackdropOptions, plain_backdrop_matte

PHOTOS = ("19_shoes_black-suede_white.jpg", "23_shoes_white-sneakers_on-brown.jpg",
          "27_hat_leather-cap_on-white-sheet.jpg", "34_apparel_light-shirt-on-hanger_white-wall.jpg")


@pytest.fixture
def layout(images):
    rgb = np.asarray(Image.open(images / "22_shoes_strap-sandals_white.jpg").convert("RGB"))
    h, w = rgb.shape[:2]
    alpha = np.zeros((h, w), np.uint8)
    cv2.ellipse(alpha, (w // 2, h // 2), (w // 3, h // 3), 0, 0, 360, 255, -1, cv2.LINE_AA)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 3)
    return place_product(rgb, alpha, LayoutOptions(width=512, height=512))


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
    cfg = CheckOptions()
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
    assert not product_pixels(decode_rgb(buf.getvalue()), layout, CheckOptions()).passed


def test_framing_flags_a_cropped_product(layout):
    assert framing(layout, CheckOptions()).passed
    from dataclasses import replace
    alpha = layout.product_alpha.copy()
    alpha[:, 0] = 255
    cropped = replace(layout, product_alpha=alpha)
    res = framing(cropped, CheckOptions())
    assert not res.passed and "edge" in res.message
    assert verdict([res]) == ("review", ["framing: product touches the canvas edge (cropped)"])


def test_scene_of_wrong_size_is_refused(layout):
    with pytest.raises(StageError, match="does not match the canvas"):
        composite(np.zeros((10, 10, 3), np.uint8), layout)


def _blend_every_pixel(scene: np.ndarray, layout) -> np.ndarray:
    """The straightforward composite: blend the whole canvas in float32, then copy the opaque core."""
    a = layout.product_alpha.astype(np.float32)[..., None] / 255.0
    blended = layout.product_rgb.astype(np.float32) * a + scene.astype(np.float32) * (1.0 - a)
    out = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    core = layout.product_alpha == 255
    out[core] = layout.product_rgb[core]
    return out


@pytest.mark.parametrize("name", PHOTOS)
def test_edge_only_blend_is_bit_identical_to_blending_every_pixel(images, name):
    rgb = np.asarray(Image.open(images / name).convert("RGB"))
    alpha, _, _ = plain_backdrop_matte(rgb, PlainBackdropOptions())  # a real soft matte edge
    layout = place_product(rgb, alpha, LayoutOptions(width=640, height=640))
    soft = (layout.product_alpha > 0) & (layout.product_alpha < 255)
    assert soft.sum() > 500 and (layout.product_alpha == 255).sum() > 10_000
    rng = np.random.default_rng(7)
    for scene in (rng.integers(0, 256, layout.product_rgb.shape, dtype=np.uint8),
                  np.full_like(layout.product_rgb, 255), np.zeros_like(layout.product_rgb)):
        out = composite(scene, layout)
        assert np.array_equal(out, _blend_every_pixel(scene, layout))
        assert not np.array_equal(out[soft], scene[soft])  # the edge really was blended


def test_composite_leaves_the_scene_untouched_and_handles_an_empty_product(layout):
    from dataclasses import replace

    scene = np.random.default_rng(1).integers(0, 256, layout.product_rgb.shape, dtype=np.uint8)
    before = scene.copy()
    composite(scene, layout)
    assert np.array_equal(scene, before)
    empty = replace(layout, product_alpha=np.zeros_like(layout.product_alpha))
    assert np.array_equal(composite(scene, empty), scene)


def test_scene_of_wrong_dtype_is_refused(layout):
    with pytest.raises(StageError, match="float32, expected uint8"):
        composite(np.zeros(layout.product_rgb.shape, np.float32), layout)
