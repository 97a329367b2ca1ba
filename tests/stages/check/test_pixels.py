"""Pixel checks on real photos: the bounding-box fast path gives exactly the results of comparing
every pixel of the canvas, and still catches what it must."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from stages.check import CheckResult
from stages.check.pixels import (
    CheckOptions, cropped, decode_rgb, format_pixels, lossy_pixels, matte_confidence, product_pixels,
)
from stages.composite import composite
from stages.encode import encode_png
from stages.layout import LayoutOptions, place_product
from stages.matte.plain_backdrop import PlainBackdropOptions, plain_backdrop_matte

PHOTOS = ("22_shoes_strap-sandals_white.jpg", "28_hat_leather-newsboy-cap_on-white-sheet.jpg",
          "31_apparel_shorts-on-hanger_white-wall.jpg")
CONFIGS = (CheckOptions(), CheckOptions(pixel_tolerance=6, core_alpha=128), CheckOptions(core_alpha=1, lossy_mean_tolerance=0.5))


def _reference_product_pixels(decoded, layout, cfg) -> CheckResult:
    """Every pixel of the canvas, compared in int16 (the plain formulation of the check)."""
    core = layout.product_alpha >= cfg.core_alpha
    n = int(core.sum())
    if decoded.shape != layout.product_rgb.shape:
        return CheckResult("product_pixels", False, 255.0, f"<= {cfg.pixel_tolerance}",
                           f"output is {decoded.shape[1]}x{decoded.shape[0]}, canvas is "
                           f"{layout.size[0]}x{layout.size[1]}", True)
    if n == 0:
        return CheckResult("product_pixels", False, 0.0, f"<= {cfg.pixel_tolerance}",
                           f"cut-out has no opaque pixels (alpha >= {cfg.core_alpha}): the product is see-through", False)
    diff = np.abs(decoded[core].astype(np.int16) - layout.product_rgb[core].astype(np.int16))
    worst = int(diff.max())
    changed = int((diff.max(axis=1) > cfg.pixel_tolerance).sum())
    msg = f"{n} opaque product pixels identical" if worst == 0 else f"{changed} of {n} product pixels differ (max {worst})"
    return CheckResult("product_pixels", worst <= cfg.pixel_tolerance, float(worst), f"<= {cfg.pixel_tolerance}", msg, True)


def _reference_lossy(decoded, layout, cfg) -> CheckResult:
    core = layout.product_alpha >= cfg.core_alpha
    limit = f"mean <= {cfg.lossy_mean_tolerance}"
    if decoded.shape != layout.product_rgb.shape:
        return CheckResult("product_pixels", False, 255.0, limit, "rendition does not match the canvas", True)
    if not core.any():
        return CheckResult("product_pixels", False, 0.0, limit,
                           f"cut-out has no opaque pixels (alpha >= {cfg.core_alpha}): the product is see-through", False)
    diff = np.abs(decoded[core].astype(np.int16) - layout.product_rgb[core].astype(np.int16))
    mean, worst = float(diff.mean()), int(diff.max())
    return CheckResult("product_pixels", mean <= cfg.lossy_mean_tolerance, round(mean, 3), limit,
                       f"lossy: mean |diff| {mean:.2f}, max {worst}", True)


@pytest.fixture(scope="module", params=PHOTOS)
def staged(request, images):
    rgb = np.asarray(Image.open(images / request.param).convert("RGB"))
    alpha, _, _ = plain_backdrop_matte(rgb, PlainBackdropOptions())
    layout = place_product(rgb, alpha, LayoutOptions(width=512, height=512))
    scene = np.random.default_rng(3).integers(0, 256, layout.product_rgb.shape, dtype=np.uint8)
    return layout, composite(scene, layout)


def _variants(layout, staged):
    """Published pixels as they may come back: exact, edited in and outside the product, lossy, resized."""
    rng = np.random.default_rng(11)
    exact = decode_rgb(encode_png(staged, 1))
    inside = exact.copy()
    ys, xs = np.nonzero(layout.product_alpha >= 128)
    k = rng.choice(ys.size, 40, replace=False)
    inside[ys[k], xs[k], rng.integers(0, 3, 40)] ^= rng.integers(1, 40, 40).astype(np.uint8)
    outside = exact.copy()
    outside[layout.product_alpha == 0] = 0
    lossy = []
    for q in (95, 60):
        buf = io.BytesIO()
        Image.fromarray(staged).save(buf, format="JPEG", quality=q, subsampling=0)
        lossy.append(decode_rgb(buf.getvalue()))
    return {"exact": exact, "inside": inside, "outside": outside, "jpeg95": lossy[0], "jpeg60": lossy[1],
            "cropped": exact[:-2]}


def test_fast_checks_equal_the_every_pixel_reference(staged):
    layout, out = staged
    for name, decoded in _variants(layout, out).items():
        for cfg in CONFIGS:
            ref = _reference_product_pixels(decoded, layout, cfg)
            assert product_pixels(decoded, layout, cfg) == ref, (name, cfg)
            assert format_pixels(decoded, layout, cfg, "webp") == ref, (name, cfg)
            assert format_pixels(decoded, layout, cfg, "jpeg") == _reference_lossy(decoded, layout, cfg)


def test_changed_product_pixels_are_caught_and_counted(staged):
    layout, out = staged
    v = _variants(layout, out)
    assert product_pixels(v["exact"], layout, CheckOptions()).passed
    assert product_pixels(v["outside"], layout, CheckOptions()).passed  # the scene may change freely
    core = layout.product_alpha == 255
    one = v["exact"].copy()
    y, x = np.argwhere(core)[len(np.argwhere(core)) // 2]
    one[y, x, 2] ^= 0x80
    res = product_pixels(one, layout, CheckOptions())
    assert (res.passed, res.value) == (False, 128.0) and res.message.startswith("1 of ")
    assert not product_pixels(v["inside"], layout, CheckOptions(core_alpha=128)).passed
    assert not product_pixels(v["jpeg95"], layout, CheckOptions()).passed
    assert not lossy_pixels(v["jpeg60"], layout, CheckOptions(lossy_mean_tolerance=0.5)).passed
    assert "canvas is 512x512" in product_pixels(v["cropped"], layout, CheckOptions()).message


def test_a_see_through_cut_out_goes_to_review_not_reject(staged):
    """A matte with no opaque pixel (a soft mask that never reaches the core level) is a doubtful
    cut-out for a person to judge: the check fails without blocking."""
    layout, out = staged
    soft = replace(layout, product_alpha=np.minimum(layout.product_alpha, 254))
    for res in (product_pixels(out, soft, CheckOptions()), lossy_pixels(out, soft, CheckOptions())):
        assert not res.passed and not res.blocking
        assert "cut-out has no opaque pixels (alpha >= 255)" in res.message
    # the same soft alpha has a core once the core level is below it
    assert product_pixels(out, soft, CheckOptions(core_alpha=254)).blocking


def test_low_matte_confidence_says_what_the_matte_found():
    reasons = ["a faded mirror image of the product's base below row 469 (a floor reflection) was cut away"]
    low = matte_confidence(0.4, 0.5, reasons)
    assert not low.passed and "floor reflection" in low.message and "row 469" in low.message
    assert "background not plain" in matte_confidence(0.4, 0.5).message  # a backend that gives no reasons
    good = matte_confidence(0.9, 0.5, ["brightness varies by 20 levels"])
    assert good.passed and good.message == "cut-out looks reliable"


def test_a_product_the_photo_cuts_off_is_sent_to_review(repo):
    """The hand-made mask of a real photo, framed tighter and tighter on the right: once the frame
    cuts through the product along more than the allowance of its side, the SKU goes to review."""
    mask = np.asarray(Image.open(repo / "tests" / "data" / "masks" / "19_shoes_black-suede_white.png").convert("L"))
    run = (mask >= 128).mean(axis=0)  # per column: the share of the side a frame there would meet
    cols = np.nonzero(run)[0]
    whole = cropped(mask, 0.02)
    assert whole.passed and whole.value == 0.0 and not whole.blocking
    grazing = max(c for c in cols if run[c] <= 0.015)  # the frame grazes the toe: below the allowance
    near = min(c for c in cols if run[c] > 0.03)  # ... and just beyond it
    deep = cols[-1] - 40  # 40 px into the product
    res = cropped(mask[:, : grazing + 1], 0.02)
    assert res.passed and abs(res.value - run[grazing]) < 1e-3
    for c in (near, deep):
        res = cropped(mask[:, : c + 1], 0.02)
        assert not res.passed and not res.blocking and res.name == "cropped"
        assert "right" in res.message and abs(res.value - run[c]) < 1e-3
    # the other sides read the same way, and a looser allowance lets a small cut through
    assert "left" in cropped(mask[:, cols[0] + 20:], 0.02).message
    assert "bottom" in cropped(np.ascontiguousarray(mask[:, : deep + 1].T), 0.02).message
    assert cropped(mask[:, : near + 1], 0.5).passed
