"""Colour harmonisation: the background's cast moves toward the photo's light; the product never changes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from stages.composite import composite
from stages.depth.geometric import GeometricDepth, GeometricOptions
from stages.harmonize import LightEstimate, background_cast, estimate_light, harmonize
from stages.layout import LayoutOptions, place_product
from stages.matte.plain_backdrop import PlainBackdropOptions, plain_backdrop_matte
from stages.scene import SceneRequest
from stages.scene.procedural import ProceduralOptions, ProceduralScene


def warm(rgb: np.ndarray) -> np.ndarray:
    """The photo as if lit by tungsten: red up, blue down."""
    return np.clip(rgb.astype(np.float32) * np.array([1.08, 1.0, 0.80]), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def shot(images):
    rgb = warm(np.asarray(Image.open(images / "19_shoes_black-suede_white.jpg").convert("RGB")))
    alpha, _, _ = plain_backdrop_matte(rgb, PlainBackdropOptions())
    layout = place_product(rgb, alpha, LayoutOptions(width=384, height=384))
    depth = GeometricDepth(GeometricOptions()).run(layout, 0.62)
    scene = ProceduralScene(ProceduralOptions(grain=0.0)).generate(
        SceneRequest(layout, depth, "pale blue backdrop", "", 2, 0.62))
    return rgb, alpha, layout, scene.rgb


def distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(np.hypot(a[0] - b[0], a[1] - b[1]))


def test_light_estimate_sees_the_warm_backdrop(images, shot):
    rgb, alpha, _, _ = shot
    warm_light = estimate_light(rgb, alpha)
    plain = np.asarray(Image.open(images / "19_shoes_black-suede_white.jpg").convert("RGB"))
    neutral_light = estimate_light(plain, plain_backdrop_matte(plain, PlainBackdropOptions())[0])
    assert warm_light.source == "backdrop"
    assert warm_light.ab[1] > neutral_light.ab[1] + 5  # b*: yellower light
    cut_out = estimate_light(rgb, alpha, backdrop_in_photo=False)
    assert cut_out.source == "product highlights"


def test_background_moves_toward_the_light_and_product_pixels_stay(shot):
    rgb, alpha, layout, bg = shot
    light = estimate_light(rgb, alpha)
    before = distance(background_cast(bg, layout.product_alpha), light.ab)
    out, settings = harmonize(bg, layout.product_alpha, light, 0.5)
    after = distance(background_cast(out, layout.product_alpha), light.ab)
    assert after < 0.7 * before  # half of the cast difference removed (up to 8-bit rounding)
    full, _ = harmonize(bg, layout.product_alpha, light, 1.0)
    assert distance(background_cast(full, layout.product_alpha), light.ab) < 0.25 * before
    core = layout.product_alpha == 255
    assert np.array_equal(out[core], bg[core])
    assert np.array_equal(composite(out, layout)[core], layout.product_rgb[core])
    assert settings["light"] == "backdrop" and settings["strength"] == 0.5


def test_strength_zero_changes_nothing_and_a_wrong_target_is_measured(shot):
    _, _, layout, bg = shot
    same, _ = harmonize(bg, layout.product_alpha, LightEstimate((0.0, 30.0), "backdrop"), 0.0)
    assert np.array_equal(same, bg)
    # Moving toward a blue light moves the cast away from a yellow one: the distance check can fail.
    blue, _ = harmonize(bg, layout.product_alpha, LightEstimate((0.0, -30.0), "backdrop"), 0.8)
    yellow = (0.0, 30.0)
    assert distance(background_cast(blue, layout.product_alpha), yellow) > distance(
        background_cast(bg, layout.product_alpha), yellow)
