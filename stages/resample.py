"""Area-average shrinking of large images: a whole-factor box pass (OpenCV's fast path), then the rest."""

from __future__ import annotations

import cv2
import numpy as np


def box_factor(shape: tuple[int, ...], size: tuple[int, int]) -> int:
    """The largest whole factor an image of `shape` can be box-averaged by on its way to `size`
    (width, height); 1 when it is not at least twice as large on both sides."""
    return max(1, min(shape[1] // max(1, size[0]), shape[0] // max(1, size[1])))


def box_reduce(img: np.ndarray, k: int) -> np.ndarray:
    """`img` box-averaged by the whole factor `k` (OpenCV's fast INTER_AREA path): each output
    pixel the mean of a k x k block; the last rows and columns that do not fill a block (at most
    k - 1) are left out. `img` itself when `k` is 1; a side shorter than `k` is averaged whole to
    one pixel."""
    if k <= 1:
        return img
    h, w = max(1, img.shape[0] // k), max(1, img.shape[1] // k)
    return cv2.resize(img[: h * k, : w * k], (w, h), interpolation=cv2.INTER_AREA)


def shrink(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`img` area-averaged down to `size` (width, height).

    OpenCV's INTER_AREA is a plain box average, and fast, only for whole factors; any other
    factor takes a general path that costs about 100 ms to bring a 4 MP photo to 0.5 MP on one
    core (some 20x the box pass). So the image is first box-averaged by the largest whole factor
    k that keeps it at least `size`, then area-averaged by what is left: the same weights to
    within a fraction of a source pixel at the footprints' ends. The box pass leaves out the
    last rows and columns that do not fill a whole k x k box (at most k - 1 of them: under 0.1%
    of a photo's side at the factors used here), so this is for analysis images, previews and
    thumbnails; `covered` says which part was averaged, for results that must
    register with the whole image.
    """
    img = box_reduce(img, box_factor(img.shape, size))
    if (img.shape[1], img.shape[0]) == tuple(size):
        return img
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def covered(shape: tuple[int, ...], size: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of the part of an image of `shape` that `shrink` to `size` averages: the
    whole image less the rows and columns its box pass leaves out."""
    k = box_factor(shape, size)
    return shape[0] // k * k, shape[1] // k * k

