"""Composite: put the original product pixels back over the generated scene."""

from __future__ import annotations

import cv2
import numpy as np

from stages.errors import StageError
from stages.layout import Layout
from stages.masks import points


def composite(scene_rgb: np.ndarray, layout: Layout) -> np.ndarray:
    """Alpha-blend the product layer over the scene; opaque product pixels are copied, not blended.

    Whatever the scene backend drew under the product is discarded there, so a generator that
    redraws or shifts the product cannot change a single opaque product pixel.

    Only the soft edge (0 < alpha < 255) is blended, with the float32 formula
    `rint(product * a + scene * (1 - a))`; elsewhere the result is the scene (alpha 0) or the
    product (alpha 255) as it stands, exactly what that formula gives there. The edge is a thin
    outline, so this costs a fraction of blending the whole canvas.
    """
    if scene_rgb.shape != layout.product_rgb.shape:
        raise StageError(f"scene {scene_rgb.shape} does not match the canvas {layout.product_rgb.shape}")
    if scene_rgb.dtype != np.uint8:
        raise StageError(f"scene is {scene_rgb.dtype}, expected uint8")
    alpha = layout.product_alpha
    out = np.array(scene_rgb, order="C", copy=True)
    x, y, w, h = cv2.boundingRect(alpha)  # box of alpha > 0: nothing outside it changes
    if w == 0 or h == 0:
        return out
    ys, xs = points(cv2.inRange(alpha[y : y + h, x : x + w], 1, 254))
    ys += y
    xs += x
    a = alpha[ys, xs].astype(np.float32)[:, None] / 255.0
    blended = layout.product_rgb[ys, xs].astype(np.float32) * a + out[ys, xs].astype(np.float32) * (1.0 - a)
    out = cv2.copyTo(layout.product_rgb, cv2.compare(alpha, 255, cv2.CMP_EQ), out)
    out[ys, xs] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out
