"""Checks on what is about to be published, run on the decoded bytes of the output file."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import Any

import cv2
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
    """A published file's pixels as RGB, decoded by libpng/libjpeg/libwebp (not the encoder's code):
    what a browser shows; alpha, orientation tags and colour profiles ignored. Pillow reads what
    OpenCV cannot."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _core_diff(decoded: np.ndarray, layout: Layout, cfg: CheckConfig) -> tuple[int, np.ndarray, np.ndarray]:
    """Pixel count of the opaque core, |decoded - product| per channel (uint8) and the core mask
    (255 = core), the last two over the core's bounding box only: outside it nothing is compared."""
    core = cv2.compare(layout.product_alpha, cfg.core_alpha, cv2.CMP_GE)
    x, y, w, h = cv2.boundingRect(core)
    if w == 0 or h == 0:
        return 0, np.zeros((0, 0, 3), np.uint8), core[:0, :0]
    box = (slice(y, y + h), slice(x, x + w))
    core = core[box]
    return cv2.countNonZero(core), cv2.absdiff(decoded[box], layout.product_rgb[box]), core


def _same_canvas(decoded: np.ndarray, layout: Layout) -> bool:
    return decoded.shape == layout.product_rgb.shape and decoded.dtype == np.uint8 == layout.product_rgb.dtype


def product_pixels(decoded: np.ndarray, layout: Layout, cfg: CheckConfig) -> CheckResult:
    """Max |diff| between the published pixels and the product layer over its opaque core."""
    if not _same_canvas(decoded, layout):
        msg = (f"output is {decoded.shape[1]}x{decoded.shape[0]}, canvas is {layout.size[0]}x{layout.size[1]}"
               if decoded.shape != layout.product_rgb.shape else f"output is {decoded.dtype}, not 8-bit")
        return CheckResult("product_pixels", False, 255.0, f"<= {cfg.pixel_tolerance}", msg, True)
    n, diff, core = _core_diff(decoded, layout, cfg)
    if n == 0:
        return CheckResult("product_pixels", False, 255.0, f"<= {cfg.pixel_tolerance}", "product has no opaque core", True)
    diff = cv2.bitwise_and(diff, diff, mask=core)  # 0 outside the core
    worst, changed = int(diff.max()), 0
    if worst > cfg.pixel_tolerance:  # pixels with some channel over the tolerance
        b, g, r = cv2.split(diff)
        changed = cv2.countNonZero(cv2.compare(cv2.max(cv2.max(b, g), r), cfg.pixel_tolerance, cv2.CMP_GT))
    ok = worst <= cfg.pixel_tolerance
    msg = f"{n} opaque product pixels identical" if worst == 0 else f"{changed} of {n} product pixels differ (max {worst})"
    return CheckResult("product_pixels", ok, float(worst), f"<= {cfg.pixel_tolerance}", msg, True)


def rendition_pixels(decoded: np.ndarray, layout: Layout, cfg: CheckConfig, lossless: bool) -> CheckResult:
    """Lossless renditions must match exactly; lossy ones stay within a stated mean bound."""
    if lossless:
        return product_pixels(decoded, layout, cfg)
    limit = f"mean <= {cfg.lossy_mean_tolerance}"
    n = 0
    if _same_canvas(decoded, layout):
        n, diff, core = _core_diff(decoded, layout, cfg)
    if n == 0:
        return CheckResult("product_pixels", False, 255.0, limit, "rendition does not match the canvas", True)
    diff = cv2.bitwise_and(diff, diff, mask=core)
    # an exact integer sum: the same float as numpy's mean over the core's values
    mean, worst = int(diff.sum(dtype=np.int64)) / (3 * n), int(diff.max())
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
