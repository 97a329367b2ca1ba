import cv2
import numpy as np
import pytest

from provenance.iptc import COMPOSITE_SYNTHETIC, composite_source_type
from stages.depth.geometric import GeometricDepth, GeometricOptions
from stages.errors import ConfigError, UnknownBackendError
from stages.layout import LayoutOptions, place_product
from stages.scene import SceneRequest, load_scene_backend
from stages.scene.procedural import ProceduralOptions, ProceduralScene, colour_from_prompt
from stages.shadow import ShadowOptions, apply_shadow, compute_shadow


@pytest.fixture
def layout():
    rgb = np.full((300, 200, 3), 40, np.uint8)
    alpha = np.zeros((300, 200), np.uint8)
    cv2.rectangle(alpha, (40, 30), (160, 270), 255, -1)
    return place_product(rgb, alpha, LayoutOptions(width=384, height=384))


def _request(layout, prompt="studio", seed=1):
    depth = GeometricDepth(GeometricOptions()).run(layout, 0.62)
    return SceneRequest(layout, depth, prompt, "", seed, 0.62)


def test_same_seed_same_scene_and_different_seed_differs(layout):
    backend = ProceduralScene(ProceduralOptions())
    a = backend.generate(_request(layout, seed=5)).rgb
    b = backend.generate(_request(layout, seed=5)).rgb
    c = backend.generate(_request(layout, seed=6)).rgb
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_colour_word_in_prompt_sets_the_backdrop(layout):
    backend = ProceduralScene(ProceduralOptions())
    green = backend.generate(_request(layout, "sage green wall, morning light"))
    wall = green.rgb[:100].reshape(-1, 3).mean(axis=0)
    assert wall[1] > wall[0] and wall[1] > wall[2]
    assert green.settings["colour_word"] == "sage green"
    default = backend.generate(_request(layout, "a nice backdrop"))
    assert default.settings["colour_word"] is None and default.settings["wall_color"] == "#e9e4dc"
    assert colour_from_prompt("Dusty Blue backdrop") == ("dusty blue", "#9fb3c6")


def test_contact_shadow_comes_from_the_shadow_layer(layout):
    """The procedural backdrop itself is unshadowed; `stages.shadow` lays the same shadow on every backend."""
    request = _request(layout)
    scene = ProceduralScene(ProceduralOptions(grain=0.0)).generate(request)
    shaded = apply_shadow(scene.rgb, compute_shadow(layout, request.depth, request.horizon, ShadowOptions()))
    p = layout.placement
    row = min(p.y + p.height + 2, scene.rgb.shape[0] - 1)
    for img, darker in ((scene.rgb, False), (shaded, True)):
        under = img[row, p.x + p.width // 2].astype(int).sum()
        aside = img[row, 5].astype(int).sum()
        assert bool(under < aside * 0.85) is darker
    assert scene.backend == "procedural" and not scene.trained
    assert composite_source_type(scene.trained) == COMPOSITE_SYNTHETIC


def test_bad_colour_and_unknown_backend_fail_loudly():
    with pytest.raises(ConfigError, match="scene.procedural.wall_color = 'blue'"):
        ProceduralScene(ProceduralOptions(wall_color="blue"))
    with pytest.raises(UnknownBackendError, match=r"unknown scene backend 'dall-e'; known: \[.*'procedural'\]"):
        load_scene_backend("dall-e", ProceduralOptions())
