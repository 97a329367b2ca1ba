"""What a cut-out left on the staged product: stray parts, faint parts, kept backdrop and backdrop colour on the rim."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from stages.check import CheckResult
from stages.check.outline import VISIBLE_ALPHA, Outline, blur_at, colours_at
from stages.check.rim_spill import MIN_BACKDROP_CHROMA, rim_spill
from stages.colour import opponent
from stages.errors import ConfigError
from stages.layout import Placement
from stages.masks import points
from stages.matte.translucent import CLEAR
from stages.resample import box_reduce, shrink

MIN_PART_PX = 24  # a detached part smaller than this many canvas pixels is matting noise
FAINT_EDGE = 0.02  # faint pixels this near the visible product (share of its size, 3 px at least) are its soft edge
WORK_SIDE = 256  # the source is judged for kept backdrop at most this large (long side)
FINE_SIDE = 768  # ... and on a plain coloured backdrop again, at most this large (thin strips of it)
PLAIN_HUE_SPREAD = 0.2  # a backdrop whose chroma varies less than this share of it is one plain colour


@dataclass(frozen=True)
class LeftoverOptions:
    """[fidelity.leftovers]: what the cut-out left on the product layer. Areas are shares of the
    product's visible area, widths shares of its size (sqrt of its box area)."""

    enabled: bool = True
    gap: float = 0.005  # parts nearer than this to the product belong to it (a lace, the other shoe of a pair)
    main_share: float = 0.3  # a part at least this share of the largest is a main part (a pair, a set)
    stray_area: float = 0.0005  # a detached part larger than this is a stray part
    faint_reach: float = 0.06  # a faint part (alpha 5-50%) reaching farther than this from the product is kept backdrop
    region_area: float = 0.003  # a backdrop-coloured region of the product larger than this is kept backdrop
    alike_share: float = 0.5  # backdrop-like over more of the product: too alike to judge
    spill_width: float = 0.006  # rim of the product judged for backdrop colour spill
    spill_tint: float = 0.55  # an outline pixel whose rim shows this many pixels of the backdrop's colour is tinted
    spill_chroma: float = 30.0  # ... and at least this much chroma (RGB units x px) toward the backdrop's hue
    spill_limit: float = 0.45  # share of the outline's length whose rim may be tinted
    blocking: bool = False  # false: a leftover sends the SKU to review; true: rejects it

    def check(self, where: str) -> None:
        for name in ("gap", "stray_area", "faint_reach", "region_area", "spill_width"):
            if not 0 <= getattr(self, name) <= 0.5:
                raise ConfigError(f"{where}.{name} = {getattr(self, name)}: must be 0..0.5")
        for name in ("main_share", "alike_share", "spill_limit"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"{where}.{name} = {getattr(self, name)}: must be in (0, 1]")
        if not 0 < self.spill_tint <= 10:
            raise ConfigError(f"{where}.spill_tint = {self.spill_tint}: must be in (0, 10] (pixels)")
        if not 0 <= self.spill_chroma <= 1000:
            raise ConfigError(f"{where}.spill_chroma = {self.spill_chroma}: must be 0..1000")


@dataclass(frozen=True)
class Part:
    """A region found on the canvas: its visible pixels, centre and box (x, y, w, h)."""

    area: int
    x: int
    y: int
    box: tuple[int, int, int, int]
    away_px: float = 0.0  # distance to the main product (stray parts); how far from it a faint part reaches

    def to_dict(self) -> dict[str, Any]:
        return {"area_px": self.area, "at": [self.x, self.y], "box": list(self.box), "away_px": round(self.away_px, 1)}


@dataclass(frozen=True)
class Leftovers:
    strays: list[Part] = field(default_factory=list)  # largest first
    product_px: int = 0  # visible pixels of the main product
    faint: list[Part] = field(default_factory=list)  # faint parts, farthest reaching first
    faint_farthest: float = 0.0  # how far the farthest faint part reaches from the product, share of its size
    faint_note: str = ""  # why faint parts were not judged, when they were not
    regions: list[Part] = field(default_factory=list)  # backdrop-coloured regions, largest first
    regions_note: str = ""  # why kept backdrop was not judged, when it was not
    backdrop_like: float = 0.0  # share of the product in the backdrop's colour and texture
    spill: float = 0.0  # share of the outline's length whose rim is tinted toward the backdrop's hue
    spill_judged: int = 0  # outline pixels judged (off the backdrop's hue)
    spill_note: str = ""
    hue: str = ""  # the backdrop's colour name
    spill_where: str = ""  # the sides of the product whose rim is tinted ("top and left")

    def details(self) -> dict[str, Any]:
        return {"product_px": self.product_px, "strays": [p.to_dict() for p in self.strays[:10]],
                "faint": [p.to_dict() for p in self.faint[:10]], "faint_farthest": round(self.faint_farthest, 4),
                "regions": [p.to_dict() for p in self.regions[:10]], "backdrop_like": round(self.backdrop_like, 4),
                "spill": round(self.spill, 4), "spill_judged": self.spill_judged, "spill_where": self.spill_where,
                "notes": [n for n in (self.faint_note, self.regions_note, self.spill_note) if n]}


def find_leftovers(product_rgb: np.ndarray, product_alpha: np.ndarray, placement: Placement, outline: Outline,
                   source_rgb: np.ndarray | None, source_alpha: np.ndarray | None, backdrop: np.ndarray | None,
                   cfg: LeftoverOptions, mixed_edge: bool = True) -> Leftovers:
    """The leftovers of one placed product (canvas product layer, the source photo and its matte,
    the source backdrop's colour or None when the photo had no backdrop). `mixed_edge`: the
    matte's soft pixels mix product and backdrop (`Matte.mixed_edge`); false for the photo's own
    transparency and kept shadows, whose faint parts are meant."""
    strays, product_px = stray_parts(product_alpha, outline, cfg)
    faint, farthest, faint_note = [], 0.0, "the photo's own transparency or kept shadows: not judged"
    if mixed_edge:
        (faint, farthest), faint_note = faint_parts(product_alpha, outline, cfg.faint_reach), ""
    regions: list[Part] = []
    like, note = 0.0, "the photo has no backdrop: not judged"
    if backdrop is not None and source_rgb is not None and source_alpha is not None:
        regions, like, note = backdrop_regions(source_rgb, source_alpha, placement, cfg)
    spill, judged, spill_note, hue, where = 0.0, 0, "no backdrop colour known: not judged", "", ""
    if backdrop is not None:
        spill, judged, spill_note, hue, where = rim_spill(product_rgb, product_alpha, outline, backdrop,
                                                               cfg.spill_width, cfg.spill_tint, cfg.spill_chroma)
    return Leftovers(strays, product_px, faint, farthest, faint_note, regions, note, like, spill, judged, spill_note, hue,
                     where)


def stray_parts(alpha: np.ndarray, outline: Outline, cfg: LeftoverOptions) -> tuple[list[Part], int]:
    """Visible parts of the cut-out (alpha >= 128) detached from the main product: (parts, main product px).

    Parts nearer to each other than `gap` of the product's size are one part (a lace a pixel off
    the shoe). The main product is every part at least `main_share` of the largest (both shoes of
    a pair); any other part larger than `stray_area` of the main product's area is stray: a piece
    of floor, a backdrop speck, a hanger clip, a hand, a door frame. A product sold as a set whose
    small pieces lie apart (a spoon beside a cup) is flagged too: a person looks at it.
    """
    (ry, rx), _ = outline.region(0.0)
    vis = (alpha[ry, rx] >= VISIBLE_ALPHA).view(np.uint8)
    g = max(2.0, cfg.gap * outline.size)
    r = max(1, int(g // 2))  # each part grown by half the gap joins parts up to `gap` apart
    joined = cv2.dilate(vis, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    n, labels = cv2.connectedComponents(joined, connectivity=8)  # (the variant with stats is ~6x slower)
    if n <= 2:  # one part (the common case) or none
        return [], int(cv2.countNonZero(vis))
    areas = np.bincount(labels[vis.view(bool)], minlength=n)
    areas[0] = 0
    main = areas >= cfg.main_share * areas.max()
    main[0] = False
    product_px = int(areas[main].sum())
    floor = max(MIN_PART_PX, cfg.stray_area * product_px)
    stray = [int(i) for i in np.argsort(-areas) if i and not main[i] and areas[i] >= floor]
    if not stray:
        return [], product_px
    away = cv2.distanceTransform(1 - (main[labels] & vis.view(bool)).view(np.uint8), cv2.DIST_L2, 5)
    parts = []
    for i in stray[:20]:
        ys, xs = np.nonzero((labels == i) & vis.view(bool))
        x, y = int(xs.min()), int(ys.min())
        parts.append(Part(int(areas[i]), round(xs.mean()) + rx.start, round(ys.mean()) + ry.start,
                          (x + rx.start, y + ry.start, int(xs.max()) - x + 1, int(ys.max()) - y + 1),
                          float(away[ys, xs].min())))
    return parts, product_px


def faint_parts(alpha: np.ndarray, outline: Outline, reach: float) -> tuple[list[Part], float]:
    """Faint parts of the cut-out (canvas alpha): pixels showing 5-50% of themselves (`CLEAR` <
    alpha < 128) that lie beyond the visible product's soft edge, joined into parts, each reaching
    farther from the visible product than `reach` of its size (sqrt of its box area), farthest
    first; and how far the farthest reaches, as a share of that size.

    A learned matte keeps what it is unsure of at low alpha: a grout line or floor seam running
    from a shoe to the photo's edge at 15-25%, a smear of shadow, a reflection. Under alpha 128 it
    is no part of the visible silhouette, so the stray-part check does not see it; it is too thin
    for the translucent-part measure (`stages.matte.translucent`); on the staged image it shows as
    a pale streak or smudge over the scene. A soft edge's tail lies within `FAINT_EDGE` of the
    product's size (3 px at least) of the visible product and is left alone. On the tuning photos'
    cut-outs (embedded and IS-Net) no faint pixel of a good cut-out reaches past 0.03 of the size;
    IS-Net's cut-out of the white sneakers on brown tiles keeps a tile's grout line above the left
    shoe at alpha 35-64, reaching 0.40. Each part must hold `MIN_PART_PX` pixels. Blind spots: a
    faint part within `reach` (a kept shadow hugging a shoe's sole) and one fainter than 5%."""
    (ry, rx), _ = outline.region(0.0)  # the box of every pixel over 0, faint ones included
    roi = alpha[ry, rx]
    vis = cv2.compare(roi, VISIBLE_ALPHA, cv2.CMP_GE)
    _, _, w, h = cv2.boundingRect(vis)
    if not w:
        return [], 0.0
    size = math.sqrt(w * h)
    away = cv2.distanceTransform(cv2.bitwise_not(vis), cv2.DIST_L2, 5)
    far = cv2.bitwise_and(cv2.bitwise_and(cv2.compare(roi, CLEAR, cv2.CMP_GT), cv2.bitwise_not(vis)),
                          cv2.compare(away, max(3.0, FAINT_EDGE * size), cv2.CMP_GT))
    n, labels, stats, centres = cv2.connectedComponentsWithStats(far, connectivity=8)
    if n <= 1:
        return [], 0.0
    ys, xs = np.nonzero(far)
    reached = np.zeros(n, np.float32)
    np.maximum.at(reached, labels[ys, xs], away[ys, xs])
    reached[stats[:, cv2.CC_STAT_AREA] < MIN_PART_PX] = 0.0
    reached[0] = 0.0  # the background
    parts = []
    for i in np.argsort(-reached):
        if reached[i] <= reach * size:
            break
        x, y, bw, bh = (int(v) for v in stats[i, :4])
        parts.append(Part(int(stats[i, cv2.CC_STAT_AREA]), round(centres[i, 0]) + rx.start,
                          round(centres[i, 1]) + ry.start, (x + rx.start, y + ry.start, bw, bh), float(reached[i])))
    return parts, float(reached.max()) / size


def _texture(lum: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Local standard deviation of the luminance over the `mask` pixels of each 5x5 window (0 where
    a window holds one of them or none).

    Only the pixels of one colour class count: a thin strip of kept backdrop (between the front
    panels of a shirt, in the gap of a pair) is as smooth as the backdrop, though every 5x5 window
    over it reaches the product's edges, whose contrast a plain local deviation would read as
    texture."""
    w = mask.astype(np.float32)
    n = cv2.boxFilter(w, -1, (5, 5), normalize=False)
    s1 = cv2.boxFilter(lum * w, -1, (5, 5), normalize=False)
    s2 = cv2.boxFilter(lum * lum * w, -1, (5, 5), normalize=False)
    n = np.maximum(n, 1.0)
    m = s1 / n
    return np.sqrt(np.maximum(s2 / n - m * m, 0.0))


def backdrop_regions(source_rgb: np.ndarray, source_alpha: np.ndarray, placement: Placement,
                     cfg: LeftoverOptions) -> tuple[list[Part], float, str]:
    """Regions of the cut-out that are the source photo's backdrop: (regions on the canvas, share of
    the product that looks like backdrop, why not judged or "").

    Judged in the source photo (at most `WORK_SIDE` px; `FINE_SIDE` on a plain coloured backdrop,
    see below), where product and backdrop have the same scale and noise: the backdrop's local
    colour is the Gaussian mean of the sure-backdrop pixels (matte alpha < 8) around each point;
    the tolerances are the backdrop's own spread about that mean (1.5 x its 90th percentile, in
    lightness and in chroma separately, opponent colour axes)
    and its range of 5x5 texture, read within the backdrop-coloured pixels (`_texture`: a strip of
    kept backdrop is as smooth as the backdrop though its windows reach the product's edges). On a
    plain coloured backdrop (its chroma varies by less than `PLAIN_HUE_SPREAD` of itself) a pixel
    of the backdrop's hue (within 20 degrees) with chroma and lightness within a lighting change
    (0.4-1.6x, 0.75-1.35x) matches too: backdrop the light falls on otherwise, which is why the
    matte kept it (the sunlit paper beside the demo's bark sandals). A product pixel inside the
    cut-out (not on its edge) that matches in colour and texture is backdrop-like; connected
    backdrop-like regions that run into the backdrop and are larger than `region_area` of the
    product are kept backdrop: the sheet beside a cap, a floor slab under a sweater (a detached
    piece is a stray part). Blind spots: a backdrop-coloured
    region enclosed by the product is taken for the product's own (coffee in a cup, white
    lettering on a strap; also a hole the matte filled); a product the colour and texture of its
    backdrop (a white sneaker on a white floor) cannot be told from kept backdrop: when more than
    `alike_share` of it looks like backdrop, it is not judged and the note says so; on a white,
    grey or textured backdrop, kept backdrop lit unlike the rest departs from the backdrop's
    colour as it did for the matte, and is missed: the backdrop in a gap between the product's
    parts lies in their shade (grey on a white sweep) and reads as the product's own; a strip under
    about 3 px of the working image (a 6 px strip of a 512 px photo, a 47 px one of a 12 MP photo)
    is mixed with the product on both sides and is missed too. On a plain coloured backdrop the
    backdrop's hue tells it from the product however it is lit, and only the strip's width hides
    it, so there the photo is judged again, box-averaged by a whole factor to at most `FINE_SIDE`
    px: a strip of 3 px of that (an 18 px one of a 12 MP photo) is caught. On tuning products
    re-shot on six plain colours with the backdrop kept in their gaps
    (benchmarks/leftover_eval.py, `gap-reshot`), gaps of 3x the floor are caught 3/15 at 256 px,
    11/15 with the finer view (10x: 12/15, 15/15); no clean re-shoot (0/24) and no gap under the
    floor (0/18) is taken for kept backdrop either way. On a white, grey or textured backdrop the
    finer view was tried and not kept: it took the coffee in the cup on wood for kept backdrop.
    """
    h, w = source_alpha.shape
    s = min(1.0, WORK_SIDE / max(h, w))
    if s == 1.0:
        return _regions_at(source_rgb, source_alpha, 1.0, placement, cfg)[:3]
    size = (max(1, round(w * s)), max(1, round(h * s)))
    regions, share, note, coloured = _regions_at(shrink(source_rgb, size), shrink(source_alpha, size), s,
                                                 placement, cfg)
    if not coloured:
        return regions, share, note
    k = math.ceil(max(h, w) / FINE_SIDE)  # the finer view: box-averaged by a whole factor
    return _regions_at(box_reduce(source_rgb, k), box_reduce(source_alpha, k), 1.0 / k, placement, cfg)[:3]


def _regions_at(rgb: np.ndarray, alpha: np.ndarray, s: float, placement: Placement,
                cfg: LeftoverOptions) -> tuple[list[Part], float, str, bool]:
    """`backdrop_regions` judged on the source photo and its matte `s` times their size (`rgb`,
    `alpha`), and whether the backdrop is one plain colour with a hue (chroma at least
    `MIN_BACKDROP_CHROMA`)."""
    bd = alpha < 8
    prod = (alpha >= VISIBLE_ALPHA).view(np.uint8)
    core = cv2.erode(prod, np.ones((3, 3), np.uint8)).view(bool)
    n_bd, n_prod = cv2.countNonZero(bd.view(np.uint8)), cv2.countNonZero(prod)
    if n_bd < 64 or cv2.countNonZero(core.view(np.uint8)) < 64:
        return [], 0.0, "too little backdrop or product to compare: not judged", False
    # the backdrop's local colour where it is compared: its Gaussian mean around each point
    sigma = max(alpha.shape) / 24.0
    cy, cx = points(core)
    step = max(1, n_bd // 8000)  # the backdrop's own spread, from a sample of its pixels
    by, bx = points(bd)
    by, bx = by[::step], bx[::step]
    ys, xs = np.concatenate([cy, by]), np.concatenate([cx, bx])
    local, support = blur_at(rgb, bd, sigma, ys, xs)
    far = support < 1e-3  # no backdrop within reach: the backdrop's overall colour
    if far.any():
        local[far] = np.median(colours_at(rgb, by, bx), axis=0)
    colour, ref = opponent(colours_at(rgb, ys, xs)), opponent(local)
    diff = colour - ref
    d_l, d_ab = np.abs(diff[:, 0]), np.hypot(diff[:, 1], diff[:, 2])
    m = cy.size  # product points first, then the backdrop sample
    tol_l = max(8.0, 1.5 * float(np.percentile(d_l[m:], 90)))
    spread_ab = float(np.percentile(d_ab[m:], 90))
    tol_ab = max(5.0, 1.5 * spread_ab)
    same = (d_l[:m] <= tol_l) & (d_ab[:m] <= tol_ab)
    chroma = float(np.median(np.hypot(ref[m:, 1], ref[m:, 2])))
    plain = spread_ab <= PLAIN_HUE_SPREAD * max(chroma, 1.0)
    coloured = plain and chroma >= MIN_BACKDROP_CHROMA
    if plain:
        # a plain coloured backdrop lit otherwise (a sunlit or shaded patch) keeps its hue, with
        # chroma and lightness within a lighting change
        c, b = colour[:m], ref[:m]
        cc, bc = np.hypot(c[:, 1], c[:, 2]), np.hypot(b[:, 1], b[:, 2])
        cos = (c[:, 1] * b[:, 1] + c[:, 2] * b[:, 2]) / np.maximum(cc * bc, 1e-6)
        same |= (bc >= MIN_BACKDROP_CHROMA) & (cos >= np.cos(np.radians(20))) & (cc >= 0.4 * bc) & (cc <= 1.6 * bc) \
            & (c[:, 0] >= 0.75 * b[:, 0]) & (c[:, 0] <= 1.35 * b[:, 0])
    # texture: within the backdrop-coloured pixels (the sure backdrop and the product points of its colour)
    alike = bd.copy()
    alike[cy[same], cx[same]] = True
    tex = _texture(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32), alike)[ys, xs]
    t_lo, t_hi = np.percentile(tex[m:], (10, 90))
    ok = same & (tex[:m] >= 0.5 * t_lo) & (tex[:m] <= 1.5 * t_hi + 1.0)
    like = np.zeros(alpha.shape, np.uint8)
    like[cy[ok], cx[ok]] = 1
    like = cv2.morphologyEx(like.view(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    share = cv2.countNonZero(like) / n_prod
    if share > cfg.alike_share:
        return [], share, (f"{share:.0%} of the product has the backdrop's colour and texture: "
                           "product and backdrop too alike to judge kept backdrop"), coloured
    n, labels = cv2.connectedComponents(like, connectivity=8)
    if n <= 1:
        return [], share, "", coloured
    areas = np.bincount(labels.ravel(), minlength=n)
    # only regions that run into the backdrop (within 4 px of a sure-backdrop pixel) are kept
    # backdrop: a backdrop-coloured part enclosed by the product (coffee in a cup, white lettering
    # on a strap) is the product's own
    near = cv2.dilate(bd.view(np.uint8), np.ones((9, 9), np.uint8)).view(bool)
    areas[np.bincount(labels[near], minlength=n) == 0] = 0
    areas[0] = 0
    floor = max(8.0, cfg.region_area * n_prod)
    x0, y0 = placement.source_box[:2]
    k = placement.scale / s  # canvas pixels per working pixel

    def canvas(x: float, y: float) -> tuple[int, int]:
        return round((x / s - x0) * placement.scale + placement.x), round((y / s - y0) * placement.scale + placement.y)

    regions = []
    for i in np.argsort(-areas):
        if areas[i] < floor:
            break
        ys, xs = np.nonzero(labels == i)
        cx, cy = canvas(float(xs.mean()), float(ys.mean()))
        bx0, by0 = canvas(float(xs.min()), float(ys.min()))
        regions.append(Part(round(int(areas[i]) * k * k), cx, cy, (bx0, by0, round((xs.max() - xs.min() + 1) * k),
                                                                   round((ys.max() - ys.min() + 1) * k))))
    return regions, share, "", coloured


def leftover_checks(found: Leftovers, cfg: LeftoverOptions) -> list[CheckResult]:
    """The four checks of `find_leftovers`: stray parts, faint parts, kept backdrop, rim spill; each
    failure sends the SKU to review (rejects it with `blocking`), its message saying what and where."""
    base = max(found.product_px, 1)
    largest = found.strays[0].area / base if found.strays else 0.0
    if found.strays:
        said = "; ".join(f"stray part: {p.area} px at ({p.x}, {p.y}) of the canvas, detached from the product "
                         f"({p.away_px:.0f} px away)" for p in found.strays[:3])
        more = f"; {len(found.strays) - 3} more" if len(found.strays) > 3 else ""
        stray = CheckResult("stray_parts", False, round(largest, 5), f"no detached part over {cfg.stray_area:.2%} "
                            "of the product", said + more, cfg.blocking)
    else:
        stray = CheckResult("stray_parts", True, 0.0, f"no detached part over {cfg.stray_area:.2%} of the product",
                            "no part detached from the product", cfg.blocking)
    limit = f"no faint part reaching over {cfg.faint_reach:.0%} of the product's size from it"
    if found.faint:
        said = "; ".join(f"faint part: {p.area} px at ({p.x}, {p.y}) of the canvas, reaching {p.away_px:.0f} px "
                         "from the product at 5-50% opacity (a floor line, a shadow or a reflection kept)"
                         for p in found.faint[:3])
        more = f"; {len(found.faint) - 3} more" if len(found.faint) > 3 else ""
        faint = CheckResult("faint_parts", False, round(found.faint_farthest, 4), limit, said + more, cfg.blocking)
    else:
        said = found.faint_note or f"the farthest faint part reaches {found.faint_farthest:.1%} of the product's size"
        faint = CheckResult("faint_parts", True, round(found.faint_farthest, 4), limit, said, cfg.blocking)
    limit = f"no backdrop-coloured region over {cfg.region_area:.1%} of the product"
    if found.regions:
        big = found.regions[0].area / base
        said = "; ".join(f"region of {p.area} px at ({p.x}, {p.y}) of the canvas has the backdrop's colour and "
                         "texture (kept backdrop)" for p in found.regions[:3])
        more = f"; {len(found.regions) - 3} more" if len(found.regions) > 3 else ""
        region = CheckResult("backdrop_region", False, round(big, 5), limit, said + more, cfg.blocking)
    else:
        region = CheckResult("backdrop_region", True, 0.0, limit,
                             found.regions_note or "no region of the product has the backdrop's colour", cfg.blocking)
    limit = f"<= {cfg.spill_limit:.0%} of the outline tinted toward the backdrop"
    if found.spill > cfg.spill_limit:
        msg = (f"rim of the product tinted toward the backdrop colour ({found.hue}) over {found.spill:.0%} of its "
               f"length, along its {found.spill_where or 'outline'}: fringe of the source backdrop's {found.hue}")
        spill = CheckResult("rim_spill", False, round(found.spill, 4), limit, msg, cfg.blocking)
    else:
        msg = found.spill_note or (f"{found.spill:.0%} of the outline ({found.spill_judged} pixels judged) tinted "
                                   f"toward the backdrop colour ({found.hue})")
        spill = CheckResult("rim_spill", True, round(found.spill, 4), limit, msg, cfg.blocking)
    return [stray, faint, region, spill]
