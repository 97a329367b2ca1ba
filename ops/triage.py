"""What a run hands a person: review reasons grouped by the check behind them, photo problems by class."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

# Review groups, most severe first; within a tier the group with more SKUs comes first. A check
# not named here (a new one) sits in the middle tier, so it is never buried under presentation.
SEVERITY = {
    # content and provenance: what must never reach a shopper
    "nsfw": 0, "prompt_safety": 0, "product_pixels": 0, "c2pa": 0,
    # the product itself: a wrong cut-out, drawn-on product, leftovers of the photo's backdrop, a hanger
    "expansion": 1, "cropped": 1, "stray_parts": 1, "faint_parts": 1, "backdrop_region": 1, "rim_spill": 1,
    "matte_confidence": 1, "halo": 1, "hanger": 1,
    # presentation: framing, a fallback scene, a marginal score, a channel rendition's rule
    "framing": 2, "scene_backend": 2, "quality": 2, "review": 2,
}
MIDDLE = 1
RENDITION_TIER = 2

_RENDITION_CHECK = re.compile(r"rendition (\S+) (\S+) ([A-Za-z0-9_]+): ")
_RENDITION_UNPUBLISHED = re.compile(r"rendition (\S+) (\S+) failed its checks and was not published")
_COPY_UNPUBLISHED = re.compile(r"rendition (\S+) failed its checks and was not published")
_CHECK = re.compile(r"([A-Za-z0-9_]+): ")


def reason_check(reason: str) -> str:
    """The check a verdict reason comes from: its group in the review queue.

    Reasons are written `<check>: <message>` (`stages.check.verdict`); a channel rendition's are
    `rendition <preset> <format> <check>: <message>`, grouped as `rendition <preset> <check>` (the
    same rule in every format of a preset is one thing to look at), and an unpublished rendition
    or format copy is `rendition <preset> not published` / `format copy <format> not published`.
    """
    if m := _RENDITION_CHECK.match(reason):
        return f"rendition {m[1]} {m[3]}"
    if m := _RENDITION_UNPUBLISHED.match(reason):
        return f"rendition {m[1]} not published"
    if m := _COPY_UNPUBLISHED.match(reason):
        return f"format copy {m[1]} not published"
    if m := _CHECK.match(reason):
        return m[1]
    return "other"


def tier(check: str) -> int:
    if check.startswith(("rendition ", "format copy ")):
        return RENDITION_TIER
    return SEVERITY.get(check, MIDDLE)


def grouped_reasons(reasons: Iterable[str]) -> dict[str, list[str]]:
    """A row's reasons by check, in the order they first appear."""
    out: dict[str, list[str]] = {}
    for r in reasons:
        out.setdefault(reason_check(r), []).append(r)
    return out


def order_groups(counts: dict[str, int]) -> list[dict[str, Any]]:
    """[{check, skus}] most severe first, then most SKUs, then by name."""
    return [{"check": c, "skus": n} for c, n in sorted(counts.items(), key=lambda kv: (tier(kv[0]), -kv[1], kv[0]))]


def review_marks(record: dict[str, Any]) -> dict[str, Any] | None:
    """Where to look in a SKU sent to review, from its record: boxes (x0, y0, x1, y1) on its
    source photo as oriented for staging (what the embedded matte's reasons name:
    `matte_details.where`) and on its canvas (the stray parts and kept backdrop regions the
    leftover checks found, the hanger parts, all of the selected variant: its `guards`), with the
    two images' sizes (width, height). None for another verdict, or with nothing to mark. Carried
    in the row's result, so the report draws them without reading records."""
    if record.get("verdict") != "review":
        return None
    where = (record.get("matte_details") or {}).get("where") or {}
    photo = [list(where[k]) for k in sorted(where)]  # the same order from the record in memory or read back
    variants = record.get("variants") or []
    chosen = next((v for v in variants if v.get("index") == record.get("selected_variant")),
                  variants[0] if variants else {})
    guards = chosen.get("guards") or {}
    leftovers, hangers = guards.get("leftovers") or {}, guards.get("hangers") or {}
    parts = (leftovers.get("strays") or []) + (leftovers.get("regions") or []) + (hangers.get("parts") or [])
    canvas = [[x, y, x + w, y + h] for x, y, w, h in (p["box"] for p in parts if p.get("box"))]
    info = record.get("source_info") or {}
    if not (photo or canvas) or "size" not in info or "canvas" not in record:
        return None
    w, h = info["size"]
    if info.get("exif_orientation") in (5, 6, 7, 8):  # turned a quarter on load
        w, h = h, w
    return {"photo": photo, "photo_size": [w, h], "canvas": canvas, "canvas_size": list(record["canvas"])}


def photo_label(rendition: str, rule: str) -> str:
    """The class of a photo problem, as summaries print it."""
    if rule == "min_fill":
        return f"photo too small for {rendition}"
    return f"photo cannot meet {rendition} {rule}"


class Triage:
    """Running counts over a run's results: review SKUs per check, SKUs per photo problem class."""

    def __init__(self) -> None:
        self.review: Counter[str] = Counter()
        self.photo: Counter[tuple[str, str]] = Counter()

    def add(self, r: dict[str, Any]) -> None:
        if r.get("verdict") == "review":
            self.review.update(grouped_reasons(r.get("reasons") or []).keys())
        self.photo.update({(p.get("rendition", "?"), p.get("rule", "?")) for p in r.get("photo_problems") or []})

    def summary(self) -> dict[str, Any]:
        """`review_by_check` and `photo_problems` of the run summary."""
        photo = sorted(self.photo.items(), key=lambda kv: (-kv[1], kv[0]))
        return {
            "review_by_check": order_groups(dict(self.review)),
            "photo_problems": [{"rendition": rendition, "rule": rule, "label": photo_label(rendition, rule), "skus": n}
                               for (rendition, rule), n in photo],
        }


def photo_lines(summary: dict[str, Any]) -> list[str]:
    """`photo too small for marketplace: 7 SKUs`, one per class."""
    return [f"{p['label']}: {p['skus']} SKU{'s' if p['skus'] != 1 else ''}" for p in summary.get("photo_problems") or []]
