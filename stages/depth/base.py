"""What a depth backend gives: a canvas-space depth map that conditions the scene generator.

Convention: uint8, 255 = near, 0 = far (what depth ControlNets are trained on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from stages.layout import Layout


@dataclass(frozen=True)
class DepthMap:
    depth: np.ndarray  # HxW uint8, 255 = near
    backend: str
    details: dict[str, Any]


class DepthBackend(Protocol):
    name: str  # its name in the table (stages.depth.BACKENDS)
    Options: type  # its options dataclass: the [depth.<name>] table

    @classmethod
    def load(cls, options: Any) -> DepthBackend: ...

    def run(self, layout: Layout, horizon: float) -> DepthMap: ...


def preview_canvas(layout: Layout, grey: int = 128) -> np.ndarray:
    """The product over flat grey: what a learned depth estimator sees before any scene exists."""
    a = layout.product_alpha.astype(np.float32)[..., None] / 255.0
    out = layout.product_rgb.astype(np.float32) * a + grey * (1.0 - a)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
