"""Hangers left on a garment's cut-out: a hook rising above it, a bar reaching past its sides."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from stages.check import CheckResult
from stages.check.outline import VISIBLE_ALPHA
from stages.errors import ConfigError

WORK_SIDE = 384  # the product is judged at most this large (long side of its box)
MIN_BODY_PX = 400  # an opened body smaller than this (working pixels) is too small to judge
HANGING = ("apparel", "clothing", "dress", "shirt", "t-shirt", "longsleeve", "outwear", "shorts", "pants", "skirt",
           "top", "jacket", "coat", "blouse", "sweater", "hoodie")


@dataclass(frozen=True)
class HangerOptions:
    """[fidelity.hangers]: a hanger's hook, bar or clips left on a garment's cut-out. Widths are
    shares of the product's size (sqrt of its visible area) or of its body's width, heights shares
    of its body's height."""

    enabled: bool = True
    categories: tuple[str, ...] = HANGING  # judged only for rows whose category names one of these words
    open_width: float = 0.06  # parts thinner than this (share of the product's size) are not the garment's body
    thin_width: float = 0.04  # a part at most this thick (share of the body's width) is thin: a hook, a bar
    rise: float = 0.04  # a thin part rising this share of the body's height above its top edge is a hook
    reach: float = 0.03  # a thin part at the top reaching this share of the body's width there past its side is a bar
    top_band: float = 0.15  # the top of the body (share of its height) where a bar is looked for
    blocking: bool = False  # false: a hanger sends the SKU to review; true: rejects it

    def check(self, where: str) -> None:
        for name in ("open_width", "thin_width", "rise", "reach"):
            if not 0 < getattr(self, name) <= 0.5:
                raise ConfigError(f"{where}.{name} = {getattr(self, name)}: must be in (0, 0.5]")
        if not 0 < self.top_band <= 1:
            raise ConfigError(f"{where}.top_band = {self.top_band}: must be in (0, 1]")
        for i, word in enumerate(self.categories):
            if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", word):
                raise ConfigError(f"{where}.categories[{i}] = {word!r}: must be one lower-case word "
                                  "(letters, digits, '-')")


@dataclass(frozen=True)
class ThinPart:
    """A thin part above the product: `kind` hook (rises above the body) or bar (reaches past its side)."""

    kind: str
    x: int  # its topmost (hook) or outermost (bar) point on the canvas
    y: int
    box: tuple[int, int, int, int]  # x, y, w, h on the canvas
    thickness_px: float  # its thickness on the canvas (median along its ridge)
    rise: float  # how far it rises above the body's top edge, share of the body's height
    reach: float  # how far it reaches past the body's side, share of the body's width

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "at": [self.x, self.y], "box": list(self.box),
                "thickness_px": round(self.thickness_px, 1), "rise": round(self.rise, 4), "reach": round(self.reach, 4)}


@dataclass(frozen=True)
class Hangers:
    judged: bool
    note: str = ""  # why not judged, when it was not
    parts: list[ThinPart] = field(default_factory=list)  # most prominent first
    body_box: tuple[int, int, int, int] = (0, 0, 0, 0)  # the garment's body on the canvas

    def details(self) -> dict[str, Any]:
        return {"judged": self.judged, "note": self.note, "body_box": list(self.body_box),
                "parts": [p.to_dict() for p in self.parts[:5]]}


def _words(category: str) -> set[str]:
    """The words of a category, lower-case, each also without a plural -s or -es ("Dresses" -> dresses, dress)."""
    out = set()
    for w in re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", category.lower()):
        out.add(w)
        for end in ("es", "s"):
            if w.endswith(end) and len(w) > len(end) + 2:
                out.add(w[:-len(end)])
    return out


def hangs(category: str, categories: tuple[str, ...]) -> bool:
    """Whether a row's category names a garment that may be shot on a hanger: one of its words
    (case-insensitive, a plural -s/-es ignored) is in `categories` ("Apparel > T-Shirts" matches
    t-shirt). Bags' handles, shoes' straps and cups' handles are thin parts too, so other
    categories are never judged."""
    return bool(_words(category) & set(categories))


def find_hangers(alpha: np.ndarray, category: str, cfg: HangerOptions) -> Hangers:
    """Thin parts at the top of a garment's cut-out (canvas product alpha) that a hanger left: its
    hook, its bar or its clips, which a learned matte keeps joined to the garment so that no
    stray-part check sees them.

    The visible product (alpha >= 128, judged at most `WORK_SIDE` px) is opened with a disc
    `open_width` of its size (sqrt of its visible area) across: what survives, its largest part
    and those at least a third of it, is the garment's body. What the opening removed farther out
    than the disc's radius, where it touches the body, is a candidate; nearer lie the corners and
    bumps the opening rounded off, which are given back to the body's edge (unless they are the
    foot of a candidate) before heights and sides are measured. A candidate is thin when its
    thickness (the median along its ridge, so that a junction or a clip on a wire does not count)
    is at most `thin_width` of the body's width; parts much thicker than the disc stay in the body.
    A thin part whose top rises above the body's top edge over its own columns by more than
    `rise` of the body's height is a hook. A part starting in the top `top_band` of the body whose
    piece past the body's left or right side (at the part's rows) is thin and reaches more than
    `reach` of the body's width there past it is a bar (thick clips on it do not matter: only the
    piece past the side is measured); a garment narrower at its top than at its hem is measured
    at its top, where the bar is.
    Judged only for rows whose category is one where garments hang (`hangs`): bags' handles and
    shoes' straps are thin parts too. Blind spots: a hook hidden behind the collar, a hanger whose
    parts are as thick as the garment's (a wide wooden hanger seen edge-on), a hanger the matte
    cut off (a stray part, when larger than that check's floor). A garment's own thin part that
    rises above it (a drawstring, a hood string, a spaghetti strap, a loop) is taken for a
    hanger: a person looks at it.
    """
    if not cfg.enabled:
        return Hangers(False, "the hanger check is off")
    if not hangs(category, cfg.categories):
        return Hangers(False, f"category {category!r} is not one where garments hang: not judged")
    vis = (alpha >= VISIBLE_ALPHA).view(np.uint8)
    x0, y0, w, h = cv2.boundingRect(vis)
    if not w:
        return Hangers(False, "no visible product")
    s = min(1.0, WORK_SIDE / max(w, h))
    crop = alpha[y0:y0 + h, x0:x0 + w]
    if s < 1.0:
        crop = cv2.resize(crop, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    pad = 2  # a border of background: the opening and the distance transform see the product's edge everywhere
    mask = cv2.copyMakeBorder((crop >= VISIBLE_ALPHA).view(np.uint8), pad, pad, pad, pad, cv2.BORDER_CONSTANT, 0)
    size = float(np.sqrt(cv2.countNonZero(mask)))
    d = max(3, int(round(cfg.open_width * size)) | 1)
    opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (d, d)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    if n <= 1 or stats[1:, cv2.CC_STAT_AREA].max() < MIN_BODY_PX:
        return Hangers(False, "the product is too small or too thin to tell its body from thin parts")
    areas = stats[:, cv2.CC_STAT_AREA].copy()
    areas[0] = 0
    body = (areas >= areas.max() / 3)[labels].view(np.uint8)
    # candidates: what the opening took off, farther than the disc's radius from the body (nearer
    # lie the corners and bumps the opening rounded off), that touches it
    grown = cv2.dilate(body, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (d + 2, d + 2)))
    rest = (mask.view(bool) & ~grown.view(bool)).view(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(rest, connectivity=8)
    # the body's own edge: with the corners and bumps given back, but not the foot of a candidate
    # (a hook's stem within the disc's radius of the body is the hook's, not the garment's top)
    near = (mask.view(bool) & grown.view(bool) & ~body.view(bool)).view(np.uint8)
    m, bits = cv2.connectedComponents(near, connectivity=8)
    feet = np.bincount(bits[cv2.dilate(rest, np.ones((3, 3), np.uint8)).view(bool)], minlength=m) > 0
    feet[0] = True
    edge = (body.view(bool) | ~feet[bits]).view(np.uint8) if m > 1 else body
    judge = _Body(body, edge, d, 1.0 / s, (x0 - pad / s, y0 - pad / s), cfg)
    parts = []
    if n > 1:
        dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
        # the product's thickness at each pixel (a w px wide line is w + 1 px across between the
        # background pixels on either side), negative off its ridge (where the distance map peaks across)
        thick = 2.0 * dist - 1.0
        thick[dist < cv2.dilate(dist, np.ones((3, 3), np.uint8))] *= -1.0
        touching = np.bincount(labels[cv2.dilate(grown, np.ones((3, 3), np.uint8)).view(bool)], minlength=n)
        for i in np.nonzero(touching[1:])[0] + 1:
            cx, cy, cw, ch, _area = (int(v) for v in stats[i])
            box = (cx, cy, cw, ch)
            part = labels[cy:cy + ch, cx:cx + cw] == i
            found = judge.hook(part, box, thick) or judge.bar(part, box, thick)
            if found:
                parts.append(found)
    parts.sort(key=lambda p: -max(p.rise, p.reach))
    return Hangers(True, "", parts, judge.canvas_box(*judge.box))


def _thickness(thick: np.ndarray) -> float:
    """A part's thickness: the median along its ridge (positive values; off the ridge negative), so
    that a junction or a clip on a wire does not make the wire thick; a piece without ridge pixels
    (a stub cut off at the body's side), its greatest."""
    ridge = thick[thick > 0]
    return float(np.median(ridge)) if ridge.size else float(np.abs(thick).max(initial=0.0))


class _Body:
    """The garment's opened body at the working scale, and how its thin parts are judged against it."""

    def __init__(self, body: np.ndarray, edge: np.ndarray, disc: int, k: float, origin: tuple[float, float],
                 cfg: HangerOptions):
        self.body, self.disc, self.k, self.origin, self.cfg = edge, disc, k, origin, cfg
        self.box = cv2.boundingRect(body)
        self.limit = cfg.thin_width * self.box[2]
        self.top_of = np.where(edge.any(axis=0), np.argmax(edge, axis=0), edge.shape[0])  # top edge per column

    def canvas_box(self, x: int, y: int, w: int, h: int) -> tuple[int, int, int, int]:
        return (*self.canvas(x, y), round(w * self.k), round(h * self.k))

    def canvas(self, x: float, y: float) -> tuple[int, int]:
        return round(x * self.k + self.origin[0]), round(y * self.k + self.origin[1])

    def bar(self, part: np.ndarray, box: tuple[int, int, int, int], thick: np.ndarray) -> ThinPart | None:
        """A bar: a part in the top band whose piece past the body's side (its edge, corners given
        back, at the part's rows) is thin and reaches far."""
        cx, cy, cw, ch = box
        bx, by, bw, bh = self.box
        if cy > by + self.cfg.top_band * bh:
            return None
        near = self.body[max(0, cy - 2):cy + ch + 2].any(axis=0)
        lo, hi = (int(np.argmax(near)), len(near) - int(np.argmax(near[::-1]))) if near.any() else (bx, bx + bw)
        for side, cols in (("left", slice(cx, min(cx + cw, lo))), ("right", slice(max(cx, hi), cx + cw))):
            piece = part[:, cols.start - cx:cols.stop - cx] if cols.stop > cols.start else part[:, :0]
            if not piece.any():
                continue
            reach = float(cols.stop - cols.start) / max(hi - lo, bw / 2)  # (a sliver of body at the top: half its width)
            t = _thickness(thick[cy:cy + ch, cols][piece])
            if reach > self.cfg.reach and t <= self.limit:
                ys, xs = np.nonzero(piece)
                j = int(np.argmin(xs)) if side == "left" else int(np.argmax(xs))
                return ThinPart("bar", *self.canvas(cols.start + xs[j], cy + ys[j]), self.canvas_box(*box),
                                t * self.k, max(0.0, float(by - cy) / bh), reach)
        return None

    def hook(self, part: np.ndarray, box: tuple[int, int, int, int], thick: np.ndarray) -> ThinPart | None:
        """A hook: a thin part whose top rises above the body's top edge over the part's columns
        (its overall top where there is no body under it)."""
        cx, cy, cw, ch = box
        t = _thickness(thick[cy:cy + ch, cx:cx + cw][part])
        edge = int(self.top_of[cx:cx + cw].min())
        if edge >= self.body.shape[0]:
            edge = self.box[1]
        rise = float(edge - cy) / self.box[3]
        if t > self.limit or rise <= self.cfg.rise:
            return None
        ys, xs = np.nonzero(part)
        j = int(np.argmin(ys))
        return ThinPart("hook", *self.canvas(cx + xs[j], cy + ys[j]), self.canvas_box(*box), t * self.k, rise, 0.0)


def hanger_check(found: Hangers, cfg: HangerOptions) -> CheckResult:
    """The hanger check of `find_hangers`: a thin part above the product sends the SKU to review
    (rejects it with `blocking`), its message saying what and where."""
    limit = (f"no thin part rising over {cfg.rise:.0%} of the product's height above it or reaching over "
             f"{cfg.reach:.0%} of its width past its side at the top")
    if not found.parts:
        msg = found.note or "no thin part above the product"
        return CheckResult("hanger", True, 0.0, limit, msg, cfg.blocking)
    said = []
    for p in found.parts[:3]:
        if p.kind == "hook":
            said.append(f"thin part above the product, hanger or hook? {p.thickness_px:.0f} px thick, rising "
                        f"{p.rise:.0%} of its height above its top, up to ({p.x}, {p.y}) of the canvas")
        else:
            said.append(f"thin bar at the top of the product, hanger bar or clips? {p.thickness_px:.0f} px thick, "
                        f"reaching {p.reach:.0%} of its width past its side, to ({p.x}, {p.y}) of the canvas")
    more = f"; {len(found.parts) - 3} more" if len(found.parts) > 3 else ""
    value = max(max(p.rise, p.reach) for p in found.parts)
    return CheckResult("hanger", False, round(value, 4), limit, "; ".join(said) + more, cfg.blocking)
