"""Marketplace compliance on real photos laid out as marketplace main images."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
from PIL import Image

from stages.check.compliance import ComplianceRules, check_compliance, fill_ratio, foreign_marks, photo_problems
from stages.check.pixels import decode_rgb
from stages.composite import composite
from stages.depth.geometric import GeometricDepth, GeometricOptions
from stages.encode import encode_format
from stages.layout import LayoutOptions, place_product, uncapped_scale
from stages.matte import compute_matte
from stages.matte.plain_backdrop import PlainBackdropMatte, PlainBackdropOptions
from stages.scene import SceneRequest
from stages.scene.procedural import ProceduralOptions, ProceduralScene

RULES = ComplianceRules(background="#ffffff", background_tolerance=3, background_share=0.995,
                        max_background_std=2.0, min_fill=0.85, min_side=1000, no_text=True)
PACKSHOT = LayoutOptions(placement="center", margin=0.05, max_scale=2.0)
# Photos large enough for an 85% fill at 1000 px within max_scale 2 (the others are too small).
BIG_ENOUGH = "20_shoes_beige-loafers_on-beige-floor.jpg"


def _cutout(images, name):
    rgb = np.asarray(Image.open(images / name).convert("RGB"))
    return rgb, compute_matte(PlainBackdropMatte(PlainBackdropOptions()), rgb, None).alpha


def _marketplace(images, name=BIG_ENOUGH, background=(255, 255, 255), layout=PACKSHOT, size=1000):
    """A marketplace rendition as published: laid out on a flat background, JPEG, decoded."""
    rgb, alpha = _cutout(images, name)
    lay = place_product(rgb, alpha, layout, canvas=(size, size))
    staged = composite(np.full((size, size, 3), background, np.uint8), lay)
    return decode_rgb(encode_format(staged, "jpeg", 92)), lay


def _failed(checks):
    return {c.name: c for c in checks if not c.passed}


def test_clean_marketplace_rendition_passes(images):
    px, lay = _marketplace(images)
    checks = check_compliance(px, lay, RULES)
    assert {c.name for c in checks} == {"background", "background_uniformity", "fill", "min_side", "no_text"}
    assert not _failed(checks), _failed(checks)
    assert all(not c.blocking for c in checks)  # compliance sends to review, never rejects


def test_text_drawn_over_the_rendition_is_caught(images):
    px, lay = _marketplace(images)
    p = lay.placement
    marked = px.copy()
    # a watermark across the product and the white around it
    cv2.putText(marked, "SALE -50%", (p.x - 60, p.y + p.height // 2), cv2.FONT_HERSHEY_SIMPLEX, 2.2,
                (40, 40, 40), 5, cv2.LINE_AA)
    marked = decode_rgb(encode_format(marked, "jpeg", 92))
    failed = _failed(check_compliance(marked, lay, RULES))
    assert "no_text" in failed and "text-like mark" in failed["no_text"].message
    # small grey text in a corner only, off the product: still a mark
    corner = px.copy()
    cv2.putText(corner, "www.shop.example", (30, 970), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (150, 150, 150), 2, cv2.LINE_AA)
    assert "no_text" in _failed(check_compliance(corner, lay, RULES))
    # text over the product alone (white on the dark shoe): caught against the product layer
    over = px.copy()
    cv2.putText(over, "FAKE", (p.x + p.width // 4, p.y + p.height // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.5,
                (255, 255, 255), 4, cv2.LINE_AA)
    marks = foreign_marks(over, lay, np.array([255.0, 255.0, 255.0]))
    assert marks.count >= 1 and p.x <= marks.boxes[0][0] < p.x + p.width


@pytest.mark.parametrize("name", [
    "19_shoes_black-suede_white.jpg", "22_shoes_strap-sandals_white.jpg", "21_shoes_bark-sandals-with-laces_on-blue.jpg",
    "31_apparel_shorts-on-hanger_white-wall.jpg", "15_kitchen_coffee-cup_on-wood.png",
])
def test_clean_renditions_of_demo_photos_show_no_text(images, name):
    px, lay = _marketplace(images, name)
    assert foreign_marks(px, lay, np.array([255.0, 255.0, 255.0])).count == 0
    # on a generated studio scene too (no known background colour: strokes alone are judged)
    rgb, alpha = _cutout(images, name)
    lay2 = place_product(rgb, alpha, LayoutOptions(), canvas=(1080, 1350))
    depth = GeometricDepth(GeometricOptions()).run(lay2, 0.62)
    scene = ProceduralScene(ProceduralOptions()).generate(SceneRequest(lay2, depth, "sage green wall", "", 3, 0.62))
    px2 = decode_rgb(encode_format(composite(scene.rgb, lay2), "jpeg", 92)).copy()
    assert foreign_marks(px2, lay2).count == 0
    cv2.putText(px2, "LOGO", (60, 120), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (255, 255, 255), 5, cv2.LINE_AA)
    assert foreign_marks(px2, lay2).count == 1


def test_off_white_background_fails(images):
    px, lay = _marketplace(images, background=(245, 245, 245))
    failed = _failed(check_compliance(px, lay, RULES))
    assert set(failed) == {"background"}
    assert failed["background"].value < 0.01 and "#f5f5f5" in failed["background"].message
    # a gradient is not uniform: both colour and uniformity fail
    px2, lay2 = _marketplace(images)
    ramp = np.linspace(0, 30, 1000).astype(np.uint8)[None, :, None]
    bg = cv2.compare(lay2.product_alpha, 0, cv2.CMP_EQ) > 0
    px2 = px2.copy()
    px2[bg] = (px2.astype(np.int16) - ramp)[bg].clip(0, 255).astype(np.uint8)
    failed = _failed(check_compliance(px2, lay2, RULES))
    assert {"background", "background_uniformity"} <= set(failed)


def test_fill_ratio_and_min_side_fail(images):
    # a small photo cannot be enlarged past max_scale: the fill falls short and says why
    px, lay = _marketplace(images, "27_hat_leather-cap_on-white-sheet.jpg")
    failed = _failed(check_compliance(px, lay, RULES))
    assert set(failed) == {"fill"}
    assert failed["fill"].value == pytest.approx(fill_ratio(lay)) and failed["fill"].value < 0.85
    assert "max_scale" in failed["fill"].message
    # generous padding fails too, for a photo that could fill the frame
    px, lay = _marketplace(images, layout=dataclasses.replace(PACKSHOT, margin=0.2))
    failed = _failed(check_compliance(px, lay, RULES))
    assert set(failed) == {"fill"} and failed["fill"].value == pytest.approx(0.6, abs=0.01)
    # below the marketplace's minimum size
    px, lay = _marketplace(images, size=800)
    failed = _failed(check_compliance(px, lay, RULES))
    assert set(failed) == {"min_side"} and failed["min_side"].value == 800


def test_rules_left_at_their_defaults_check_nothing(images):
    px, lay = _marketplace(images, background=(245, 245, 245), size=400)
    assert check_compliance(px, lay, ComplianceRules()) == []


# Photo problems: a rule the photo cannot meet. Expected figures come from the product's box in the
# photo and the canvas (geometry), not from the rule under test; canvases are small to stay fast.
SMALL = "19_shoes_black-suede_white.jpg"  # the product is about 250x330 px in a 400 px photo


def _layout_at(images, name, fill_at_cap, size=300, margin=0.05, placement="center"):
    """The product laid out with max_scale set so the capped box spans `fill_at_cap` of the canvas
    along its fuller side (box / canvas), on a `size` square canvas."""
    rgb, alpha = _cutout(images, name)
    ys, xs = np.nonzero(alpha >= 8)
    long_share = max(xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()) / size
    opts = LayoutOptions(placement=placement, margin=margin, max_scale=fill_at_cap / long_share)
    lay = place_product(rgb, alpha, opts, canvas=(size, size))
    area = float(alpha[ys.min():ys.max() + 1, xs.min():xs.max() + 1].sum(dtype=np.int64)) / 255.0
    return lay, opts, area


def _measured_fill(lay):
    ys, xs = np.nonzero(lay.product_alpha >= 8)
    W, H = lay.size
    return max((xs.max() + 1 - xs.min()) / W, (ys.max() + 1 - ys.min()) / H)


def test_uncapped_scale_is_what_the_margins_allow(images):
    lay, opts, area = _layout_at(images, SMALL, 0.5)
    x0, y0, x1, y1 = lay.placement.source_box
    assert lay.placement.limited_by == "max_scale"
    # centre placement, margin 5%: the box may take 90% of the canvas along its tighter side
    assert uncapped_scale(opts, lay.placement, lay.size, area) == pytest.approx(min(270 / (x1 - x0), 270 / (y1 - y0)))


@pytest.mark.parametrize("fill_at_cap, withheld", [(0.5, True), (0.84, True), (0.86, False), (0.89, False)])
def test_a_photo_too_small_for_the_fill_is_a_photo_problem_near_the_threshold(images, fill_at_cap, withheld):
    lay, opts, area = _layout_at(images, SMALL, fill_at_cap)
    assert lay.placement.limited_by == "max_scale"  # the cap, not the margins, decided the size
    fill = _measured_fill(lay)
    assert fill == pytest.approx(fill_at_cap, abs=0.01)
    problems = photo_problems(lay, RULES, uncapped_scale(opts, lay.placement, lay.size, area))
    if not withheld:
        assert problems == []
        return
    [p] = problems
    assert (p.rule, p.needed) == ("min_fill", 0.85) and p.measured == pytest.approx(fill, abs=1e-3)
    x0, y0, x1, y1 = lay.placement.source_box
    assert p.why.startswith("photo too small:") and f"{x1 - x0}x{y1 - y0} px in the photo" in p.why
    # the photo it needs: the product 0.85 / fill times as large
    need = 0.85 / fill
    assert f"at least {int(np.ceil((x1 - x0) * need))}x{int(np.ceil((y1 - y0) * need))} px" in p.why


def test_a_big_enough_photo_has_no_photo_problem(images):
    rgb, alpha = _cutout(images, BIG_ENOUGH)
    lay = place_product(rgb, alpha, PACKSHOT, canvas=(300, 300))
    assert lay.placement.limited_by == "fit" and _measured_fill(lay) >= 0.85
    assert photo_problems(lay, RULES, lay.placement.scale) == []


def test_a_fill_miss_the_margins_cause_is_not_a_photo_problem(images):
    # margins of 20% leave 60% of the frame: a photo of any size misses 85%, so it stays a review reason
    lay, opts, area = _layout_at(images, SMALL, 0.5, margin=0.2)
    assert lay.placement.limited_by == "max_scale" and _measured_fill(lay) < 0.85
    assert photo_problems(lay, RULES, uncapped_scale(opts, lay.placement, lay.size, area)) == []
    px = decode_rgb(encode_format(composite(np.full((300, 300, 3), 255, np.uint8), lay), "jpeg", 92))
    assert "fill" in _failed(check_compliance(px, lay, dataclasses.replace(RULES, min_side=300)))
    # a big photo under the same margins: not capped at all, the same review reason
    rgb, alpha = _cutout(images, BIG_ENOUGH)
    lay = place_product(rgb, alpha, dataclasses.replace(PACKSHOT, margin=0.2), canvas=(300, 300))
    assert lay.placement.limited_by == "fit" and photo_problems(lay, RULES, lay.placement.scale) == []
    # a rule without min_fill has no photo problem, however small the photo
    lay, opts, area = _layout_at(images, SMALL, 0.5)
    assert photo_problems(lay, dataclasses.replace(RULES, min_fill=0.0), 10.0) == []
