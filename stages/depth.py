"""Depth: a canvas-space depth map that conditions the scene generator.

Convention: uint8, 255 = near, 0 = far (what depth ControlNets are trained on).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from stages.config import DepthConfig
from stages.errors import ModelUnavailableError, StageError
from stages.layout import Layout
from stages.registry import Registry


@dataclass(frozen=True)
class DepthMap:
    depth: np.ndarray  # HxW uint8, 255 = near
    backend: str
    details: dict[str, Any]


class DepthBackend(Protocol):
    name: str

    def __init__(self, cfg: DepthConfig) -> None: ...

    def run(self, layout: Layout, horizon: float) -> DepthMap: ...


depth_backends: Registry[DepthBackend] = Registry("depth")


def make_depth_backend(cfg: DepthConfig) -> DepthBackend:
    return depth_backends.get(cfg.backend)(cfg)


def preview_canvas(layout: Layout, grey: int = 128) -> np.ndarray:
    """The product over flat grey: what a learned depth estimator sees before any scene exists."""
    a = layout.product_alpha.astype(np.float32)[..., None] / 255.0
    out = layout.product_rgb.astype(np.float32) * a + grey * (1.0 - a)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@depth_backends.register("geometric")
class GeometricDepth:
    """Studio geometry from the matte: a far backdrop, a floor that nears the camera, a rounded product.

    Good for what it claims: product shots on a sweep or table top, the usual catalog framing.
    """

    name = "geometric"
    FAR, FLOOR_NEAR, BULGE = 40.0, 200.0, 45.0

    def __init__(self, cfg: DepthConfig) -> None:
        self.cfg = cfg

    def run(self, layout: Layout, horizon: float) -> DepthMap:
        H, W = layout.product_alpha.shape
        rows = np.arange(H, dtype=np.float32)
        y_h = horizon * H
        floor = np.where(
            rows <= y_h,
            self.FAR,
            self.FAR + (self.FLOOR_NEAR - self.FAR) * (rows - y_h) / max(H - 1 - y_h, 1.0),
        )
        depth = np.repeat(floor[:, None], W, axis=1)
        p = layout.placement
        base_row = min(H - 1, p.y + p.height - 1)
        base = float(floor[base_row])
        solid = (layout.product_alpha >= 128).astype(np.uint8)
        if solid.any():
            dist = cv2.distanceTransform(solid, cv2.DIST_L2, 5)
            bulge = np.sqrt(dist / max(float(dist.max()), 1.0))
            product_depth = base + 12.0 + self.BULGE * bulge
            a = layout.product_alpha.astype(np.float32) / 255.0
            depth = depth * (1.0 - a) + np.maximum(product_depth, depth) * a
        out = np.clip(np.rint(depth), 0, 255).astype(np.uint8)
        return DepthMap(out, self.name, {"horizon": horizon, "product_base_depth": round(base, 1)})


_DETECTORS = {
    # name: (controlnet_aux class name, default checkpoint file)
    "midas": ("MidasDetector", "dpt_hybrid-midas-501f0c75.pt"),
    "zoe": ("ZoeDetector", "ZoeD_M12_N.pt"),
}


@depth_backends.register("controlnet-aux")
class ControlnetAuxDepth:
    """MiDaS or ZoeDepth through controlnet-aux, from a local folder or a Hugging Face repo id."""

    name = "controlnet-aux"

    def __init__(self, cfg: DepthConfig) -> None:
        spec = cfg.controlnet_aux
        class_name, default_file = _DETECTORS[spec.detector]
        filename = spec.filename or default_file
        self.label = f"controlnet-aux:{spec.detector}:{spec.model}/{filename}"
        advice = (
            f"Provide the {spec.detector} checkpoint {filename!r}: download it once on a machine with internet "
            f"(`huggingface-cli download {spec.model if '/' in spec.model else 'lllyasviel/Annotators'} {filename}`) "
            "into the Hugging Face cache, or copy the file into a folder and set [depth.controlnet_aux].model to it."
        )
        local = Path(spec.model).expanduser()
        if local.is_dir():
            if not (local / filename).is_file():
                raise ModelUnavailableError(f"depth model file {local / filename} not found. {advice}")
        elif local.is_absolute() or spec.model.startswith("."):
            raise ModelUnavailableError(f"depth model folder {spec.model} not found. {advice}")
        else:
            self._ensure_cached(spec.model, filename, advice)
        try:
            import controlnet_aux

            detector_cls = getattr(controlnet_aux, class_name)
            self.detector = detector_cls.from_pretrained(str(local) if local.is_dir() else spec.model, filename=filename)
        except ModelUnavailableError:
            raise
        except Exception as exc:  # torch/timm raise many types on a bad checkpoint
            raise ModelUnavailableError(f"depth model {self.label} failed to load: {exc}. {advice}") from exc

    @staticmethod
    def _ensure_cached(repo: str, filename: str, advice: str) -> None:
        """Resolve the hub file first: a clear error beats controlnet-aux's fallback downloaders."""
        from huggingface_hub import hf_hub_download

        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        try:
            hf_hub_download(repo, filename, local_files_only=offline)
        except Exception as exc:
            raise ModelUnavailableError(
                f"depth model {repo}/{filename} is not available"
                f"{' (HF_HUB_OFFLINE is set, so only the local cache was searched)' if offline else ''}: "
                f"{type(exc).__name__}. {advice}"
            ) from exc

    def run(self, layout: Layout, horizon: float) -> DepthMap:
        H, W = layout.product_alpha.shape
        image = preview_canvas(layout)
        res = min(1024, max(H, W))
        try:
            out = self.detector(image, detect_resolution=res, image_resolution=res, output_type="np")
        except Exception as exc:
            raise StageError(f"{self.label} failed: {exc}") from exc
        out = np.asarray(out)
        if out.ndim == 3:
            out = out[..., 0]
        out = cv2.resize(out.astype(np.uint8), (W, H), interpolation=cv2.INTER_LINEAR)
        return DepthMap(out, self.label, {"detect_resolution": res})


# The transformers depth backend registers itself here; it imports torch/transformers only
# when it is built.
import stages.depth_transformers  # noqa: E402,F401
