import dataclasses

import cv2
import numpy as np
import pytest
from PIL import Image

from stages.config import LayoutConfig
from stages.errors import StageError
from stages.layout import place_product


def _photo_and_ellipse(images, name="27_hat_leather-cap_on-white-sheet.jpg"):
    rgb = np.asarray(Image.open(images / name).convert("RGB"))
    h, w = rgb.shape[:2]
    alpha = np.zeros((h, w), np.uint8)
    cv2.ellipse(alpha, (w // 2, h // 2), (w // 3, h // 4), 0, 0, 360, 255, -1, cv2.LINE_AA)
    return rgb, alpha


def test_product_fits_inside_margins_bottom_anchored(images):
    rgb, alpha = _photo_and_ellipse(images)
    cfg = LayoutConfig(width=512, height=512, margin=0.1, floor=0.08, max_scale=4.0)
    lay = place_product(rgb, alpha, cfg)
    p = lay.placement
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
    cfg = LayoutConfig(width=1024, height=1024, max_scale=1.0)
    lay = place_product(rgb, alpha, cfg)
    p = lay.placement
    assert p.scale == 1.0
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
    lay = place_product(rgb, alpha, LayoutConfig(width=512, height=512, max_scale=3.0))
    edge = (lay.product_alpha > 0) & (lay.product_alpha < 255)
    assert edge.any()
    assert lay.product_rgb[edge][:, 1].max() == 0  # no green at all


def test_centre_anchor_and_max_scale(images):
    rgb, alpha = _photo_and_ellipse(images)
    cfg = LayoutConfig(width=2048, height=2048, anchor="center", max_scale=1.5)
    lay = place_product(rgb, alpha, cfg)
    assert lay.placement.scale <= 1.5
    p = lay.placement
    assert abs((p.y + p.height / 2) - 1024) <= 1 and abs((p.x + p.width / 2) - 1024) <= 1


def test_empty_matte_is_a_stage_error(images):
    rgb, alpha = _photo_and_ellipse(images)
    with pytest.raises(StageError, match="no product pixels"):
        place_product(rgb, np.zeros_like(alpha), LayoutConfig())
