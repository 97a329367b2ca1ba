"""Matte: which pixels are the product, as a soft alpha plus how far to trust it.

`BACKENDS` names every backend (one per module); `[matte] backend` picks one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Escalation:
    """A second backend for the cut-outs the first is unsure of (`[matte] escalate_to`): a cut-out
    whose confidence is under `below` is made again by `backend`."""

    backend: MatteBackend
    below: float


def compute_matte(backend: MatteBackend, rgb: np.ndarray, alpha: np.ndarray | None,
                  escalation: Escalation | None = None) -> Matte:
    """Matte for one photo. `alpha` is the source's own transparency, None when it has none
    (the caller passes None for an all-opaque channel, which carries no information): a photo
    that already carries real transparency is used as is, the product's own cut-out beats any
    estimate. A backend's cut-out with a translucent part goes to review (`judge_translucency`).
    With an `escalation`, a cut-out under its confidence bar is made again by its backend
    (`escalate`)."""
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
    matte = judge_translucency(backend.run(rgb))
    if escalation is None or matte.confidence >= escalation.below:
        return matte
    return escalate(matte, judge_translucency(escalation.backend.run(rgb)))


def segmenter(backend: Any, escalate_to: Any | None) -> Any:
    """Of a matte backend and the one it escalates to (None: none), the one that re-segments a
    composite for the expansion check: a learned one where either is, as loaded or as a class."""
    return escalate_to if escalate_to is not None and escalate_to.learned and not backend.learned else backend


def escalate(first: Matte, second: Matte) -> Matte:
    """The surer of two cut-outs of one photo, the first made by a backend that was unsure of it,
    the second by the backend it escalates to; the first wins a tie. Its `details["escalation"]`
    records both backends and confidences and which was used; a cut-out still unsure says in its
    reasons what the other backend made of the photo, so a reviewer knows both were tried.

    An embedded backend built for plain backdrops is fast and mostly right about what it is sure
    of, and unsure of photos it was not made for (a textured floor, a product the colour of its
    backdrop); a learned one costs seconds on a CPU, and far less on a GPU, and knows what objects
    are. Run the first on every photo and the second on what the first is unsure of: the
    catalog's plain packshots cost what the embedded backend costs, and a person looks only at
    what both are unsure of."""
    used, other = (second, first) if second.confidence > first.confidence else (first, second)
    record = {"from": first.backend, "from_confidence": round(first.confidence, 4), "to": second.backend,
              "to_confidence": round(second.confidence, 4), "used": used.backend}
    details = {**used.details, "escalation": record}
    if other.details.get("reasons"):
        details["reasons"] = [*used.details.get("reasons", []),
                              f"{other.backend} was tried too (confidence {other.confidence:.2f}): "
                              f"{'; '.join(other.details['reasons'])}"]
    return dataclasses.replace(used, details=details)


__all__ = ["BACKENDS", "Escalation", "Matte", "MatteBackend", "compute_matte", "escalate", "load_matte_backend",
           "segmenter"]
