"""Marketplace compliance of a channel rendition, judged on the decoded bytes about to be published."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from stages.check import CheckResult
from stages.colour import parse_hex
from stages.errors import ConfigError
from stages.layout import BBOX_ALPHA, Layout

STROKE_CONTRAST = 48  # levels a mark differs from its surroundings (or the product layer)
EDGE_CLEARANCE = 0.004  # share of the long side (at least 8 px: a JPEG block) kept clear of the product
STROKE_WIDTH = 0.015  # strokes thinner than this share of the short side are text-like
MARK_MIN_HEIGHT, MARK_MAX_HEIGHT = 0.004, 0.2  # height of a text line, as a share of the short side
MARK_MIN_PIXELS = 24  # a mark smaller than this is noise (dust, a JPEG artefact)


@dataclass(frozen=True)
class ComplianceRules:
    """A channel preset's marketplace rules ([renditions.presets.<name>.compliance]); failures go to review."""

    background: str = ""  # "#ffffff": the background must be this colour; "": not checked
    background_tolerance: int = 3  # levels per channel a background pixel may differ from it
    background_share: float = 0.995  # share of the background that must be within the tolerance
    max_background_std: float = 0.0  # std-dev of the background's luminance; 0: not checked
    min_fill: float = 0.0  # product box / frame along its fuller side (0.85: "fills 85% of the image")
    min_side: int = 0  # the image's long side in pixels
    no_text: bool = False  # no text or watermark strokes outside the product's own pixels

    def check(self, where: str) -> None:
        if self.background and not re.fullmatch(r"#?[0-9a-fA-F]{6}", self.background):
            raise ConfigError(f"{where}.background = {self.background!r}: expected a colour like '#ffffff'")
        if not 0 <= self.background_tolerance <= 255:
            raise ConfigError(f"{where}.background_tolerance = {self.background_tolerance}: must be 0..255")
        for key in ("background_share", "min_fill"):
            if not 0 <= getattr(self, key) <= 1:
                raise ConfigError(f"{where}.{key} = {getattr(self, key)}: must be 0..1")
        if self.max_background_std < 0 or self.min_side < 0:
            raise ConfigError(f"{where}: max_background_std and min_side must be >= 0")


@dataclass(frozen=True)
class Marks:
    count: int  # text-like marks found
    pixels: int  # their stroke pixels
    boxes: list[tuple[int, int, int, int]]  # (x, y, w, h), largest first


def background_area(layout: Layout) -> np.ndarray:
    """uint8 mask (255 = background): outside the product, clear of its edge by EDGE_CLEARANCE."""
    W, H = layout.size
    clear = max(8, round(EDGE_CLEARANCE * max(W, H)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * clear + 1, 2 * clear + 1))
    near = cv2.dilate(cv2.compare(layout.product_alpha, 0, cv2.CMP_GT), kernel)
    return cv2.bitwise_not(near)


def _channel_diff(a: np.ndarray, b: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """max over R, G, B of |a - b| (uint8), b an image or a colour: OpenCV, a fraction of numpy's cost."""
    d = cv2.absdiff(a, b)
    r, g, bl = cv2.split(d)
    return cv2.max(cv2.max(r, g), bl)


def _scalar(colour: np.ndarray) -> tuple[float, ...]:
    return (*(float(v) for v in colour), 0.0)


def foreign_marks(decoded: np.ndarray, layout: Layout, background: np.ndarray | None = None,
                  area: np.ndarray | None = None) -> Marks:
    """Text or watermark marks: pixels that do not belong to the product or the backdrop, grouped.

    Candidates are (a) pixels under the opaque product that differ from the product layer by
    more than STROKE_CONTRAST (something drawn over the product: the product's own labels match
    the layer and never count), and (b) background pixels (clear of the product's edge) that
    stand out as thin strokes: a morphological black-hat / top-hat response over STROKE_CONTRAST
    with a kernel of STROKE_WIDTH of the short side; where the backdrop is a known flat colour
    (`background`), they must also differ from it by STROKE_CONTRAST, which keeps gaps between
    straps or laces (backdrop seen through the product) out. Candidates are joined into marks
    (letters of a word merge) and a mark counts when its height is that of a text line and it
    holds at least MARK_MIN_PIXELS stroke pixels.
    """
    H, W = decoded.shape[:2]
    short = min(H, W)
    gray = cv2.cvtColor(decoded, cv2.COLOR_RGB2GRAY)
    k = max(5, round(STROKE_WIDTH * short) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    stroke = cv2.max(cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, kernel),
                     cv2.morphologyEx(gray, cv2.MORPH_TOPHAT, kernel))
    area = background_area(layout) if area is None else area
    cand = cv2.bitwise_and(cv2.compare(stroke, STROKE_CONTRAST, cv2.CMP_GT), area)
    if background is not None:
        off = cv2.compare(_channel_diff(decoded, _scalar(background)), STROKE_CONTRAST, cv2.CMP_GT)
        cand = cv2.bitwise_and(cand, off)
    over = cv2.compare(_channel_diff(decoded, layout.product_rgb), STROKE_CONTRAST, cv2.CMP_GT)
    cand = cv2.bitwise_or(cand, cv2.bitwise_and(over, cv2.compare(layout.product_alpha, 255, cv2.CMP_EQ)))
    cand_u8 = cv2.compare(cand, 0, cv2.CMP_GT) // 255
    join = cv2.getStructuringElement(cv2.MORPH_RECT, (max(3, k), max(3, k // 3)))
    grouped = cv2.morphologyEx(cand_u8, cv2.MORPH_CLOSE, join)
    # labelled only within the box of what was found (most renditions have nothing to label)
    bx, by, bw, bh = cv2.boundingRect(grouped)
    if not bw:
        return Marks(0, 0, [])
    n, labels, stats, _ = cv2.connectedComponentsWithStats(grouped[by:by + bh, bx:bx + bw], connectivity=8)
    counts = np.bincount(labels[cand_u8[by:by + bh, bx:bx + bw] > 0], minlength=n)  # stroke pixels per mark
    boxes: list[tuple[int, int, int, int]] = []
    pixels = 0
    for i in range(1, n):
        x, y, w, h, _area = (int(v) for v in stats[i])
        x, y = x + bx, y + by
        if MARK_MIN_HEIGHT * short <= h <= MARK_MAX_HEIGHT * short and counts[i] >= MARK_MIN_PIXELS:
            boxes.append((x, y, w, h))
            pixels += int(counts[i])
    boxes.sort(key=lambda b: b[2] * b[3], reverse=True)
    return Marks(len(boxes), pixels, boxes)


def fill_ratio(layout: Layout) -> float:
    """max(box width / frame width, box height / frame height) of the product layer's box."""
    _, _, w, h = cv2.boundingRect(cv2.compare(layout.product_alpha, BBOX_ALPHA, cv2.CMP_GE))
    W, H = layout.size
    return max(w / W, h / H)


@dataclass(frozen=True)
class PhotoProblem:
    """A channel rule the source photo itself cannot meet: no staging of this photo could pass it."""

    rule: str  # the compliance key, e.g. "min_fill"
    measured: float
    needed: float
    why: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def photo_problems(layout: Layout, rules: ComplianceRules, uncapped_scale: float) -> list[PhotoProblem]:
    """The preset's rules that fail because of the photo, judged on the preset's layout before any
    scene is made (`uncapped_scale`: the scale the placement would give without `max_scale`,
    `stages.layout.uncapped_scale`).

    Only `min_fill` can be the photo's fault: the product may not be enlarged beyond `max_scale`
    (it would turn blurry), so a product photographed too small cannot span the share of the frame
    the channel asks for. That is the case when the layout was capped by `max_scale`, misses
    `min_fill`, and the uncapped scale would have met it (box sizes grow in proportion to the
    scale). A fill miss that the uncapped scale misses too comes from the placement (its margins or
    mode) and is no photo problem: the compliance check sends it to review as usual. The other
    rules depend on the canvas (`min_side`) or on the published pixels (`background`,
    `max_background_std`, `no_text`), not on the photo.
    """
    if rules.min_fill <= 0 or layout.placement.limited_by != "max_scale":
        return []
    fill = fill_ratio(layout)
    scale = layout.placement.scale
    if fill >= rules.min_fill or scale <= 0 or fill * uncapped_scale / scale < rules.min_fill:
        return []
    x0, y0, x1, y1 = layout.placement.source_box
    factor = rules.min_fill / max(fill, 1e-6)
    W, H = layout.size
    why = (f"photo too small: the product is {x1 - x0}x{y1 - y0} px in the photo; enlarged at most "
           f"{scale:.2f}x (max_scale) it spans {fill:.1%} of the {W}x{H} frame, below {rules.min_fill:.0%}; "
           f"needs a photo with the product at least {math.ceil((x1 - x0) * factor)}x"
           f"{math.ceil((y1 - y0) * factor)} px ({factor:.2f}x larger)")
    return [PhotoProblem("min_fill", round(fill, 4), rules.min_fill, why)]


def check_compliance(decoded: np.ndarray, layout: Layout, rules: ComplianceRules) -> list[CheckResult]:
    """One non-blocking check per enabled rule, on the decoded rendition and its own product layer,
    so a failure sends the product to review with its reason instead of rejecting it:

    - `background`: the background (every pixel outside the product, a few pixels clear of its
      edge so JPEG ringing does not count) is the required colour within `background_tolerance`
      levels per channel, over at least `background_share` of it;
    - `max_background_std`: the background's luminance is uniform (standard deviation);
    - `min_fill`: the product's box spans at least this share of the frame along its fuller side,
      max(box width / frame width, box height / frame height): the usual reading of "the product
      fills 85% of the image". The box comes from the preset's product layer (alpha >= 8);
    - `min_side`: the image's long side in pixels;
    - `no_text`: no text or watermark marks, found as clusters of small high-contrast strokes that
      are not the product's own pixels (see `foreign_marks`).
    """
    H, W = decoded.shape[:2]
    bg_area = background_area(layout) if decoded.shape[:2] == layout.product_alpha.shape else None
    colour = parse_hex(rules.background, "compliance.background") if rules.background else None
    checks: list[CheckResult] = []
    if colour is not None:
        checks.append(_background(decoded, bg_area, colour, rules))
    if rules.max_background_std > 0:
        checks.append(_uniformity(decoded, bg_area, rules.max_background_std))
    if rules.min_fill > 0:
        checks.append(_fill(layout, rules.min_fill))
    if rules.min_side > 0:
        side = max(H, W)
        checks.append(CheckResult("min_side", side >= rules.min_side, float(side), f">= {rules.min_side}",
                                  f"long side {side} px", False))
    if rules.no_text:
        checks.append(_no_text(decoded, layout, colour, bg_area))
    return checks


def _background(decoded: np.ndarray, bg_area: np.ndarray | None, colour: np.ndarray,
                rules: ComplianceRules) -> CheckResult:
    limit = f">= {rules.background_share:.1%} within {rules.background_tolerance} of {rules.background}"
    n_bg = cv2.countNonZero(bg_area) if bg_area is not None else 0
    if n_bg == 0:
        return CheckResult("background", False, 0.0, limit, "no background to judge", False)
    near = cv2.compare(_channel_diff(decoded, _scalar(colour)), rules.background_tolerance, cv2.CMP_LE)
    share = cv2.countNonZero(cv2.bitwise_and(near, bg_area)) / n_bg
    mean = "#%02x%02x%02x" % tuple(int(round(v)) for v in cv2.mean(decoded, mask=bg_area)[:3])
    ok = share >= rules.background_share
    msg = f"{share:.1%} of the background within {rules.background_tolerance} levels of {rules.background}"
    return CheckResult("background", ok, round(share, 5), limit, msg if ok else f"{msg} (mean colour {mean})", False)


def _uniformity(decoded: np.ndarray, bg_area: np.ndarray | None, max_std: float) -> CheckResult:
    limit = f"<= {max_std}"
    if bg_area is None or cv2.countNonZero(bg_area) == 0:
        return CheckResult("background_uniformity", False, 255.0, limit, "no background to judge", False)
    std = float(cv2.meanStdDev(cv2.cvtColor(decoded, cv2.COLOR_RGB2GRAY), mask=bg_area)[1][0, 0])
    return CheckResult("background_uniformity", std <= max_std, round(std, 3), limit,
                       f"background luminance std-dev {std:.2f}", False)


def _fill(layout: Layout, min_fill: float) -> CheckResult:
    fill = fill_ratio(layout)
    ok = fill >= min_fill
    msg = f"product spans {fill:.1%} of the frame" + ("" if ok else f", below {min_fill:.0%}")
    if not ok and layout.placement.limited_by == "max_scale":
        msg += f" (enlarging is capped at max_scale {layout.placement.scale:.2f}: the photo is too small)"
    return CheckResult("fill", ok, round(fill, 4), f">= {min_fill}", msg, False)


def _no_text(decoded: np.ndarray, layout: Layout, colour: np.ndarray | None,
             bg_area: np.ndarray | None) -> CheckResult:
    if decoded.shape[:2] != layout.product_alpha.shape:
        return CheckResult("no_text", False, 1.0, "0 marks", "image does not match its layout", False)
    marks = foreign_marks(decoded, layout, colour, bg_area)
    ok = marks.count == 0
    msg = "no text or watermark marks" if ok else (
        f"{marks.count} text-like mark(s), {marks.pixels} stroke pixels, largest at "
        f"x={marks.boxes[0][0]} y={marks.boxes[0][1]} ({marks.boxes[0][2]}x{marks.boxes[0][3]})")
    return CheckResult("no_text", ok, float(marks.count), "0 marks", msg, False)
