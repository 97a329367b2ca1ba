"""What a product's record holds: its variants, format copies and channel renditions as dataclasses,
serialised to JSON once, when the record is written."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stages.check import CheckResult
from stages.check.compliance import PhotoProblem


def _dicts(checks: list[CheckResult]) -> list[dict[str, Any]]:
    return [c.to_dict() for c in checks]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class FormatCopy:
    """A signed JPEG/WebP copy of a master image ([write] format_copies)."""

    format: str
    output: str | None  # file name, None when it failed its checks and was not published
    checks: list[CheckResult]

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "output": self.output, "checks": _dicts(self.checks)}


@dataclass
class VariantOutcome:
    """One variant of a SKU after its checks, signing and publishing."""

    index: int
    seed: int
    output: str | None  # the master PNG's name; None when quarantined or unpublished
    verdict: str
    reasons: list[str]
    checks: list[CheckResult]  # content checks, then the published file's own
    format_copies: list[FormatCopy]
    scene: dict[str, Any]  # the scene backend's settings
    quality: dict[str, Any]  # {"score", "parts"} (stages.selection.quality)
    guards: dict[str, Any]  # the content checks' diagnostics
    quarantined: str | None  # where the image went instead of the publish folder

    @property
    def score(self) -> float:
        return float(self.quality.get("score", 0.0))

    @property
    def published(self) -> bool:
        return self.output is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "seed": self.seed, "output": self.output, "verdict": self.verdict,
            "reasons": self.reasons, "checks": _dicts(self.checks),
            "format_copies": [c.to_dict() for c in self.format_copies], "scene": self.scene,
            "quality": self.quality, "guards": self.guards, "quarantined": self.quarantined,
        }


@dataclass
class ChannelRendition:
    """One format of one channel preset ([renditions]), staged again at the preset's size."""

    preset: str
    format: str
    output: str | None
    size: list[int]
    product_layer: str | None  # None when withheld: nothing of the preset was staged
    placement: dict[str, Any]
    scene: dict[str, Any]  # {"backend", **its settings}
    checks: list[CheckResult]
    compliance: list[CheckResult]
    verdict: str
    reasons: list[str]
    timings_ms: dict[str, float]
    bytes: int | None = None  # of the signed file; None when nothing was signed
    photo_problems: list[PhotoProblem] = field(default_factory=list)  # set: withheld (verdict "withheld")

    def to_dict(self) -> dict[str, Any]:
        d = {
            "preset": self.preset, "format": self.format, "output": self.output, "size": self.size,
            "product_layer": self.product_layer, "placement": self.placement, "scene": self.scene,
            "checks": _dicts(self.checks), "compliance": _dicts(self.compliance), "verdict": self.verdict,
            "reasons": self.reasons, "timings_ms": self.timings_ms,
            "photo_problems": [p.to_dict() for p in self.photo_problems],
        }
        if self.bytes is not None:
            d["bytes"] = self.bytes
        return d

    def problems(self) -> list[str]:
        """Why the product needs review because of this rendition: unpublished, or a failed rule.
        A rendition withheld for a photo problem is none: no review could fix the photo."""
        if self.photo_problems:
            return []
        label = f"rendition {self.preset} {self.format}"
        out = [] if self.output else [f"{label} failed its checks and was not published"]
        return out + [f"{label} {c.name}: {c.message}" for c in self.checks + self.compliance if not c.passed]


def photo_problems(channels: list[ChannelRendition]) -> list[dict[str, Any]]:
    """The product's photo problems (its record's and its run result's `photo_problems`): one entry
    per preset and rule, {rendition, rule, measured, needed, why, formats} (the formats withheld)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for c in channels:
        for p in c.photo_problems:
            entry = out.setdefault((c.preset, p.rule), {"rendition": c.preset, **p.to_dict(), "formats": []})
            entry["formats"].append(c.format)
    return list(out.values())
