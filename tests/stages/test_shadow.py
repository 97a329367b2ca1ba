"""The shadow layer: on the floor, in the configured direction, never on the product."""

from __future__ import annotations

import time
from dataclasses import replace

import cv2
import numpy as np
import pytest
from PIL import Image

from stages.composite import composite
from stages.depth.geometric import GeometricDepth, GeometricOptions
from stages.errors import ConfigError
from stages.layout import LayoutOptions, place_product
from stages.matte.plain_backdrop import PlainBackdropOptions, plain_backdrop_matte
from stages.scene import SceneRequest
from stages.scene.procedural import ProceduralOptions, ProceduralScene
from stages.shadow import ShadowLayer, ShadowOptions, apply_shadow, check_shadow, compute_shadow

HORIZON = 0.62


@pytest.fixture(scope="module")
def staged(images):
    """A real photo cut out by the plain-backdrop matte, placed on a 512 px canvas, with its procedural scene."""
    rgb = np.asarray(Image.open(images / "19_shoes_black-suede_white.jpg").convert("RGB"))
    alpha, _, _ = plain_backdrop_matte(rgb, PlainBackdropOptions())
    layout = place_product(rgb, alpha, LayoutOptions(width=512, height=512))
    depth = GeometricDepth(GeometricOptions()).run(layout, HORIZON)
    scene = ProceduralScene(ProceduralOptions(grain=0.0)).generate(
        SceneRequest(layout, depth, "studio", "", 1, HORIZON))
    return layout, depth, scene.rgb


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32).mean(axis=2)


def test_shadow_darkens_the_floor_at_the_contact_line_and_behind(staged):
    layout, depth, bg = staged
    layer = compute_shadow(layout, depth, HORIZON, ShadowOptions())
    out = apply_shadow(bg, layer)
    p = layout.placement
    base = p.y + p.height
    free = layout.product_alpha == 0
    band = np.zeros_like(free)
    band[base - 4 : base + 4, p.x : p.x + p.width] = True  # where the product meets the floor
    under = band & free
    assert under.sum() > 50
    drop = luma(bg)[under] - luma(out)[under]
    assert drop.mean() > 20  # a visible contact shadow
    far = np.zeros_like(free)
    far[: int(HORIZON * 512) - 40, :] = True  # the backdrop well above the horizon: untouched
    assert np.array_equal(out[far & free], bg[far & free])


def test_shadow_never_touches_product_pixels(staged):
    layout, depth, bg = staged
    layer = compute_shadow(layout, depth, HORIZON, replace(ShadowOptions(), intensity=1.0, contact=1.0, softness=0.1))
    core = layout.product_alpha == 255
    assert core.sum() > 5000
    assert np.all(layer.opacity[core] == 0) and np.all(layer.to_png()[core] == 0)
    plain, shaded = composite(bg, layout), composite(apply_shadow(bg, layer), layout)
    assert np.abs(shaded[core].astype(int) - plain[core].astype(int)).max() == 0
    assert np.array_equal(shaded[core], layout.product_rgb[core])
    assert (shaded[~core] != plain[~core]).any()  # it did draw a shadow around the product
    # The check catches a layer that reaches under the product: shading the composite with it
    # changes opaque product pixels.
    leaky = ShadowLayer(cv2.GaussianBlur(layout.product_alpha.astype(np.float32) / 255, (0, 0), 8), layer.colour, {})
    assert np.abs(apply_shadow(plain, leaky)[core].astype(int) - plain[core].astype(int)).max() > 0


def test_zero_intensity_or_disabled_changes_nothing(staged):
    layout, depth, bg = staged
    for cfg in (ShadowOptions(intensity=0.0, contact=0.0), ShadowOptions(enabled=False)):
        layer = compute_shadow(layout, depth, HORIZON, cfg)
        assert not layer.opacity.any()
        assert np.array_equal(apply_shadow(bg, layer), bg)


def side_darkness(layout, depth, bg, azimuth: float) -> tuple[float, float]:
    """Mean darkening left and right of the product, on the floor band it stands on."""
    out = apply_shadow(bg, compute_shadow(layout, depth, HORIZON, ShadowOptions(azimuth=azimuth, elevation=35)))
    p = layout.placement
    base = p.y + p.height
    rows = slice(max(0, int(HORIZON * 512)), base)
    drop = luma(bg)[rows] - luma(out)[rows]
    free = layout.product_alpha[rows] == 0
    left = drop[:, : p.x][free[:, : p.x]].mean()
    right = drop[:, p.x + p.width :][free[:, p.x + p.width :]].mean()
    return float(left), float(right)


def test_direction_changes_which_side_is_darker(staged):
    layout, depth, bg = staged
    left, right = side_darkness(layout, depth, bg, 70)
    assert right > 2 * left and right > 1.0
    left, right = side_darkness(layout, depth, bg, -70)
    assert left > 2 * right and left > 1.0


def test_shadow_colour_tints_and_settings_are_recorded(staged):
    layout, depth, bg = staged
    layer = compute_shadow(layout, depth, HORIZON, ShadowOptions(colour="#3050a0", contact=1.0))
    out = apply_shadow(bg, layer)
    hit = layer.opacity > 0.5
    shift = out[hit].astype(float).mean(axis=0) - bg[hit].astype(float).mean(axis=0)
    assert shift[0] < shift[2]  # darkened toward blue: red falls most
    assert layer.settings["colour"] == "#3050a0" and layer.settings["azimuth"] == 0.0


def test_bad_settings_name_the_key():
    with pytest.raises(ConfigError, match=r"shadow.intensity = 1.5: must be 0..1"):
        check_shadow(ShadowOptions(intensity=1.5))
    with pytest.raises(ConfigError, match=r"shadow.elevation = 0.0"):
        check_shadow(ShadowOptions(elevation=0.0))
    with pytest.raises(ConfigError, match=r"shadow.colour = 'dark'"):
        check_shadow(ShadowOptions(colour="dark"))


def test_shadow_is_cheap_at_1024(staged):
    layout, _, _ = staged
    big = place_product(layout.product_rgb, layout.product_alpha, LayoutOptions(width=1024, height=1024))
    depth = GeometricDepth(GeometricOptions()).run(big, HORIZON)
    bg = np.full((1024, 1024, 3), 200, np.uint8)
    compute_shadow(big, depth, HORIZON, ShadowOptions())
    t0 = time.perf_counter()
    apply_shadow(bg, compute_shadow(big, depth, HORIZON, ShadowOptions()))
    assert time.perf_counter() - t0 < 0.5  # a sanity bound on a shared machine; ~25 ms measured


def test_config_tables_are_validated_at_load(repo, tmp_path):
    from ops.config import load_config

    cfg = load_config(repo / "config.toml", {"shadow": {"azimuth": 45, "intensity": 0.5}})
    assert (cfg.shadow.azimuth, cfg.shadow.intensity, cfg.harmonize.enabled) == (45.0, 0.5, False)
    with pytest.raises(ConfigError, match=r"shadow.softness = 0.0"):
        load_config(repo / "config.toml", {"shadow": {"softness": 0}})
    with pytest.raises(ConfigError, match=r"harmonize.strength = 2.0"):
        load_config(repo / "config.toml", {"harmonize": {"strength": 2.0}})
    with pytest.raises(ConfigError, match=r"scene.reference_image = 'moodboards/none.jpg': no such file"):
        load_config(repo / "config.toml", {"scene": {"reference_image": "moodboards/none.jpg"}})
