"""Composite: put the original product pixels back over the generated scene."""

from __future__ import annotations

import numpy as np

from stages.errors import StageError
from stages.layout import Layout


def composite(scene_rgb: np.ndarray, layout: Layout) -> np.ndarray:
    """Alpha-blend the product layer over the scene; opaque product pixels are copied, not blended.

    Whatever the scene backend drew under the product is discarded there, so a generator that
    redraws or shifts the product cannot change a single opaque product pixel.
    """
    if scene_rgb.shape != layout.product_rgb.shape:
        raise StageError(f"scene {scene_rgb.shape} does not match the canvas {layout.product_rgb.shape}")
    alpha = layout.product_alpha
    a = alpha.astype(np.float32)[..., None] / 255.0
    blended = layout.product_rgb.astype(np.float32) * a + scene_rgb.astype(np.float32) * (1.0 - a)
    out = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    core = alpha == 255
    out[core] = layout.product_rgb[core]
    return out
