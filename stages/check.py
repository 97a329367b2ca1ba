"""Checks on what is about to be published, run on the decoded bytes of the output file."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from stages.config import CheckConfig
from stages.layout import Layout


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    value: float
    limit: str
    message: str
    blocking: bool  # a blocking failure rejects the image; a non-blocking one sends it to review

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decode_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def product_pixels(decoded: np.ndarray, layout: Layout, cfg: CheckConfig) -> CheckResult:
    """Max |diff| between the published pixels and the product layer over its opaque core."""
    core = layout.product_alpha >= cfg.core_alpha
    n = int(core.sum())
    if decoded.shape != layout.product_rgb.shape:
        return CheckResult(
            "product_pixels", False, 255.0, f"<= {cfg.pixel_tolerance}",
            f"output is {decoded.shape[1]}x{decoded.shape[0]}, canvas is {layout.size[0]}x{layout.size[1]}", True,
        )
    if n == 0:
        return CheckResult("product_pixels", False, 255.0, f"<= {cfg.pixel_tolerance}", "product has no opaque core", True)
    diff = np.abs(decoded[core].astype(np.int16) - layout.product_rgb[core].astype(np.int16))
    worst = int(diff.max())
    changed = int((diff.max(axis=1) > cfg.pixel_tolerance).sum())
    ok = worst <= cfg.pixel_tolerance
    msg = f"{n} opaque product pixels identical" if worst == 0 else f"{changed} of {n} product pixels differ (max {worst})"
    return CheckResult("product_pixels", ok, float(worst), f"<= {cfg.pixel_tolerance}", msg, True)


def rendition_pixels(decoded: np.ndarray, layout: Layout, cfg: CheckConfig, lossless: bool) -> CheckResult:
    """Lossless renditions must match exactly; lossy ones stay within a stated mean bound."""
    if lossless:
        return product_pixels(decoded, layout, cfg)
    core = layout.product_alpha >= cfg.core_alpha
    limit = f"mean <= {cfg.lossy_mean_tolerance}"
    if decoded.shape != layout.product_rgb.shape or not core.any():
        return CheckResult("product_pixels", False, 255.0, limit, "rendition does not match the canvas", True)
    diff = np.abs(decoded[core].astype(np.int16) - layout.product_rgb[core].astype(np.int16))
    mean, worst = float(diff.mean()), int(diff.max())
    ok = mean <= cfg.lossy_mean_tolerance
    return CheckResult("product_pixels", ok, round(mean, 3), limit, f"lossy: mean |diff| {mean:.2f}, max {worst}", True)


def framing(layout: Layout, cfg: CheckConfig) -> CheckResult:
    """The product lies wholly inside the canvas and covers a sensible share of it."""
    alpha = layout.product_alpha
    touches = bool(alpha[0].any() or alpha[-1].any() or alpha[:, 0].any() or alpha[:, -1].any())
    coverage = float((alpha.astype(np.float32) / 255.0).mean())
    limit = f"{cfg.min_coverage:.2f}..{cfg.max_coverage:.2f}, not touching the edge"
    if touches:
        return CheckResult("framing", False, coverage, limit, "product touches the canvas edge (cropped)", False)
    if not cfg.min_coverage <= coverage <= cfg.max_coverage:
        return CheckResult("framing", False, coverage, limit, f"product covers {coverage:.1%} of the canvas", False)
    return CheckResult("framing", True, coverage, limit, f"product covers {coverage:.1%} of the canvas", False)


def matte_confidence(confidence: float, minimum: float) -> CheckResult:
    ok = confidence >= minimum
    msg = "cut-out looks reliable" if ok else "low cut-out confidence: background not plain or product cropped"
    return CheckResult("matte_confidence", ok, round(confidence, 4), f">= {minimum}", msg, False)


def verdict(checks: list[CheckResult]) -> tuple[str, list[str]]:
    """pass, review (a person should look) or reject (must not be published)."""
    reasons = [f"{c.name}: {c.message}" for c in checks if not c.passed]
    if any(c.blocking and not c.passed for c in checks):
        return "reject", reasons
    if reasons:
        return "review", reasons
    return "pass", []
