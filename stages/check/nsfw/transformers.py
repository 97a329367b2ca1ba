"""`transformers`: any transformers image-classification model; the score sums its unsafe labels."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from stages.check.nsfw.base import check_rgb
from stages.errors import ConfigError, ModelUnavailableError
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
class TransformersNsfwOptions:
    """[nsfw.transformers]"""

    model: str = "Falconsai/nsfw_image_detection"  # image-classification model: hub id or local folder
    revision: str = ""
    nsfw_labels: tuple[str, ...] = ("nsfw", "porn", "hentai", "sexy", "explicit")  # summed into the score
    device: Literal["auto", "cuda", "cpu"] = "auto"

    def check(self, where: str) -> None:
        if not self.model.strip():
            raise ConfigError(f"{where}.model is empty: name an image-classification model")
        if not self.nsfw_labels:
            raise ConfigError(f"{where}.nsfw_labels is empty: name the model's unsafe labels")


class TransformersNsfw:
    """Any transformers image-classification model (a hub id from the Hugging Face cache or a local folder)."""

    name = "transformers"
    Options = TransformersNsfwOptions

    def __init__(self, processor: Any, model: Any, source: ModelSource, device: str, unsafe: list[int],
                 unsafe_labels: list[str]) -> None:
        import torch

        self.processor = processor
        self.model = model
        self.source = source
        self.device = device
        self.unsafe = unsafe
        self.unsafe_labels = unsafe_labels
        self._torch = torch
        self._lock = threading.Lock()
        self.label = f"transformers:{source.ref}"

    @classmethod
    def requirements(cls, options: TransformersNsfwOptions) -> list[Requirement]:
        """torch, transformers and the model (a local folder or the HF cache)."""
        return [package_requirement("torch", "pip install torch"),
                package_requirement("transformers", "pip install transformers"),
                source_requirement("NSFW classifier", options.model, options.revision, "config.json",
                                   "[nsfw.transformers].model", TransformersNsfwOptions().model)]

    @classmethod
    def load(cls, options: TransformersNsfwOptions) -> TransformersNsfw:
        default = TransformersNsfwOptions().model
        source = resolve_source("NSFW classifier", options.model, options.revision, "config.json",
                                "[nsfw.transformers].model", default)
        device = choose_device(options.device, "nsfw.transformers")
        try:
            from transformers import AutoImageProcessor, AutoModelForImageClassification

            with quiet_loading("transformers"):
                kw = source.pretrained_kwargs
                processor = AutoImageProcessor.from_pretrained(source.load_from, **kw)
                model = AutoModelForImageClassification.from_pretrained(source.load_from, **kw)
        except Exception as exc:
            raise load_failure(source, exc, "Set [nsfw.transformers].model to a local folder or a hub id "
                                            f"(`hf download {hub_hint(source, default)}`).") from exc
        model.eval().to(device)
        labels = {int(k): str(v) for k, v in model.config.id2label.items()}
        wanted = {w.casefold() for w in options.nsfw_labels}
        unsafe = sorted(i for i, name in labels.items() if name.casefold() in wanted)
        if not unsafe:
            raise ModelUnavailableError(
                f"NSFW classifier {options.model} has labels {sorted(labels.values())}, none of them in "
                f"[nsfw.transformers].nsfw_labels = {list(options.nsfw_labels)}: name its unsafe labels there.")
        return cls(processor, model, source, device, unsafe, [labels[i] for i in unsafe])

    def score(self, rgb: np.ndarray) -> float:
        check_rgb(rgb)
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
