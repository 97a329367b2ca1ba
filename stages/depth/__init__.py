"""Depth: a canvas-space depth map (uint8, 255 = near) that conditions the scene generator.

`BACKENDS` names every backend (one per module); `[depth] backend` picks one.
"""

from __future__ import annotations

from typing import Any

from stages.depth.base import DepthBackend, DepthMap, preview_canvas
from stages.depth.controlnet_aux import ControlnetAuxDepth
from stages.depth.geometric import GeometricDepth
from stages.depth.transformers import TransformersDepth
from stages.registry import lookup

BACKENDS: dict[str, type[DepthBackend]] = {
    GeometricDepth.name: GeometricDepth,
    ControlnetAuxDepth.name: ControlnetAuxDepth,
    TransformersDepth.name: TransformersDepth,
}


def load_depth_backend(name: str, options: Any) -> DepthBackend:
    """Load the named backend with its options; an unknown name raises UnknownBackendError."""
    return lookup(BACKENDS, "depth", name).load(options)


__all__ = ["BACKENDS", "DepthBackend", "DepthMap", "load_depth_backend", "preview_canvas"]
