"""Best-of-N: score each variant of a SKU, pick the one to publish as the SKU's output."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import cv2
import numpy as np

from stages.check import CheckResult
from stages.layout import Layout

CLIP_SHARE = 0.2  # clipped share of the scene that scores 0
DETAIL_STD = 4.0  # luminance std (levels) of a scene that is not blank


def _ramp_down(x: float, zero_at: float) -> float:
    return float(np.clip(1.0 - x / zero_at, 0.0, 1.0)) if zero_at > 0 else 1.0


def image_quality(final_rgb: np.ndarray, layout: Layout) -> dict[str, float]:
    """Simple scene quality over the generated pixels (everything not product).

    OpenCV reductions over the whole canvas under a mask: a few ms at 1024², where gathering
    the scene pixels into float arrays took a hundred."""
    scene = (layout.product_alpha == 0).view(np.uint8)
    n = cv2.countNonZero(scene)
    if n == 0:
        return {"exposure": 1.0, "detail": 1.0}
    # BT.601 luma in 16 bits: 8-bit rounding would move the spread of a near-blank scene
    _, std = cv2.meanStdDev(cv2.cvtColor(final_rgb.astype(np.uint16) << 8, cv2.COLOR_RGB2GRAY), mask=scene)
    r, g, b = cv2.split(final_rgb)
    hi, lo = cv2.max(cv2.max(r, g), b), cv2.min(cv2.min(r, g), b)
    blown = cv2.countNonZero(cv2.bitwise_and(scene, ((hi >= 254) & (lo >= 250)).view(np.uint8)))
    black = cv2.countNonZero(cv2.bitwise_and(scene, (hi <= 2).view(np.uint8)))
    return {"exposure": round(_ramp_down((blown + black) / n, CLIP_SHARE), 4),
            "detail": round(float(min(1.0, std[0, 0] / 256.0 / DETAIL_STD)), 4)}


def quality(checks: list[CheckResult], final_rgb: np.ndarray, layout: Layout, expansion_limit: float,
            halo_limit: float, nsfw_threshold: float) -> dict[str, Any]:
    """Per-aspect scores and their product (0..1), from the variant's checks and its pixels; each is
    1 when the aspect is clean:

    - `expansion`: 1 - reach / (2 x expansion_limit) (0 at twice the limit),
    - `halo`: 1 - share / (2 x halo_limit),
    - `nsfw`: 1 - score / threshold,
    - `exposure`: 1 - (share of scene pixels clipped to black or white) / 0.2,
    - `detail`: scene pixels' luminance spread, min(1, std / 4 levels): a flat, blank backdrop
      (a failed generation) scores low.
    """
    parts = image_quality(final_rgb, layout)
    by_name = {c.name: c for c in checks}
    if (c := by_name.get("expansion")) is not None:
        parts["expansion"] = round(_ramp_down(c.value, 2 * expansion_limit), 4)
    if (c := by_name.get("halo")) is not None:
        parts["halo"] = round(_ramp_down(c.value, 2 * halo_limit), 4)
    if (c := by_name.get("nsfw")) is not None:
        parts["nsfw"] = round(_ramp_down(c.value, nsfw_threshold), 4)
    score = float(np.prod(list(parts.values()))) if parts else 1.0
    return {"score": round(score, 4), "parts": parts}


class Ranked(Protocol):
    """A variant as best-of-N sees it."""

    index: int
    checks: list[CheckResult]
    score: float  # its quality score
    published: bool


def rank_key(variant: Ranked) -> tuple[int, int, float, int]:
    """Sort key of a variant, smaller is better: fewest failed blocking checks (a rejected or
    quarantined variant is never preferred), then fewest failed non-blocking checks (each would
    send the SKU to review), then the highest quality score, then the lowest index."""
    failed = [c for c in variant.checks if not c.passed]
    return (sum(1 for c in failed if c.blocking), sum(1 for c in failed if not c.blocking),
            -float(variant.score), int(variant.index))


def select(variants: Sequence[Ranked]) -> int:
    """Index (into `variants`) of the variant to publish as the SKU's output; a published one first."""
    published = [v for v in variants if v.published]
    pool = published or list(variants)
    best = min(pool, key=rank_key)
    return list(variants).index(best)


def marginal(verdict: str, reasons: list[str], score: float, review_quality: float) -> tuple[str, list[str]]:
    """A passing variant whose quality score is below `[fidelity] review_quality` still goes to review."""
    if verdict == "pass" and score < review_quality:
        return "review", [*reasons, f"quality: marginal score {score:.2f} < {review_quality}"]
    return verdict, reasons
