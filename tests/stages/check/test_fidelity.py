"""Object expansion and halo checks on composites made by the real stages from catalog photos.

Extensions are built by benchmarks/fidelity_eval.py (the same cases the benchmark measures):
the product's silhouette is extended into the band around it in the generated scene, then the
product is composited back, as a generator that "draws more product" would leave it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys

import cv2
import numpy as np
import pytest

from stages.check.fidelity import backdrop_colour, expansion_check, expansion_heuristic, expansion_resegment, halo
from stages.check.guards import ContentChecks, expansion_method
from stages.check.nsfw.opennsfw import OpenNsfw, OpennsfwOptions
from stages.composite import composite
from stages.depth.geometric import GeometricDepth, GeometricOptions
from stages.layout import place_product
from stages.matte.plain_backdrop import PlainBackdropMatte, PlainBackdropOptions
from stages.scene import SceneRequest
from stages.scene.procedural import ProceduralOptions, ProceduralScene


def _eval_module(repo):
    spec = importlib.util.spec_from_file_location("fidelity_eval", repo / "benchmarks" / "fidelity_eval.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fidelity_eval"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def fe(repo):
    return _eval_module(repo)


@pytest.fixture(scope="module")
def cfg(fe):
    return fe.base_config(384)


@pytest.fixture(scope="module")
def cases(fe, cfg):
    photos = ["19_shoes_black-suede_white.jpg", "27_hat_leather-cap_on-white-sheet.jpg",
              "20_shoes_beige-loafers_on-beige-floor.jpg"]
    return fe.clean_cases(cfg, photos, ["sage green wall", "warm terracotta backdrop"])


def test_clean_composites_show_no_expansion(cases, cfg):
    for c in cases:
        exp = expansion_heuristic(c.final, c.layout, cfg.fidelity)
        check = expansion_check(exp, cfg.fidelity)
        assert check.passed, (c.photo, c.prompt, check.message)


@pytest.mark.parametrize("kind", ["elongate", "strap", "blob"])
def test_product_extended_into_the_band_is_caught(cases, cfg, fe, kind):
    rng = np.random.default_rng(3)
    caught = 0
    for c in cases:
        image, region = fe.extend(c, kind, 0.08, rng)
        assert region.sum() > 10
        # the product's own pixels are still intact: pixel identity cannot see this
        core = c.layout.product_alpha == 255
        assert np.array_equal(image[core], c.final[core])
        check = expansion_check(expansion_heuristic(image, c.layout, cfg.fidelity), cfg.fidelity)
        caught += not check.passed
        if not check.passed:
            assert check.name == "expansion" and "extended the product" in check.message
    assert caught >= len(cases) - 1, f"{kind}: caught {caught} of {len(cases)}"


def test_detection_and_false_alarm_rates_on_built_cases(cases, cfg, fe):
    res = fe.evaluate(cfg, cases, sizes=(0.06, 0.10))
    assert res["false_alarm_rate"] == 0.0, res["false_alarm_cases"]
    assert res["visible_detection_rate"] >= 0.8, res["missed"]


def test_resegment_path_with_the_plain_backdrop_matte_as_resegmenter(cfg, fe):
    """The learned-matte path, exercised with the plain-backdrop matte cutting the final image out
    again (it does honest work on the procedural scene's plain sweep; no learned weights exist here)."""
    studio = PlainBackdropMatte(PlainBackdropOptions())
    [c] = fe.clean_cases(cfg, ["27_hat_leather-cap_on-white-sheet.jpg"], ["clean studio backdrop"])
    clean = expansion_resegment(c.final, c.layout, cfg.fidelity, studio.run(c.final).alpha)
    assert expansion_check(clean, cfg.fidelity).passed, clean
    image, _ = fe.extend(c, "elongate", 0.10, np.random.default_rng(1))
    grown = expansion_resegment(image, c.layout, cfg.fidelity, studio.run(image).alpha)
    check = expansion_check(grown, cfg.fidelity)
    assert not check.passed and grown.method == "resegment" and grown.score > clean.score


def _halo_case(fe, cfg, dilate_px: int):
    """A composite whose matte was grown by `dilate_px` source pixels: a rim of the white backdrop
    travels with the product onto a coloured scene (what a loose matte does)."""
    from ops.sources import load_image

    img = load_image(str(fe.IMAGES / "19_shoes_black-suede_white.jpg"), cfg.load)
    matte = PlainBackdropMatte(PlainBackdropOptions()).run(img.rgb)
    alpha = matte.alpha
    if dilate_px:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate_px + 1, 2 * dilate_px + 1))
        alpha = cv2.dilate(alpha, k)
    layout = place_product(img.rgb, alpha, cfg.layout)
    depth = GeometricDepth(GeometricOptions()).run(layout, cfg.layout.horizon)
    scene = ProceduralScene(ProceduralOptions()).generate(
        SceneRequest(layout, depth, "sage green wall", "", 5, cfg.layout.horizon))
    return composite(scene.rgb, layout), layout, backdrop_colour(img.rgb, matte.alpha, matte.details)


def test_halo_of_the_old_backdrop_is_caught(fe, cfg):
    final, layout, backdrop = _halo_case(fe, cfg, 6)
    assert backdrop is not None and backdrop.min() > 180  # the photo's white backdrop
    check = halo(final, layout, backdrop, cfg.fidelity)
    assert not check.passed and "old backdrop fringe" in check.message, check


def test_clean_cut_out_has_no_halo(fe, cfg):
    final, layout, backdrop = _halo_case(fe, cfg, 0)
    check = halo(final, layout, backdrop, cfg.fidelity)
    assert check.passed, check
    assert check.value < cfg.fidelity.halo_limit / 2


def test_halo_is_not_judged_where_it_could_not_be_seen(fe, cfg):
    """On a backdrop of the old backdrop's own colour a fringe is invisible: nothing to flag."""
    final, layout, backdrop = _halo_case(fe, cfg, 6)
    white = final.copy()
    white[layout.product_alpha == 0] = backdrop.astype(np.uint8)
    check = halo(white, layout, backdrop, cfg.fidelity)
    assert check.passed


def test_content_checks_pick_the_expansion_method_and_run_the_resegmenter(cfg, fe):
    assert expansion_method("auto", PlainBackdropMatte.learned) == "heuristic"
    assert expansion_method("auto", True) == "resegment" and expansion_method("off", True) == "off"
    studio = PlainBackdropMatte(PlainBackdropOptions())
    fidelity = dataclasses.replace(cfg.fidelity, expansion="resegment")
    checks = ContentChecks(OpenNsfw.load(OpennsfwOptions()), cfg.nsfw.threshold, cfg.nsfw.review_threshold,
                           fidelity, studio)
    assert checks.expansion == "resegment"
    [c] = fe.clean_cases(cfg, ["27_hat_leather-cap_on-white-sheet.jpg"], ["clean studio backdrop"])
    image, _ = fe.extend(c, "elongate", 0.10, np.random.default_rng(1))
    matte = studio.run(c.source_rgb)
    found, details = checks.run(image, c.layout, c.source_rgb, matte)
    by_name = {ch.name: ch for ch in found}
    assert set(by_name) == {"nsfw", "expansion", "halo", "stray_parts", "backdrop_region", "rim_spill"}
    assert details["expansion"]["method"] == "resegment" and not by_name["expansion"].passed
    assert by_name["nsfw"].passed and details["nsfw"]["score"] < cfg.nsfw.review_threshold
