"""stages.unmix: the old backdrop taken out of a soft edge; opaque product pixels never change.

The cases are hand-masked tuning products re-shot by a physical model (benchmarks/_fringe_cases:
the edge blurred by `soft` px, a plain coloured backdrop with a light falloff and noise), so the
true alpha and the product's own colour at every edge pixel are known independently of the method.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from stages.layout import LayoutOptions, product_box, product_crop
from stages.matte import Matte
from stages.pipeline import matte_crop
from stages.unmix import unmix_edge

from conftest import load_benchmark  # tests/ is on sys.path

fringes = load_benchmark("_fringe_cases")


def _reshot(stem: str, colour: str, soft: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(photo, its true alpha as uint8, the product's own colours) of a re-shoot without bleed."""
    rgb, mask = fringes.hand_masked(stem)
    a = fringes.edge_alpha(mask, soft)
    return fringes.reshoot(rgb, mask, fringes.BACKDROPS[colour], soft, 0.0), np.rint(a * 255).astype(np.uint8), rgb


def _backdrop_shown(rgb: np.ndarray, alpha: np.ndarray, truth: np.ndarray, colour: str) -> float:
    """Mean over the soft edge of the old backdrop a composite shows: alpha x how far each pixel's
    colour lies from the product's own toward the backdrop's. (Moving the other way is not counted:
    the hand masks' own edge pixels hold some of the original backdrop, beige or white, so a dark
    product's truth there is lighter than the product, and an unmixed edge darker than it.)"""
    soft = cv2.inRange(alpha, 1, 254) > 0
    a = alpha[soft].astype(np.float32) / 255.0
    t = truth[soft].astype(np.float32)
    toward = np.asarray(fringes.BACKDROPS[colour], np.float32) - t
    toward /= np.maximum(np.linalg.norm(toward, axis=1, keepdims=True), 1.0)
    return float((a * np.maximum(((rgb[soft].astype(np.float32) - t) * toward).sum(axis=1), 0.0)).mean())


@pytest.mark.parametrize("stem", ["20_shoes_beige-loafers_on-beige-floor", "22_shoes_strap-sandals_white",
                                  "32_apparel_black-shorts_on-white-quilt"])
@pytest.mark.parametrize("colour,soft", [("red", 1.0), ("blue", 2.0), ("pale-pink", 0.7)])
def test_the_old_backdrop_shown_on_the_edge_drops_and_the_opaque_product_is_untouched(stem, colour, soft):
    src, alpha, truth = _reshot(stem, colour, soft)
    box = product_box(alpha)
    x0, y0, x1, y1 = box
    out, n = unmix_edge(src, alpha, box)
    a, s, t = alpha[y0:y1, x0:x1], src[y0:y1, x0:x1], truth[y0:y1, x0:x1]
    assert n > 1000
    assert np.array_equal(out[a == 255], s[a == 255]) and np.array_equal(out[a == 0], s[a == 0])
    before, after = _backdrop_shown(s, a, t, colour), _backdrop_shown(out, a, t, colour)
    assert after < 0.5 * before, (before, after)


def test_a_red_fringe_on_the_loafers_is_mostly_gone():
    src, alpha, truth = _reshot("20_shoes_beige-loafers_on-beige-floor", "red", 1.0)
    x0, y0, x1, y1 = box = product_box(alpha)
    out, _ = unmix_edge(src, alpha, box)
    a, t = alpha[y0:y1, x0:x1], truth[y0:y1, x0:x1]
    assert _backdrop_shown(out, a, t, "red") < 0.25 * _backdrop_shown(src[y0:y1, x0:x1], a, t, "red")


@pytest.mark.parametrize("stem,colour", [("20_shoes_beige-loafers_on-beige-floor", "red"),
                                          ("22_shoes_strap-sandals_white", "pale-pink"),
                                          ("32_apparel_black-shorts_on-white-quilt", "pale-pink")])
def test_an_edge_whose_matte_overstates_its_coverage_is_unmixed_by_what_its_colour_shows(stem, colour):
    """A learned matte's alpha is a probability: IS-Net calls a rim pixel that is a third backdrop
    nearly opaque. Here the matte says 1.5x each edge pixel's true coverage (opaque from 2/3):
    unmixed by its alpha, most of the backdrop stays on the soft pixels; by the share their colour
    shows, little does. Pixels the matte calls opaque are still copied as they are."""
    src, alpha, truth = _reshot(stem, colour, 1.0)
    overstated = np.rint(np.minimum(alpha.astype(np.float32) * 1.5, 255.0)).astype(np.uint8)
    x0, y0, x1, y1 = box = product_box(overstated)
    out, _ = unmix_edge(src, overstated, box)
    a, s, t = overstated[y0:y1, x0:x1], src[y0:y1, x0:x1], truth[y0:y1, x0:x1]
    assert np.array_equal(out[a == 255], s[a == 255])
    assert _backdrop_shown(out, a, t, colour) < 0.2 * _backdrop_shown(s, a, t, colour)


def test_an_edge_with_no_backdrop_near_is_left_as_it_is():
    """A product filling the photo, its soft edge at the frame: no backdrop to take out."""
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    alpha = np.full((200, 300), 120, np.uint8)  # soft all over: nowhere under 5%
    alpha[40:160, 60:240] = 255
    out, n = unmix_edge(rgb, alpha, (0, 0, 300, 200))
    assert n == 0 and np.array_equal(out, rgb)


def test_a_hard_matte_has_nothing_to_unmix():
    src, alpha, _ = _reshot("20_shoes_beige-loafers_on-beige-floor", "red", 1.0)
    hard = np.where(alpha >= 128, 255, 0).astype(np.uint8)
    x0, y0, x1, y1 = box = product_box(hard)
    out, n = unmix_edge(src, hard, box)
    assert n == 0 and np.array_equal(out, src[y0:y1, x0:x1])


def test_only_a_mixed_edge_is_unmixed_and_the_option_turns_it_off():
    """The photo's own transparency and kept shadows are not mixes of product and backdrop."""
    src, alpha, _ = _reshot("20_shoes_beige-loafers_on-beige-floor", "red", 1.0)
    x0, y0, x1, y1 = product_box(alpha)
    plain = src[y0:y1, x0:x1]
    for mixed, unmix, changed in ((True, True, True), (False, True, False), (True, False, False)):
        crop = matte_crop(src, Matte(alpha, 1.0, "test", {}, mixed_edge=mixed), LayoutOptions(unmix_edge=unmix))
        assert (crop.unmixed > 0) == changed and (not np.array_equal(crop.rgb, plain)) == changed
        assert np.array_equal(crop.alpha, alpha[y0:y1, x0:x1])
    assert product_crop(src, alpha).unmixed == 0


def test_a_translucent_part_is_left_as_it_is_when_asked():
    """A matte unsure of a part makes it a see-through plateau: that part is the product's own
    colour, not a mix, and unmixing it would recolour the product. `leave_plateaus` leaves it."""
    src, alpha, _ = _reshot("32_apparel_black-shorts_on-white-quilt", "red", 1.0)
    ghost = alpha.astype(np.float32)
    xs = np.nonzero(alpha.any(axis=0))[0]
    cut = int(xs.max() - 0.25 * (xs.max() - xs.min()))
    ghost[:, cut:] *= 0.6  # the outer quarter 60% opaque, its pixels the product's own
    ghost = np.rint(ghost).astype(np.uint8)
    x0, y0, x1, y1 = box = product_box(ghost)
    plateau = ghost[y0:y1, x0:x1] == 153  # wholly product before: the plateau's inside
    plateau[:, : cut - x0 + 12] = False  # its inside, away from the edges between it and the rest
    changed, _ = unmix_edge(src, ghost, box)
    kept, _ = unmix_edge(src, ghost, box, leave_plateaus=True)
    inside = src[y0:y1, x0:x1][plateau]
    assert plateau.sum() > 500
    # recoloured where the backdrop is within reach (the plateau's outer part)
    assert (np.abs(changed[plateau].astype(int) - inside).max(axis=1) > 8).mean() > 0.15
    assert np.array_equal(kept[plateau], inside)
