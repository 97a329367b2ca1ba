"""Translucent parts of a cut-out: built from the tuning photos' hand masks, independently of the
measure (a share of the product made partly opaque; edges blurred by a Gaussian)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from stages.matte import Matte
from stages.matte.translucent import LIMIT, judge_translucency, translucent_part

MASKS = Path(__file__).resolve().parents[2] / "data" / "masks"
STEMS = ["19_shoes_black-suede_white", "22_shoes_strap-sandals_white", "27_hat_leather-cap_on-white-sheet",
         "32_apparel_black-shorts_on-white-quilt"]


def _hard(stem: str) -> np.ndarray:
    return (cv2.imread(str(MASKS / f"{stem}.png"), cv2.IMREAD_GRAYSCALE) >= 128).astype(np.float32)


def _to8(a: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(a, 0, 1) * 255).astype(np.uint8)


def _ghost(hard: np.ndarray, part: float, level: float) -> np.ndarray:
    """The outer `part` of the product's width (on the right) made `level` opaque; edges 1 px soft."""
    xs = np.nonzero(hard.any(axis=0))[0]
    cut = int(xs.max() - part * (xs.max() - xs.min()))
    a = hard.copy()
    a[:, cut:] *= level
    return _to8(cv2.GaussianBlur(a, (0, 0), 1.0))


@pytest.mark.parametrize("stem", STEMS)
def test_soft_edges_are_not_translucent_parts(stem):
    """Edges blurred by 1-6 px (1.5% of a 400 px photo): ramps, not plateaus."""
    for sigma in (1.0, 2.0, 4.0, 6.0):
        found = translucent_part(_to8(cv2.GaussianBlur(_hard(stem), (0, 0), sigma)))
        assert found.share <= LIMIT, (sigma, found.share)


@pytest.mark.parametrize("stem", STEMS)
def test_a_fifth_of_the_product_half_see_through_is_found_where_it_is(stem):
    hard = _hard(stem)
    for level in (0.3, 0.6, 0.85):
        found = translucent_part(_ghost(hard, 0.2, level))
        assert found.share > LIMIT, (level, found.share)
        x0, y0, x1, y1 = found.box
        xs = np.nonzero(hard.any(axis=0))[0]
        assert x1 > xs.max() - 0.2 * (xs.max() - xs.min())  # on the side made translucent


def test_a_large_photo_is_read_reduced_with_the_same_answer():
    hard = _hard(STEMS[0])
    small = _ghost(hard, 0.2, 0.6)
    big = cv2.resize(small, None, fx=6, fy=6, interpolation=cv2.INTER_LINEAR)  # about 7 MP
    a, b = translucent_part(small), translucent_part(big)
    assert b.share > LIMIT and abs(a.share - b.share) < 0.3 * a.share
    assert abs(b.box[0] / 6 - a.box[0]) < 8 and abs(b.box[2] / 6 - a.box[2]) < 8


def test_the_review_reason_and_who_is_judged():
    ghost = _ghost(_hard(STEMS[1]), 0.3, 0.5)
    judged = judge_translucency(Matte(ghost, 0.9, "rembg:test", {"reasons": []}))
    assert judged.confidence < 0.5 and judged.translucent_share == judged.details["translucent_share"] > LIMIT
    assert judged.details["reasons"][0].startswith("translucent part: ")
    # the photo's own transparency and kept shadows are translucent on purpose: not judged
    kept = judge_translucency(Matte(ghost, 0.9, "source-alpha", {"reasons": []}, mixed_edge=False))
    assert kept.confidence == 0.9 and "translucent_share" not in kept.details
    clean = judge_translucency(Matte(_to8(_hard(STEMS[1])), 0.9, "rembg:test", {"reasons": []}))
    assert clean.confidence == 0.9 and clean.details["translucent_share"] == clean.translucent_share == 0.0
