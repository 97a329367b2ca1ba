"""stages.masks: where a mask's pixels are, in numpy's order."""

from __future__ import annotations

import cv2
import numpy as np

from stages.masks import points


def test_points_are_numpy_nonzero_for_bool_views_and_uint8_masks(images):
    rgb = cv2.imread(str(images / "27_hat_leather-cap_on-white-sheet.jpg"), cv2.IMREAD_GRAYSCALE)
    uint8 = cv2.inRange(rgb, 60, 140)  # 0/255, as OpenCV's masks come
    view = (rgb > 128)[10:400, 20:380]  # a bool view with row strides
    for mask in (uint8, view):
        ys, xs = points(mask)
        ref_y, ref_x = np.nonzero(mask)
        assert ys.size > 1000
        np.testing.assert_array_equal(ys, ref_y)
        np.testing.assert_array_equal(xs, ref_x)


def test_an_empty_mask_has_no_points():
    ys, xs = points(np.zeros((5, 5), bool))
    assert ys.size == 0 and xs.size == 0
