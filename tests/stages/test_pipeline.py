"""The order of the steps (`stages.pipeline.stage`) on a real photo, with the embedded backends."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from PIL import Image

from stages.check.fidelity import FidelityOptions
from stages.check.guards import ContentChecks
from stages.check.nsfw.opennsfw import OpenNsfw, OpennsfwOptions
from stages.depth.geometric import GeometricDepth, GeometricOptions
from stages.errors import ConfigError, StageError
from stages.layout import LayoutOptions
from stages.matte.plain_backdrop import PlainBackdropMatte, PlainBackdropOptions
from stages.pipeline import Brief, Frame, Parts, Photo, StepOptions, stage
from stages.scene.chain import SceneChain
from stages.scene.procedural import ProceduralOptions, ProceduralScene


class Counting:
    """Wraps a backend (or the content checks) and counts the calls of its `run`."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def run(self, *args, **kwargs):
        self.calls += 1
        return self.inner.run(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def photo(images):
    return Photo(np.asarray(Image.open(images / "27_hat_leather-cap_on-white-sheet.jpg").convert("RGB")))


@pytest.fixture
def parts():
    matte = PlainBackdropMatte(PlainBackdropOptions())
    checks = ContentChecks(OpenNsfw.load(OpennsfwOptions(threads=1)), 0.5, 0.3, FidelityOptions(), matte)
    scene = SceneChain(["procedural"], lambda name: ProceduralScene(ProceduralOptions()))
    return Parts(Counting(matte), Counting(GeometricDepth(GeometricOptions())), scene, Counting(checks),
                 StepOptions(layout=LayoutOptions(width=320, height=320)))


def test_steps_run_in_order_and_the_product_pixels_are_the_photos(parts, photo):
    steps: list[str] = []

    def timer(step):
        steps.append(step)
        return contextlib.nullcontext()

    staging = stage(parts, photo, Brief("sage green wall"), [3, 4], timer=timer)
    assert steps == ["matte", "layout", "depth", "shadow", "scene", "check", "composite", "check", "composite",
                     "check"]
    core = staging.layout.product_alpha == 255
    assert core.sum() > 5000
    for v in staging.variants:
        assert v.pixels.shape == (320, 320, 3) and np.array_equal(v.pixels[core], staging.layout.product_rgb[core])
        assert {c.name for c in v.checks} == {"nsfw", "expansion", "halo", "stray_parts", "faint_parts",
                                              "backdrop_region", "rim_spill", "hanger"}
        assert v.look["shadow"]["enabled"] and v.scene.backend == "procedural"
    a, b = staging.variants
    assert (a.seed, b.seed) == (3, 4) and not np.array_equal(a.pixels, b.pixels)
    assert (parts.matte.calls, parts.depth.calls, parts.checks.calls) == (1, 1, 2)  # once per product, per variant


def test_a_given_matte_is_reused_and_checks_run_only_on_trained_scenes(parts, photo):
    first = stage(parts, photo, Brief("sage green wall"), [3], checks="none")
    again = stage(parts, photo, Brief("sage green wall"), [3], Frame("packshot", (200, 300)), matte=first.matte,
                  checks="trained")
    assert parts.matte.calls == 1  # the channel rendition's way: the master's cut-out, not a second one
    assert again.layout.size == (200, 300) and again.layout.placement.mode == "center"
    assert parts.checks.calls == 0 and again.variants[0].checks == []  # a procedural backdrop: nothing to judge


def test_a_flat_background_needs_no_depth_style_or_scene(parts, photo):
    staging = stage(parts, photo, Brief("ignored"), [1], Frame("", (256, 256), "#FFFFFF"), checks="trained")
    (v,) = staging.variants
    assert staging.depth is None and staging.style is None and parts.depth.calls == 0
    assert v.scene.backend == "flat" and not v.scene.trained and v.scene.settings == {"background": "#ffffff"}
    assert (v.pixels[staging.layout.product_alpha == 0] == 255).all()


@pytest.mark.parametrize("bad,error", [
    (lambda p: (Photo(p.rgb.astype(np.float32)), [1], Frame()), StageError),
    (lambda p: (Photo(p.rgb, np.zeros((3, 3), np.uint8)), [1], Frame()), StageError),
    (lambda p: (p, [], Frame()), StageError),
    (lambda p: (p, [1], Frame(background="white")), ConfigError),
])
def test_bad_inputs_are_refused_before_any_step(parts, photo, bad, error):
    photo_, seeds, frame = bad(photo)
    with pytest.raises(error):
        stage(parts, photo_, Brief("x"), seeds, frame)
    assert parts.matte.calls == 0
