"""What an NSFW backend gives: the probability that a whole image is unsafe."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from stages.errors import StageError


class NsfwBackend(Protocol):
    name: str  # its name in the table (stages.check.nsfw.BACKENDS)
    Options: type  # its options dataclass: the [nsfw.<name>] table
    label: str  # backend and model, for records

    @classmethod
    def load(cls, options: Any) -> NsfwBackend: ...  # loads the model, once per worker

    def score(self, rgb: np.ndarray) -> float: ...  # probability the image is unsafe, 0..1


def check_rgb(rgb: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise StageError(f"NSFW check expects an HxWx3 uint8 image, got {rgb.dtype} {rgb.shape}")
