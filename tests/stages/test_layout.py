import dataclasses

import cv2
import numpy as np
import pytest
from PIL import Image

from stages.errors import StageError
from stages.layout import (
    LayoutOptions, PlacementPreset, layout_error, place_product, product_box, product_crop,
)
from stages.matte import compute_matte
from stages.matte.plain_backdrop import PlainBackdropMatte, PlainBackdropOptions


def _photo_and_ellipse(images, name="27_hat_leather-cap_on-white-sheet.jpg"):
    rgb = np.asarray(Image.open(images / name).convert("RGB"))
    h, w = rgb.shape[:2]
    alpha = np.zeros((h, w), np.uint8)
    cv2.ellipse(alpha, (w // 2, h // 2), (w // 3, h // 4), 0, 0, 360, 255, -1, cv2.LINE_AA)
    return rgb, alpha


@pytest.fixture(scope="module")
def shoe(images):
    """A real photo and its plain-backdrop matte (the black suede shoes: a confident cut-out)."""
    rgb = np.asarray(Image.open(images / "19_shoes_black-suede_white.jpg").convert("RGB"))
    matte = compute_matte(PlainBackdropMatte(PlainBackdropOptions()), rgb, None)
    return rgb, matte.alpha


def _box(lay):
    """The placed product's box from its alpha, (x0, y0, x1, y1)."""
    return product_box(lay.product_alpha)


def _inside(lay, W, H):
    x0, y0, x1, y1 = _box(lay)
    return x0 >= 0 and y0 >= 0 and x1 <= W and y1 <= H and not (
        lay.product_alpha[0].any() or lay.product_alpha[-1].any()
        or lay.product_alpha[:, 0].any() or lay.product_alpha[:, -1].any())


def test_product_fits_inside_margins_bottom_anchored(images):
    rgb, alpha = _photo_and_ellipse(images)
    cfg = LayoutOptions(width=512, height=512, margin=0.1, floor=0.08, max_scale=4.0)
    lay = place_product(rgb, alpha, cfg)
    p = lay.placement
    assert p.mode == "floor"
    assert p.x >= 0.1 * 512 - 1 and p.x + p.width <= 512 * 0.9 + 1
    assert p.y + p.height == round(512 * (1 - 0.08))  # stands on the floor line
    assert p.width <= 512 * 0.8 + 1 and p.height <= 512 * 0.82 + 1
    ys, xs = np.nonzero(lay.product_alpha)
    assert xs.min() >= p.x and xs.max() < p.x + p.width and ys.min() >= p.y and ys.max() < p.y + p.height
    # Mask: generate everywhere except the opaque product core.
    assert np.array_equal(lay.mask == 255, lay.product_alpha < 255)


def test_unscaled_placement_copies_source_pixels_exactly(images):
    rgb, alpha = _photo_and_ellipse(images)
    x0, y0 = np.nonzero(alpha)[1].min(), np.nonzero(alpha)[0].min()
    cfg = LayoutOptions(width=1024, height=1024, max_scale=1.0)
    lay = place_product(rgb, alpha, cfg)
    p = lay.placement
    assert p.scale == 1.0 and p.limited_by == "max_scale"
    core = alpha[y0 : y0 + p.height, x0 : x0 + p.width] == 255
    placed = lay.product_rgb[p.y : p.y + p.height, p.x : p.x + p.width]
    assert np.array_equal(placed[core], rgb[y0 : y0 + p.height, x0 : x0 + p.width][core])


def test_scaled_edges_do_not_pick_up_background_colour():
    # A red product on a green background: premultiplied resampling keeps green out of the edge.
    alpha = np.zeros((200, 200), np.uint8)
    alpha[50:150, 50:150] = 255
    alpha = cv2.GaussianBlur(alpha, (0, 0), 2)
    rgb = np.zeros((200, 200, 3), np.uint8)
    rgb[:] = (0, 255, 0)
    rgb[alpha > 0] = (255, 0, 0)  # green right where the matte ends
    lay = place_product(rgb, alpha, LayoutOptions(width=512, height=512, max_scale=3.0))
    edge = (lay.product_alpha > 0) & (lay.product_alpha < 255)
    assert edge.any()
    assert lay.product_rgb[edge][:, 1].max() == 0  # no green at all


def test_center_with_padding_on_the_real_matte(shoe):
    rgb, alpha = shoe
    cfg = LayoutOptions(width=1200, height=800, margin=0.1, placement="center", max_scale=4.0)
    lay = place_product(rgb, alpha, cfg)
    x0, y0, x1, y1 = _box(lay)
    assert abs((x0 + x1) / 2 - 600) <= 1 and abs((y0 + y1) / 2 - 400) <= 1
    # the taller-than-wide shoe fills the padded height exactly
    assert y0 >= 80 - 1 and y1 <= 720 + 1 and (y1 - y0) >= 640 - 2
    assert lay.placement.limited_by == "fit" and lay.placement.mode == "center"


def test_floor_line_on_the_real_matte(shoe):
    rgb, alpha = shoe
    cfg = LayoutOptions(width=1024, height=1024, placement="floor", floor=0.15, max_scale=4.0)
    lay = place_product(rgb, alpha, cfg)
    x0, y0, x1, y1 = _box(lay)
    assert y1 == round(1024 * 0.85)  # the base stands on the floor line
    assert abs((x0 + x1) / 2 - 512) <= 1
    assert y0 >= round(1024 * 0.1) - 1  # the top margin holds


@pytest.mark.parametrize("side,cx", [("left", 1920 / 3), ("right", 2 * 1920 / 3)])
def test_rule_of_thirds_centres_on_the_intersection(shoe, side, cx):
    rgb, alpha = shoe
    cfg = LayoutOptions(width=1920, height=1080, placement="thirds", thirds=side, margin=0.08, max_scale=4.0)
    lay = place_product(rgb, alpha, cfg)
    x0, y0, x1, y1 = _box(lay)
    assert abs((x0 + x1) / 2 - cx) <= 1 and abs((y0 + y1) / 2 - 720) <= 1  # lower third line
    assert y1 <= 1080 * 0.92 + 1 and _inside(lay, 1920, 1080)  # as large as the bottom margin allows
    assert (y1 - y0) >= 2 * (1080 - 0.08 * 1080 - 720) - 2


def test_fixed_box_fits_and_centres_the_product(shoe):
    rgb, alpha = shoe
    cfg = LayoutOptions(width=1000, height=1000, placement="fixed", box=(0.55, 0.3, 0.95, 0.9), max_scale=4.0)
    lay = place_product(rgb, alpha, cfg)
    x0, y0, x1, y1 = _box(lay)
    assert x0 >= 550 - 1 and x1 <= 950 + 1 and y0 >= 300 - 1 and y1 <= 900 + 1
    assert abs((x0 + x1) / 2 - 750) <= 1 and abs((y0 + y1) / 2 - 600) <= 1
    assert (x1 - x0) >= 400 - 2 or (y1 - y0) >= 600 - 2  # touches the box on one axis


def test_coverage_reaches_its_target_or_says_what_stopped_it(shoe):
    rgb, alpha = shoe
    cfg = LayoutOptions(width=800, height=800, placement="coverage", coverage=0.2, max_scale=4.0)
    lay = place_product(rgb, alpha, cfg)
    covered = lay.product_alpha.astype(np.float64).sum() / 255 / (800 * 800)
    assert abs(covered - 0.2) < 0.01 and lay.placement.limited_by == "coverage"
    assert abs(lay.placement.coverage - covered) < 1e-3
    # 90% of the frame cannot be covered by a shoe inside 10% margins: clamped by the margins, recorded
    big = place_product(rgb, alpha, dataclasses.replace(cfg, coverage=0.9))
    assert big.placement.limited_by == "fit" and big.placement.coverage < 0.9 and _inside(big, 800, 800)
    # ...and never enlarged beyond max_scale
    capped = place_product(rgb, alpha, dataclasses.replace(cfg, coverage=0.9, max_scale=1.2))
    assert capped.placement.limited_by == "max_scale" and capped.placement.scale <= 1.2


@pytest.mark.parametrize("mode", ["center", "floor", "thirds", "fixed", "coverage"])
@pytest.mark.parametrize("canvas", [(1080, 1350), (1920, 1080), (256, 256)])
def test_no_mode_crops_or_over_enlarges(shoe, mode, canvas):
    rgb, alpha = shoe
    cfg = LayoutOptions(placement=mode, max_scale=3.0, coverage=1.0, box=(0.0, 0.0, 1.0, 1.0), margin=0.02)
    lay = place_product(rgb, alpha, cfg, canvas=canvas)
    assert lay.size == canvas
    assert lay.placement.scale <= 3.0
    x0, y0, x1, y1 = _box(lay)
    assert x1 <= canvas[0] and y1 <= canvas[1]
    # the whole product is there: its matte area scales with the square of the scale
    src_area = alpha.astype(np.float64).sum() / 255
    placed_area = lay.product_alpha.astype(np.float64).sum() / 255
    assert placed_area == pytest.approx(src_area * lay.placement.scale**2, rel=0.03)


def test_named_presets_and_row_placement(shoe):
    rgb, alpha = shoe
    cfg = LayoutOptions(width=600, height=600, max_scale=4.0, presets={
        "packshot": PlacementPreset(placement="center", margin=0.02),
    })
    lay = place_product(rgb, alpha, cfg, "packshot")
    assert lay.placement.preset == "packshot" and lay.placement.mode == "center"
    x0, y0, x1, y1 = _box(lay)
    assert (y1 - y0) >= 600 * 0.96 - 2  # the preset's own margin, not [layout]'s 0.10
    assert place_product(rgb, alpha, cfg, "thirds").placement.mode == "thirds"
    with pytest.raises(StageError, match="placement 'hero' is not a mode"):
        place_product(rgb, alpha, cfg, "hero")


def test_layout_errors_name_the_bad_value():
    assert layout_error(LayoutOptions()) is None
    assert "thirds needs a margin below 1/3" in layout_error(LayoutOptions(placement="thirds", margin=0.4))
    bad = LayoutOptions(presets={"center": PlacementPreset()})
    assert "cannot be named like a placement mode" in layout_error(bad)
    bad = LayoutOptions(presets={"hero": PlacementPreset(coverage=1.5)})
    assert "layout.presets.hero.coverage = 1.5" in layout_error(bad)


def test_empty_matte_is_a_stage_error(images):
    rgb, alpha = _photo_and_ellipse(images)
    with pytest.raises(StageError, match="no product pixels"):
        place_product(rgb, np.zeros_like(alpha), LayoutOptions())


def _separate_premultiplied_resize(rgb, alpha, size):
    """The shrinking layout's resample written out channel by channel: 16-bit colour x alpha and
    alpha x 257, each area-averaged on its own, divided back in float32."""
    a16 = alpha.astype(np.uint16)
    p = cv2.resize(rgb.astype(np.uint16) * a16[..., None], size, interpolation=cv2.INTER_AREA)
    ra = cv2.resize(a16 * np.uint16(257), size, interpolation=cv2.INTER_AREA).astype(np.float32)
    ra *= np.float32(1 / 65535)
    p = p.astype(np.float32) * np.float32(1 / 255)
    np.clip(ra, 0.0, 1.0, out=ra)
    out_a = np.rint(ra * 255.0).astype(np.uint8)
    inv = np.zeros_like(ra)
    np.divide(1.0, ra, out=inv, where=out_a > 0)
    p = np.clip(np.rint(p * inv[..., None]), 0, 255).astype(np.uint8)
    return p, out_a


def test_shared_crop_lays_out_every_canvas_exactly_as_a_fresh_one(shoe):
    """The channel presets lay the product out from the master's crop: the same pixels, placement
    and mask as laying it out from the photo, whether shrunk, enlarged or copied."""
    rgb, alpha = shoe
    big = cv2.resize(rgb, None, fx=2.5, fy=2.5, interpolation=cv2.INTER_LANCZOS4)
    big_a = cv2.resize(alpha, None, fx=2.5, fy=2.5, interpolation=cv2.INTER_LINEAR)
    scales = set()
    for src, a in ((rgb, alpha), (big, big_a)):
        crop = product_crop(src, a, unmix=True)  # as place_product makes it under the default [layout]
        x0, y0, x1, y1 = crop.box
        assert crop.box == product_box(a) and crop.area == float(a[y0:y1, x0:x1].sum(dtype=np.int64)) / 255.0
        flush = LayoutOptions(margin=0.0)  # the product's own size: copied, not resampled
        for opts, canvas, placement in ((LayoutOptions(), (1024, 1024), "floor"), (LayoutOptions(), (1080, 1350), ""),
                                        (LayoutOptions(), (1000, 1000), "packshot"),
                                        (LayoutOptions(), (2048, 2048), "center"),
                                        (LayoutOptions(), (x1 - x0 + 40, y1 - y0 + 40), "center"),
                                        (LayoutOptions(), (640, 360), "coverage"), (flush, (x1 - x0, y1 - y0), "center")):
            fresh = place_product(src, a, opts, placement, canvas=canvas)
            shared = place_product(src, a, opts, placement, canvas=canvas, crop=crop)
            assert fresh.placement == shared.placement
            for k in ("product_rgb", "product_alpha", "mask"):
                assert np.array_equal(getattr(fresh, k), getattr(shared, k)), (canvas, placement, k)
            scales.add((shared.placement.scale > 1) - (shared.placement.scale < 1))
            if shared.placement.scale < 1:  # one 4-channel resize == each channel resized on its own
                p = shared.placement
                rgb_s, a_s = _separate_premultiplied_resize(crop.rgb, crop.alpha, (p.width, p.height))
                assert np.array_equal(shared.product_rgb[p.y:p.y + p.height, p.x:p.x + p.width], rgb_s)
                assert np.array_equal(shared.product_alpha[p.y:p.y + p.height, p.x:p.x + p.width], a_s)
        assert crop.premultiplied16 is crop.premultiplied16  # made once
    assert scales == {-1, 0, 1}  # shrunk, copied and enlarged all seen


def test_crop_of_mismatched_matte_is_a_stage_error(shoe):
    rgb, alpha = shoe
    with pytest.raises(StageError, match="differ in size"):
        product_crop(rgb, alpha[1:])
