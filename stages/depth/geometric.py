"""`geometric`: studio geometry from the matte, no weights."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from stages.depth.base import DepthMap
from stages.layout import Layout


@dataclass(frozen=True)
class GeometricOptions:
    """[depth.geometric]: nothing to set."""


class GeometricDepth:
    """Studio geometry from the matte: a far backdrop, a floor that nears the camera, a rounded product.

    Good for what it claims: product shots on a sweep or table top, the usual catalog framing.
    """

    name = "geometric"
    Options = GeometricOptions
    FAR, FLOOR_NEAR, BULGE = 40.0, 200.0, 45.0

    def __init__(self, options: GeometricOptions) -> None:
        self.options = options

    @classmethod
    def load(cls, options: GeometricOptions) -> GeometricDepth:
        return cls(options)  # nothing to load

    def run(self, layout: Layout, horizon: float) -> DepthMap:
        """The floor's depth row by row, and over it the product's rounded depth, in front of the
        floor where it stands. Only the product's box is worked per pixel: every other pixel is
        its row's floor depth."""
        H, W = layout.product_alpha.shape
        rows = np.arange(H, dtype=np.float32)
        y_h = horizon * H
        floor = np.where(
            rows <= y_h,
            self.FAR,
            self.FAR + (self.FLOOR_NEAR - self.FAR) * (rows - y_h) / max(H - 1 - y_h, 1.0),
        )
        out = np.repeat(np.clip(np.rint(floor), 0, 255).astype(np.uint8)[:, None], W, axis=1)
        p = layout.placement
        base_row = min(H - 1, p.y + p.height - 1)
        base = float(floor[base_row])
        # the box of alpha > 0 grown by a pixel: the solid pixels' nearest non-solid pixel lies
        # inside it (or beyond the canvas edge, as over the whole canvas)
        x, y, w, h = cv2.boundingRect(layout.product_alpha)
        if w:
            box = slice(max(0, y - 1), min(H, y + h + 1)), slice(max(0, x - 1), min(W, x + w + 1))
            alpha = layout.product_alpha[box]
            solid = cv2.compare(alpha, 128, cv2.CMP_GE) // 255
            if cv2.countNonZero(solid):
                dist = cv2.distanceTransform(solid, cv2.DIST_L2, 5)
                bulge = np.sqrt(dist / max(float(dist.max()), 1.0))
                product_depth = base + 12.0 + self.BULGE * bulge
                a = alpha.astype(np.float32) / 255.0
                depth = np.repeat(floor[box[0], None], alpha.shape[1], axis=1)
                depth = depth * (1.0 - a) + np.maximum(product_depth, depth) * a
                out[box] = np.clip(np.rint(depth), 0, 255).astype(np.uint8)
        return DepthMap(out, self.name, {"horizon": horizon, "product_base_depth": round(base, 1)})
