"""Masks: where their pixels are."""

from __future__ import annotations

import cv2
import numpy as np


def points(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) of the set pixels of a 2-D bool or uint8 mask in scan order, as np.nonzero gives
    them (int32; OpenCV's scan is about ten times faster than numpy's at 1-4 MP)."""
    found = cv2.findNonZero(mask.view(np.uint8))
    if found is None:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    found = found.reshape(-1, 2)
    return found[:, 1], found[:, 0]
