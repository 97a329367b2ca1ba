"""The plain-backdrop matte of a photo larger than `work_pixels`: made reduced, returned at the
photo's size, as good against the reference mask as at the photo's own size, with its reasons'
boxes in the photo's pixels."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from stages.errors import ConfigError
from stages.matte.plain_backdrop import PlainBackdropOptions, plain_backdrop_matte

REPO = Path(__file__).resolve().parents[3]
MASKS = REPO / "tests" / "data" / "masks"


def _iou(alpha: np.ndarray, mask: np.ndarray) -> float:
    a, m = alpha >= 128, mask >= 128
    return float((a & m).sum() / (a | m).sum())


def _scaled(stem: str, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """A catalog photo and its reference mask enlarged `factor` times (Lanczos, bilinear)."""
    rgb = Image.open(next((REPO / "catalog" / "images").glob(stem + ".*"))).convert("RGB")
    size = (round(rgb.width * factor), round(rgb.height * factor))
    mask = np.asarray(Image.open(MASKS / f"{stem}.png").convert("L"))
    return np.asarray(rgb.resize(size, Image.Resampling.LANCZOS)), cv2.resize(mask, size, interpolation=cv2.INTER_LINEAR)


def test_a_large_photo_is_matted_reduced_and_returned_at_its_size():
    rgb, mask = _scaled("19_shoes_black-suede_white", 2.5)  # 1000x1335 = 1.3 MP
    alpha, confidence, details = plain_backdrop_matte(rgb, PlainBackdropOptions(work_pixels=300_000))
    assert alpha.shape == rgb.shape[:2] and alpha.dtype == np.uint8
    w, h = details["matted_at"]
    assert abs(w * h - 300_000) < 3_000 and abs(w / h - rgb.shape[1] / rgb.shape[0]) < 0.01
    assert _iou(alpha, mask) >= 0.98
    assert confidence >= 0.9
    full, _, full_details = plain_backdrop_matte(rgb, PlainBackdropOptions(work_pixels=10_000_000))
    assert full_details["matted_at"] == [rgb.shape[1], rgb.shape[0]]
    assert _iou(alpha, full) >= 0.98


def test_a_photo_within_work_pixels_is_matted_at_its_own_size():
    rgb = np.asarray(Image.open(REPO / "catalog" / "images" / "19_shoes_black-suede_white.jpg").convert("RGB"))
    a1, c1, d1 = plain_backdrop_matte(rgb, PlainBackdropOptions())
    a2, c2, _ = plain_backdrop_matte(rgb, PlainBackdropOptions(work_pixels=rgb.shape[0] * rgb.shape[1]))
    assert d1["matted_at"] == [rgb.shape[1], rgb.shape[0]]
    assert np.array_equal(a1, a2) and c1 == c2


def test_reason_boxes_are_in_the_photos_pixels():
    """The quilt's stray fluff: a reason with a box, reported in the enlarged photo's pixels."""
    small = np.asarray(Image.open(REPO / "catalog" / "images" / "23_shoes_white-sneakers_on-brown.jpg").convert("RGB"))
    big = cv2.resize(small, (small.shape[1] * 3, small.shape[0] * 3), interpolation=cv2.INTER_CUBIC)
    _, _, d_small = plain_backdrop_matte(small, PlainBackdropOptions())
    _, _, d_big = plain_backdrop_matte(big, PlainBackdropOptions(work_pixels=small.shape[0] * small.shape[1]))
    boxes = [[int(v) for v in m] for r in d_big["reasons"] for m in re.findall(r"x (\d+)-(\d+), y (\d+)-(\d+)", r)]
    small_boxes = [[int(v) for v in m] for r in d_small["reasons"] for m in re.findall(r"x (\d+)-(\d+), y (\d+)-(\d+)", r)]
    assert boxes and small_boxes
    assert max(b[1] for b in boxes) > small.shape[1]  # beyond the small photo: photo pixels, not matted ones
    for x0, x1, y0, y1 in boxes:
        assert 0 <= x0 < x1 <= big.shape[1] and 0 <= y0 < y1 <= big.shape[0]


def test_work_pixels_below_256_squared_is_refused():
    with pytest.raises(ConfigError, match="work_pixels"):
        PlainBackdropOptions(work_pixels=1000).check("matte.plain_backdrop")
