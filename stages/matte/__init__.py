"""Matte: which pixels are the product, as a soft alpha plus how far to trust it.

`BACKENDS` names every backend (one per module); `[matte] backend` picks one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stages.errors import StageError
from stages.matte.base import Matte, MatteBackend
from stages.matte.plain_backdrop import PlainBackdropMatte
from stages.matte.rembg import RembgMatte
from stages.matte.translucent import judge_translucency
from stages.registry import lookup

BACKENDS: dict[str, type[MatteBackend]] = {
    PlainBackdropMatte.name: PlainBackdropMatte,
    RembgMatte.name: RembgMatte,
}


def load_matte_backend(name: str, options: Any) -> MatteBackend:
    """Load the named backend with its options; an unknown name raises UnknownBackendError."""
    return lookup(BACKENDS, "matte", name).load(options)


def compute_matte(backend: MatteBackend, rgb: np.ndarray, alpha: np.ndarray | None) -> Matte:
    """Matte for one photo. `alpha` is the source's own transparency, None when it has none
    (the caller passes None for an all-opaque channel, which carries no information): a photo
    that already carries real transparency is used as is, the product's own cut-out beats any
    estimate. A backend's cut-out with a translucent part goes to review (`judge_translucency`)."""
    if alpha is not None:
        if alpha.shape != rgb.shape[:2]:
            raise StageError(f"alpha shape {alpha.shape} does not match image {rgb.shape[:2]}")
        a = np.ascontiguousarray(alpha, dtype=np.uint8)
        return Matte(
            alpha=a,
            confidence=1.0,
            backend="source-alpha",
            details={"coverage": round(float((a > 127).mean()), 4), "reasons": []},
            mixed_edge=False,
        )
    return judge_translucency(backend.run(rgb))


__all__ = ["BACKENDS", "Matte", "MatteBackend", "compute_matte", "load_matte_backend"]
