"""Checks on pixels: the published file against the product layer, the product's framing, the matte's confidence."""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from stages.check import CheckResult
from stages.errors import ConfigError
from stages.layout import Layout


@dataclass(frozen=True)
class CheckOptions:
    """[check]"""

    pixel_tolerance: int = 0  # max |diff| over the opaque product core; 0 for lossless files
    core_alpha: int = 255  # alpha at or above which a pixel belongs to the opaque core
    min_coverage: float = 0.02  # product area as a fraction of the canvas
    max_coverage: float = 0.90
    lossy_mean_tolerance: float = 4.0  # JPEG files: mean |diff| over the product core (max is recorded too)
    max_edge_contact: float = 0.02  # share of a photo side the cut-out may meet before the product counts as cropped

    def check(self, where: str) -> None:
        if not 0 <= self.pixel_tolerance <= 255:
            raise ConfigError(f"{where}.pixel_tolerance = {self.pixel_tolerance}: must be 0..255")
        if not 1 <= self.core_alpha <= 255:
            raise ConfigError(f"{where}.core_alpha = {self.core_alpha}: must be 1..255")
        if not 0 <= self.max_edge_contact <= 1:
            raise ConfigError(f"{where}.max_edge_contact = {self.max_edge_contact}: must be 0..1")


def decode_rgb(data: bytes) -> np.ndarray:
    """A published file's pixels as RGB, decoded by libpng/libjpeg/libwebp (not the encoder's code):
    what a browser shows; alpha, orientation tags and colour profiles ignored. Pillow reads what
    OpenCV cannot."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _core_diff(decoded: np.ndarray, layout: Layout, cfg: CheckOptions) -> tuple[int, np.ndarray, np.ndarray]:
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


def product_pixels(decoded: np.ndarray, layout: Layout, cfg: CheckOptions) -> CheckResult:
    """Max |diff| between the published pixels and the product layer over its opaque core."""
    if not _same_canvas(decoded, layout):
        msg = (f"output is {decoded.shape[1]}x{decoded.shape[0]}, canvas is {layout.size[0]}x{layout.size[1]}"
               if decoded.shape != layout.product_rgb.shape else f"output is {decoded.dtype}, not 8-bit")
        return CheckResult("product_pixels", False, 255.0, f"<= {cfg.pixel_tolerance}", msg, True)
    n, diff, core = _core_diff(decoded, layout, cfg)
    if n == 0:
        return no_opaque_core(f"<= {cfg.pixel_tolerance}", cfg.core_alpha)
    diff = cv2.bitwise_and(diff, diff, mask=core)  # 0 outside the core
    worst, changed = int(diff.max()), 0
    if worst > cfg.pixel_tolerance:  # pixels with some channel over the tolerance
        b, g, r = cv2.split(diff)
        changed = cv2.countNonZero(cv2.compare(cv2.max(cv2.max(b, g), r), cfg.pixel_tolerance, cv2.CMP_GT))
    ok = worst <= cfg.pixel_tolerance
    msg = f"{n} opaque product pixels identical" if worst == 0 else f"{changed} of {n} product pixels differ (max {worst})"
    return CheckResult("product_pixels", ok, float(worst), f"<= {cfg.pixel_tolerance}", msg, True)


def no_opaque_core(limit: str, core_alpha: int) -> CheckResult:
    """A cut-out with no pixel at or above `core_alpha`: the whole product is see-through.

    No product pixel is shown unblended, so there is nothing the generator could have altered and
    nothing to prove; but a product that shows the scene through it is a doubtful cut-out, which a
    person judges: review, not reject.
    """
    return CheckResult("product_pixels", False, 0.0, limit,
                       f"cut-out has no opaque pixels (alpha >= {core_alpha}): the product is see-through", False)


def format_pixels(decoded: np.ndarray, layout: Layout, cfg: CheckOptions, fmt: str) -> CheckResult:
    """The product pixels of a published file in `fmt`: PNG and lossless WebP must match exactly,
    JPEG stays within a stated mean bound."""
    if fmt in ("png", "webp"):
        return product_pixels(decoded, layout, cfg)
    return lossy_pixels(decoded, layout, cfg)


def lossy_pixels(decoded: np.ndarray, layout: Layout, cfg: CheckOptions) -> CheckResult:
    """Mean |diff| over the product's opaque core of a lossy (JPEG) file, within `lossy_mean_tolerance`."""
    limit = f"mean <= {cfg.lossy_mean_tolerance}"
    if not _same_canvas(decoded, layout):
        return CheckResult("product_pixels", False, 255.0, limit, "rendition does not match the canvas", True)
    n, diff, core = _core_diff(decoded, layout, cfg)
    if n == 0:
        return no_opaque_core(limit, cfg.core_alpha)
    diff = cv2.bitwise_and(diff, diff, mask=core)
    # an exact integer sum: the same float as numpy's mean over the core's values
    mean, worst = int(diff.sum(dtype=np.int64)) / (3 * n), int(diff.max())
    ok = mean <= cfg.lossy_mean_tolerance
    return CheckResult("product_pixels", ok, round(mean, 3), limit, f"lossy: mean |diff| {mean:.2f}, max {worst}", True)


def framing(layout: Layout, cfg: CheckOptions) -> CheckResult:
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


EDGE_PX = 1  # the photo's outer rows and columns read by `cropped`


def cropped(matte_alpha: np.ndarray, max_contact: float) -> CheckResult:
    """Whether the photo cuts the product off: the cut-out (alpha >= 128 on the source photo) meets
    a side of the photo along more than `max_contact` of that side's length.

    A product that runs off the photo shows a straight cut edge once it stands in a scene (a hem,
    a sleeve, a shoelace ending in mid-air), whichever backend cut it out; only a person can say
    whether that is acceptable, or a new photo is needed. A couple of pixels of contact (a lace
    tip, a soft edge grazing the frame) are noise, hence the allowance.
    """
    fg = matte_alpha >= 128
    b = min(EDGE_PX, *fg.shape)
    sides = {"top": fg[:b].any(axis=0), "bottom": fg[-b:].any(axis=0),
             "left": fg[:, :b].any(axis=1), "right": fg[:, -b:].any(axis=1)}
    contact = {side: float(run.mean()) for side, run in sides.items()}
    side, worst = max(contact.items(), key=lambda kv: kv[1])
    limit = f"<= {max_contact:.0%} of each side"
    cut = [f"{s} ({v:.0%})" for s, v in contact.items() if v > max_contact]
    if cut:
        msg = f"the product runs off the photo's edge: {', '.join(cut)} of the side: the photo crops it"
        return CheckResult("cropped", False, round(worst, 4), limit, msg, False)
    return CheckResult("cropped", True, round(worst, 4), limit, "the product lies inside the photo", False)


def matte_confidence(confidence: float, minimum: float, reasons: list[str] | tuple[str, ...] = ()) -> CheckResult:
    """The matte backend's trust in its cut-out; below `minimum` the message carries the
    backend's own reasons (what it found and where), so a reviewer knows what to look at."""
    ok = confidence >= minimum
    why = "; ".join(reasons) if reasons else "background not plain or product cropped"
    msg = "cut-out looks reliable" if ok else f"low cut-out confidence: {why}"
    return CheckResult("matte_confidence", ok, round(confidence, 4), f">= {minimum}", msg, False)
