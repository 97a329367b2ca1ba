"""NSFW screening of every generated image before it can be published.

`BACKENDS` names every backend (one per module); `[nsfw] backend` picks one. Backends load once
per worker and score whole images (HxWx3 uint8) in [0, 1].
"""

from __future__ import annotations

from typing import Any

from stages.check import CheckResult
from stages.check.nsfw.base import NsfwBackend
from stages.check.nsfw.opennsfw import OpenNsfw
from stages.check.nsfw.transformers import TransformersNsfw
from stages.registry import lookup

BACKENDS: dict[str, type[NsfwBackend]] = {
    OpenNsfw.name: OpenNsfw,
    TransformersNsfw.name: TransformersNsfw,
}


def load_nsfw_backend(name: str, options: Any) -> NsfwBackend:
    """Load the named backend with its options; an unknown name raises UnknownBackendError."""
    return lookup(BACKENDS, "nsfw", name).load(options)


def nsfw_check(score: float, threshold: float, review_threshold: float, label: str) -> CheckResult:
    """At or above `threshold` the image is quarantined (never written to the publish folder); from
    `review_threshold` it is published and goes to review."""
    limit = f"< {threshold} (review from {review_threshold})"
    value = round(float(score), 4)
    if score >= threshold:
        return CheckResult("nsfw", False, value, limit,
                           f"{label} scores the image {score:.3f} unsafe: quarantined, not published", True)
    if score >= review_threshold:
        return CheckResult("nsfw", False, value, limit,
                           f"{label} scores the image {score:.3f} unsafe: a person must look", False)
    return CheckResult("nsfw", True, value, limit, f"{label}: {score:.3f}", False)


def is_quarantined(check: CheckResult) -> bool:
    return check.name == "nsfw" and check.blocking and not check.passed
