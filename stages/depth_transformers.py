"""Depth from a transformers depth-estimation model (Depth Anything, DPT, ZoeDepth, ...).

`[depth] backend = "transformers"`, model from `[depth.transformers]`: a hub id (through the
Hugging Face cache) or a local folder. The model sees the product over flat grey
(`stages.depth.preview_canvas`); its prediction is scaled to uint8 with 255 = near, the
convention depth ControlNets are trained on. Importing this module is cheap: torch and
transformers are imported when the backend is built.
"""

from __future__ import annotations

import threading
from typing import Any

import cv2
import numpy as np

from stages.config import DepthConfig, TransformersDepthConfig
from stages.depth import DepthMap, depth_backends, preview_canvas
from stages.errors import ModelUnavailableError, StageError
from stages.layout import Layout
from stages.model_sources import hub_offline, quiet_loading, resolve_source

# Models whose output grows with distance (metric depth); the rest predict relative disparity.
_DISTANCE_MODEL_TYPES = {"zoedepth", "glpn", "depth_pro"}


def predicts_distance(model_config: Any) -> bool:
    if getattr(model_config, "model_type", "") in _DISTANCE_MODEL_TYPES:
        return True
    return getattr(model_config, "depth_estimation_type", "relative") == "metric"


def to_near_uint8(pred: np.ndarray, distance: bool) -> tuple[np.ndarray, float, float]:
    """Min-max scale a prediction to 0..255 with 255 = near; also the raw range."""
    pred = pred.astype(np.float32)
    lo, hi = float(pred.min()), float(pred.max())
    if not np.isfinite([lo, hi]).all():
        raise StageError(f"depth prediction is not finite (range {lo}..{hi})")
    if hi - lo <= 1e-6 * max(1.0, abs(lo), abs(hi)):  # flat: no depth structure to scale
        return np.zeros(pred.shape, np.uint8), lo, hi
    x = (pred - lo) / (hi - lo)
    if distance:
        x = 1.0 - x
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8), lo, hi


@depth_backends.register("transformers")
class TransformersDepth:
    name = "transformers"

    def __init__(self, cfg: DepthConfig) -> None:
        spec: TransformersDepthConfig = cfg.transformers
        self.spec = spec
        default = TransformersDepthConfig().model
        self.source = resolve_source("depth model", spec.model, spec.revision, "config.json",
                                     "[depth.transformers].model", default)
        self.label = f"transformers:{spec.model}"
        import torch

        if spec.device == "cuda" and not torch.cuda.is_available():
            raise ModelUnavailableError("[depth.transformers] device = 'cuda' but no CUDA device is visible")
        device = "cuda" if spec.device == "cuda" or (spec.device == "auto" and torch.cuda.is_available()) else "cpu"
        try:
            from transformers import pipeline

            with quiet_loading("transformers"):
                kwargs = {"revision": self.source.revision} if self.source.kind == "hub" and self.source.revision else {}
                self.pipe = pipeline("depth-estimation", model=self.source.load_from, device=device, **kwargs)
        except Exception as exc:
            offline = " (HF_HUB_OFFLINE is set)" if hub_offline() else ""
            raise ModelUnavailableError(
                f"depth model {spec.model} ({self.source.kind}: {self.source.load_from}) failed to load{offline}: "
                f"{type(exc).__name__}: {exc}. Set [depth.transformers].model to a local folder or a hub id "
                f"(`hf download {spec.model if self.source.kind != 'local' else default}`)."
            ) from exc
        self.source = self.source.after_download("config.json")
        if spec.values == "auto":
            self.distance = predicts_distance(self.pipe.model.config)
        else:
            self.distance = spec.values == "distance"
        self.device = device
        self._lock = threading.Lock()  # one pipeline, shared by the worker's threads

    def run(self, layout: Layout, horizon: float) -> DepthMap:
        from PIL import Image

        H, W = layout.product_alpha.shape
        image = Image.fromarray(preview_canvas(layout), "RGB")
        try:
            with self._lock:
                out = self.pipe(image)
        except Exception as exc:
            raise StageError(f"{self.label} failed: {type(exc).__name__}: {exc}") from exc
        pred = out["predicted_depth"]
        pred = np.asarray(pred.detach().float().cpu().numpy() if hasattr(pred, "detach") else pred, np.float32)
        pred = np.squeeze(pred)
        if pred.ndim != 2:
            raise StageError(f"{self.label} returned a depth of shape {pred.shape}")
        if pred.shape != (H, W):
            pred = cv2.resize(pred, (W, H), interpolation=cv2.INTER_CUBIC)
        depth, lo, hi = to_near_uint8(pred, self.distance)
        details = {
            "model": self.source.record(), "values": "distance" if self.distance else "disparity",
            "raw_range": [round(lo, 6), round(hi, 6)], "device": self.device, "horizon": horizon,
        }
        if hi - lo <= 1e-6 * max(1.0, abs(lo), abs(hi)):
            details["flat"] = True  # the model saw no depth structure: the map is uniform
        return DepthMap(depth, self.label, details)
