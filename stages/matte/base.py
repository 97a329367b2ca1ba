"""What a matte backend gives: a soft alpha of the product and how far to trust it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from stages.errors import StageError


@dataclass(frozen=True)
class Matte:
    alpha: np.ndarray  # HxW uint8, 255 = product, soft edges
    confidence: float  # 0..1: how far the backend trusts its own matte
    backend: str  # what made it, e.g. "plain-backdrop", "rembg:isnet-general-use", "source-alpha"
    details: dict[str, Any]  # JSON-able diagnostics; "reasons" says why confidence is low
    # its soft pixels mix the product and the photo's backdrop (a cut-out of a photo); False for
    # the photo's own transparency and for shadows kept as translucent dark pixels: not unmixed
    mixed_edge: bool = True
    # share of the cut-out that is neither product nor backdrop (`stages.matte.translucent`; also in
    # `details`): its translucent parts, which are not mixes and are left as they are
    translucent_share: float = 0.0


class MatteBackend(Protocol):
    name: str  # its name in the table (stages.matte.BACKENDS)
    Options: type  # its options dataclass: the [matte.<name>] table
    learned: bool  # a model that knows what objects are (it can re-segment a composite), not a backdrop rule

    @classmethod
    def load(cls, options: Any) -> MatteBackend: ...  # loads models, once per worker process

    def run(self, rgb: np.ndarray) -> Matte: ...  # rgb: HxWx3 uint8


def check_rgb(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise StageError(f"matte expects an HxWx3 uint8 image, got {rgb.dtype} {rgb.shape}")
    return rgb
