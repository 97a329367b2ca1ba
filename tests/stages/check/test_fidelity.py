"""Object expansion and halo checks on composites made by the real stages from catalog photos.

The expansion cases are drawn here, apart from the detector's colour references: a bar of a colour
picked for the test (not measured from the product) grows out of the product's outline up,
sideways or down, on the photo's own backdrop (a real background, not the procedural scene the
thresholds were set on). benchmarks/fidelity_eval.py measures the rates over many more cases and
names the blind spots; nothing here pins its rates.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from stages.check.fidelity import backdrop_colour, expansion_check, expansion_heuristic, expansion_resegment, halo
from stages.check.guards import ContentChecks, expansion_method
from stages.check.nsfw.opennsfw import OpenNsfw, OpennsfwOptions
from stages.check.outline import product_size
from stages.composite import composite
from stages.depth.geometric import GeometricDepth, GeometricOptions
from stages.layout import place_product
from stages.matte.plain_backdrop import PlainBackdropMatte, PlainBackdropOptions
from stages.scene import SceneRequest
from stages.scene.procedural import ProceduralOptions, ProceduralScene

from conftest import load_benchmark  # tests/ is on sys.path

DARK = (30, 28, 28)  # "more" of a black suede, leather or navy product, chosen by eye
PHOTOS = ["19_shoes_black-suede_white.jpg", "27_hat_leather-cap_on-white-sheet.jpg",
          "32_apparel_black-shorts_on-white-quilt.jpg"]


@pytest.fixture(scope="module")
def fe():
    return load_benchmark("fidelity_eval")


@pytest.fixture(scope="module")
def cfg(fe):
    return fe.base_config(384)


@pytest.fixture(scope="module")
def sources(fe, cfg):
    found, skipped = fe.load_sources(cfg, [fe.IMAGES / name for name in PHOTOS])
    assert not skipped
    return {s.name: s for s in found}


@pytest.fixture(scope="module")
def cases(fe, cfg, sources):
    """Each photo on the largest product-free crop of its own backdrop."""
    found, notes = fe.clean_cases(cfg, list(sources.values()), np.random.default_rng(1), backgrounds=("own-backdrop",))
    assert len(found) == len(PHOTOS), notes
    return found


def _bar(layout, length_px: float, where: str) -> np.ndarray:
    """A bar 8% of the product's size wide leaving the product's extreme point `where` (up, right,
    down), reaching `length_px` out of it; it starts 3 px inside the product so it is attached."""
    alpha = layout.product_alpha >= 128
    half = int(round(0.04 * product_size(layout.product_alpha)))
    ys, xs = np.nonzero(alpha)
    m = np.zeros(alpha.shape, np.uint8)
    if where == "up":
        y = ys.min()
        x = int(np.median(xs[ys == y]))
        cv2.rectangle(m, (x - half, int(round(y - length_px))), (x + half, y + 3), 1, -1)
    elif where == "right":
        x = xs.max()
        y = int(np.median(ys[xs == x]))
        cv2.rectangle(m, (x - 3, y - half), (int(round(x + length_px)), y + half), 1, -1)
    else:
        y = ys.max()
        x = int(np.median(xs[ys == y]))
        cv2.rectangle(m, (x - half, y - 3), (x + half, int(round(y + length_px))), 1, -1)
    return m.astype(bool)


def _extended(fe, case, cfg, multiple: float, where: str, colour=DARK):
    length = multiple * cfg.fidelity.expansion_limit * product_size(case.layout.product_alpha)
    return fe.paint(case, _bar(case.layout, length, where), colour)


def test_clean_composites_on_a_real_backdrop_are_not_flagged(cases, cfg):
    for c in cases:
        check = expansion_check(expansion_heuristic(c.final, c.layout, cfg.fidelity), cfg.fidelity)
        assert check.passed, (c.photo, check.message)


@pytest.mark.parametrize("where", ["up", "right", "down"])
def test_dark_extension_five_times_the_limit_is_caught(cases, cfg, fe, where):
    for c in cases:
        image, region = _extended(fe, c, cfg, 5.0, where)
        assert region.sum() > 20
        # the product's own pixels are still intact: pixel identity cannot see this
        core = c.layout.product_alpha == 255
        assert np.array_equal(image[core], c.final[core])
        check = expansion_check(expansion_heuristic(image, c.layout, cfg.fidelity), cfg.fidelity)
        assert not check.passed, (c.photo, where, check.message)
        assert check.name == "expansion" and "extended the product" in check.message


@pytest.mark.parametrize("where", ["up", "right"])
def test_extension_just_past_the_limit_is_caught(cases, cfg, fe, where):
    """Three times the limit: past the rim that is never judged, still a small stub on the canvas."""
    for c in cases:
        image, _ = _extended(fe, c, cfg, 3.0, where)
        exp = expansion_heuristic(image, c.layout, cfg.fidelity)
        assert exp.score > cfg.fidelity.expansion_limit, (c.photo, where, exp)


def test_resegment_path_with_the_plain_backdrop_matte_as_resegmenter(cfg, fe, sources):
    """The learned-matte path, exercised with the plain-backdrop matte cutting the final image out
    again (it does honest work on the procedural scene's plain sweep)."""
    studio = PlainBackdropMatte(PlainBackdropOptions())
    [c], _ = fe.clean_cases(cfg, [sources[PHOTOS[1]]], np.random.default_rng(0), backgrounds=("procedural",),
                            prompts=["clean studio backdrop"])
    clean = expansion_resegment(c.final, c.layout, cfg.fidelity, studio.run(c.final).alpha)
    assert expansion_check(clean, cfg.fidelity).passed, clean
    image, _ = _extended(fe, c, cfg, 10.0, "up")
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


def test_content_checks_pick_the_expansion_method_and_run_the_resegmenter(cfg, fe, sources):
    assert expansion_method("auto", PlainBackdropMatte.learned) == "heuristic"
    assert expansion_method("auto", True) == "resegment" and expansion_method("off", True) == "off"
    studio = PlainBackdropMatte(PlainBackdropOptions())
    fidelity = dataclasses.replace(cfg.fidelity, expansion="resegment")
    checks = ContentChecks(OpenNsfw.load(OpennsfwOptions()), cfg.nsfw.threshold, cfg.nsfw.review_threshold,
                           fidelity, studio)
    assert checks.expansion == "resegment"
    [c], _ = fe.clean_cases(cfg, [sources[PHOTOS[1]]], np.random.default_rng(0), backgrounds=("procedural",),
                            prompts=["clean studio backdrop"])
    image, _ = _extended(fe, c, cfg, 10.0, "up")
    matte = studio.run(c.source_rgb)
    found, details = checks.run(image, c.layout, c.source_rgb, matte)
    by_name = {ch.name: ch for ch in found}
    assert set(by_name) == {"nsfw", "expansion", "halo", "stray_parts", "faint_parts", "backdrop_region", "rim_spill",
                            "hanger"}
    assert details["expansion"]["method"] == "resegment" and not by_name["expansion"].passed
    assert by_name["nsfw"].passed and details["nsfw"]["score"] < cfg.nsfw.review_threshold
