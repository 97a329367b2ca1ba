"""`transformers`: depth from any transformers depth-estimation model (Depth Anything, DPT, ZoeDepth, ...)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from stages.depth.base import DepthMap, preview_canvas
from stages.errors import StageError
from stages.layout import Layout
from stages.models import (
    ModelSource,
    Requirement,
    choose_device,
    hub_hint,
    load_failure,
    package_requirement,
    quiet_loading,
    resolve_source,
    source_requirement,
)

@dataclass(frozen=True)
class TransformersDepthOptions:
    """[depth.transformers]: a hub id (through the Hugging Face cache) or a local folder."""

    model: str = "depth-anything/Depth-Anything-V2-Small-hf"  # Apache-2.0; Base/Large are CC-BY-NC
    revision: str = ""  # branch, tag or commit; empty: main
    values: Literal["auto", "disparity", "distance"] = "auto"  # what the model predicts: large = near | far
    device: Literal["auto", "cuda", "cpu"] = "auto"


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


class TransformersDepth:
    """The model sees the product over flat grey (`preview_canvas`); its prediction is scaled to
    uint8 with 255 = near, the convention depth ControlNets are trained on. torch and
    transformers are imported when the backend loads."""

    name = "transformers"
    Options = TransformersDepthOptions

    def __init__(self, pipe: Any, source: ModelSource, distance: bool, device: str) -> None:
        self.pipe = pipe
        self.source = source
        self.label = f"transformers:{source.ref}"
        self.distance = distance
        self.device = device
        self._lock = threading.Lock()  # one pipeline, shared by the worker's threads

    @classmethod
    def requirements(cls, options: TransformersDepthOptions) -> list[Requirement]:
        """torch, transformers and the model (a local folder or the HF cache)."""
        return [package_requirement("torch", "pip install torch"),
                package_requirement("transformers", "pip install transformers"),
                source_requirement("depth model", options.model, options.revision, "config.json",
                                   "[depth.transformers].model", TransformersDepthOptions().model)]

    @classmethod
    def load(cls, options: TransformersDepthOptions) -> TransformersDepth:
        default = TransformersDepthOptions().model
        source = resolve_source("depth model", options.model, options.revision, "config.json",
                                "[depth.transformers].model", default)
        device = choose_device(options.device, "depth.transformers")
        try:
            from transformers import pipeline

            with quiet_loading("transformers"):
                kwargs = {"revision": source.revision} if source.kind == "hub" and source.revision else {}
                pipe = pipeline("depth-estimation", model=source.load_from, device=device, **kwargs)
        except Exception as exc:
            raise load_failure(source, exc, "Set [depth.transformers].model to a local folder or a hub id "
                                            f"(`hf download {hub_hint(source, default)}`).") from exc
        source = source.after_download("config.json")
        distance = (predicts_distance(pipe.model.config) if options.values == "auto"
                    else options.values == "distance")
        return cls(pipe, source, distance, device)

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
