"""A shadow joined to the product (stages/matte/attached_shadow.py), on composites of real cut-outs.

Each scene pastes a product (its photo through its hand mask) on a rendered sweep and lays a
cast shadow beside it that is drawn apart from the rule under test: the product's silhouette,
shifted sideways and down, blurred and multiplied into the backdrop at a given strength. The
scene's true matte is the hand mask, so a case ends either with the shadow cut away (a good
cut-out) or with a confidence under [matte] min_confidence and a reason; a confident cut-out
that keeps the shadow is a miss. Strengths run from faint (0.2, near where the backdrop
difference stops seeing it at all) to dark (0.55).

Blind spots: a shadow darker than 0.28 of the backdrop, one tinted beyond the shadow tint, or
one whose band is as wide as it is long (a blob, not a band along the outline) is not
recognised, and stays product unless other checks catch it; a smooth grey product part of the
backdrop's hue on the outline with a soft edge would be cut like a shadow (the shaded side of
catalog photo 34's light shirt is: 3.8% of the cut-out, so it goes to review), and a product part
thinner than about 5 px right beside a cut shadow goes with it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

_spec = importlib.util.spec_from_file_location(
    "plain_backdrop_cases", Path(__file__).with_name("test_plain_backdrop_cases.py"))
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)


def cast_shadow_scene(strength: float, number: str = "28", dx: int = 12, dy: int = 6, blur: float = 3.0):
    """The product on a sweep with its silhouette as a soft shadow offset right and down."""
    scene, rgb, alpha, x, y = cases.product_on_floor(number, height=300)
    silhouette = cases.alpha_canvas(alpha, x + dx, y + dy)
    scene.darken(strength * cv2.GaussianBlur(silhouette, (0, 0), blur))
    scene.paste(rgb, alpha, x, y)
    return scene


@pytest.mark.parametrize("strength,number", [(0.2, "28"), (0.35, "28"), (0.55, "28"), (0.45, "19"), (0.35, "32")])
def test_cast_shadow_beside_the_product_is_never_kept_with_confidence(strength, number):
    result, matte, score = cases.outcome(cast_shadow_scene(strength, number))
    assert result != "missed", (score, cases._reasons(matte), matte.details["attached_shadow"])


def test_clear_cast_shadow_is_cut_away():
    """A plain shadow with a soft far edge is cut away: what is left matches the product, with
    no stray part (the reason still names it: it covers about 5% of the cut-out)."""
    scene = cast_shadow_scene(0.45, "28", blur=2.0)
    result, matte, score = cases.outcome(scene)
    found = matte.details["attached_shadow"]
    assert found is not None and found["cut"] and found["cut_share"] > 0.02, (score, found)
    assert score >= 0.95 and cases.stray_parts(matte.alpha > 127, scene.mask > 0.5) == 0, score


def test_shadow_with_a_sharp_far_edge_is_kept_and_sent_to_review():
    """A hard-lit shadow (blur 1 px) ends in an edge as sharp as a grey part's: kept as product,
    and the reason says so and where."""
    result, matte, score = cases.outcome(cast_shadow_scene(0.45, "32", blur=1.0))
    found = matte.details["attached_shadow"]
    assert result == "detected" and found is not None and not found["cut"], (score, found)
    assert "kept as product" in cases._reasons(matte) and "within x" in cases._reasons(matte)


@pytest.mark.parametrize("strength", [0.15, 0.25])
def test_faint_shadow_is_backdrop(strength):
    """Near the backdrop threshold a faint shadow is left out of the cut-out by the backdrop
    difference itself: nothing to cut, the cut-out passes."""
    result, matte, score = cases.outcome(cast_shadow_scene(strength, "32"))
    assert result == "good" and matte.confidence >= cases.MIN_CONFIDENCE, (score, cases._reasons(matte))


@pytest.mark.parametrize("number", ["22", "28"])
def test_photos_with_a_shadow_along_the_product(number):
    """The photos the shadow band was found on: a crescent of the cap's shadow on the sheet (28),
    the shadow under the soles (22). Cut away, no stray part left against the hand mask."""
    (mask_path,) = cases.MASKS.glob(f"{number}_*.png")
    (photo,) = cases.IMAGES.glob(f"{mask_path.stem}.*")
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    truth = np.asarray(Image.open(mask_path).convert("L")) > 127
    matte = cases.PlainBackdropMatte(cases.PlainBackdropOptions()).run(rgb)
    fg = matte.alpha > 127
    assert matte.details["attached_shadow"]["cut"]
    assert cases.iou(fg, truth) >= 0.98 and cases.stray_parts(fg, truth) == 0, cases.iou(fg, truth)
    assert matte.confidence >= cases.MIN_CONFIDENCE, cases._reasons(matte)


def test_dark_product_on_a_shaded_backdrop_stays_product():
    """A black cap lying in a broad shaded patch of the sweep (the backdrop dims to about 0.6
    around it): dark, smooth and neutral near the outline, yet product."""
    scene, rgb, alpha, x, y = cases.product_on_floor("28", height=300)
    h, w = cases.SIZE
    patch = np.zeros((h, w), np.float32)
    cv2.ellipse(patch, (x + alpha.shape[1] // 2, y + alpha.shape[0] // 2),
                (alpha.shape[1] // 2 + 40, alpha.shape[0] // 2 + 40), 0, 0, 360, 1.0, -1)
    scene.darken(0.4 * cv2.GaussianBlur(patch, (0, 0), 25))
    scene.paste(rgb, alpha, x, y)
    matte = cases.PlainBackdropMatte(cases.PlainBackdropOptions()).run(scene.photo())
    truth = scene.mask > 0.5
    kept = (matte.alpha > 127)[truth].mean()
    assert kept > 0.97, (kept, cases._reasons(matte), matte.details["attached_shadow"])


@pytest.mark.parametrize("number", ["19", "27", "28", "32"])
def test_no_shadow_no_band(number):
    """Without a shadow nothing is cut from the product's outline."""
    result, matte, score = cases.outcome(cases.reflection_scene(0.0, number))
    assert matte.details["attached_shadow"] is None and result == "good", (score, cases._reasons(matte))
