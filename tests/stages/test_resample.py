"""Two-pass area shrinking (stages/resample.py): the same averages as one area resize, cheaper."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from stages.resample import box_factor, box_reduce, covered, shrink

PHOTO = "catalog/images/19_shoes_black-suede_white.jpg"


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from pathlib import Path

    rgb = Image.open(Path(__file__).resolve().parents[2] / PHOTO).convert("RGB")
    return np.asarray(rgb.resize((rgb.width * 4 + 3, rgb.height * 4 + 1), Image.Resampling.LANCZOS))  # 1603x2137


def test_whole_factors_and_the_part_averaged():
    assert box_factor((2137, 1603, 3), (612, 817)) == 2
    assert box_factor((1000, 1000), (600, 600)) == 1
    assert box_factor((1024, 1024, 3), (256, 256)) == 4
    assert covered((2137, 1603, 3), (612, 817)) == (2136, 1602)
    assert covered((1000, 1000), (600, 600)) == (1000, 1000)


def test_shrink_matches_one_area_resize_of_the_part_it_covers(photo):
    size = (400, 534)  # a whole 4x4 box pass over 1600x2136 of the photo brings it there exactly
    h, w = covered(photo.shape, size)
    ours = shrink(photo, size)
    ref = cv2.resize(photo[:h, :w], size, interpolation=cv2.INTER_AREA)
    assert ours.shape == (534, 400, 3) and ours.dtype == np.uint8
    assert np.abs(ours.astype(int) - ref).max() <= 1


def test_shrink_by_a_general_factor_stays_within_a_level_on_average(photo):
    size = (612, 816)  # factor ~2.6: a 2x2 box pass, then the rest
    ours = shrink(photo, size).astype(int)
    ref = cv2.resize(photo, size, interpolation=cv2.INTER_AREA).astype(int)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).mean() < 1.0


def test_a_small_image_is_resized_in_one_pass():
    img = np.arange(90 * 120, dtype=np.uint8).reshape(90, 120)
    assert np.array_equal(shrink(img, (100, 75)), cv2.resize(img, (100, 75), interpolation=cv2.INTER_AREA))


def test_box_reduce_is_the_mean_of_whole_blocks():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (37, 50), dtype=np.uint8)
    out = box_reduce(img, 4)
    blocks = img[:36, :48].astype(np.float64).reshape(9, 4, 12, 4).mean(axis=(1, 3))
    assert out.shape == (9, 12) and np.abs(out - blocks).max() <= 0.5  # rounded to uint8
    assert box_reduce(img, 1) is img
    thin = box_reduce(img[:, :3], 4)  # a side shorter than the factor: one pixel across
    assert thin.shape == (9, 1)
