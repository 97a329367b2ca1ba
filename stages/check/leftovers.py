"""What a cut-out left on the staged product: stray parts, kept backdrop and backdrop colour on the rim."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from stages.check import CheckResult
from stages.check.outline import VISIBLE_ALPHA, Outline, blur_at, colours_at, points
from stages.errors import ConfigError
from stages.layout import Placement
from stages.resample import shrink

MIN_PART_PX = 24  # a detached part smaller than this many canvas pixels is matting noise
WORK_SIDE = 256  # the source is judged for kept backdrop at most this large (long side)
PLAIN_HUE_SPREAD = 0.2  # a backdrop whose chroma varies less than this share of it is one plain colour
MIN_BACKDROP_CHROMA = 30.0  # opponent chroma (RGB units) under which a backdrop is white, cream, grey or black: no hue
MIN_HUE_GAP = 20.0  # chroma distance under which the product's own colour is too near the backdrop's hue
SPILL_POINTS = 20000  # outline pixels judged at most (an even sample of a longer outline)
EDGE_PX = 1.5  # the outline: visible product pixels this near its edge
SPILL_OUT_PX = 2  # px: the rim judged across the outline reaches this far out, into a soft matte's faint tail
SPILL_DEPTHS = (3.0, 4.0, 5.0)  # rim widths inward where the product's own colour is read
SAME_HUE_DEPTH = 6.0  # rim widths: the product's colour is its median this far inside, past a bleed's reach


@dataclass(frozen=True)
class LeftoverOptions:
    """[fidelity.leftovers]: what the cut-out left on the product layer. Areas are shares of the
    product's visible area, widths shares of its size (sqrt of its box area)."""

    enabled: bool = True
    gap: float = 0.005  # parts nearer than this to the product belong to it (a lace, the other shoe of a pair)
    main_share: float = 0.3  # a part at least this share of the largest is a main part (a pair, a set)
    stray_area: float = 0.0005  # a detached part larger than this is a stray part
    region_area: float = 0.003  # a backdrop-coloured region of the product larger than this is kept backdrop
    alike_share: float = 0.5  # backdrop-like over more of the product: too alike to judge
    spill_width: float = 0.006  # rim of the product judged for backdrop colour spill
    spill_tint: float = 0.55  # an outline pixel whose rim shows this many pixels of the backdrop's colour is tinted
    spill_chroma: float = 30.0  # ... and at least this much chroma (RGB units x px) toward the backdrop's hue
    spill_limit: float = 0.45  # share of the outline's length whose rim may be tinted
    blocking: bool = False  # false: a leftover sends the SKU to review; true: rejects it

    def check(self, where: str) -> None:
        for name in ("gap", "stray_area", "region_area", "spill_width"):
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
    away_px: float = 0.0  # distance to the main product (stray parts)

    def to_dict(self) -> dict[str, Any]:
        return {"area_px": self.area, "at": [self.x, self.y], "box": list(self.box), "away_px": round(self.away_px, 1)}


@dataclass(frozen=True)
class Leftovers:
    strays: list[Part] = field(default_factory=list)  # largest first
    product_px: int = 0  # visible pixels of the main product
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
                "regions": [p.to_dict() for p in self.regions[:10]], "backdrop_like": round(self.backdrop_like, 4),
                "spill": round(self.spill, 4), "spill_judged": self.spill_judged, "spill_where": self.spill_where,
                "notes": [n for n in (self.regions_note, self.spill_note) if n]}


def find_leftovers(product_rgb: np.ndarray, product_alpha: np.ndarray, placement: Placement, outline: Outline,
                   source_rgb: np.ndarray | None, source_alpha: np.ndarray | None, backdrop: np.ndarray | None,
                   cfg: LeftoverOptions) -> Leftovers:
    """The three leftovers of one placed product (canvas product layer, the source photo and its
    matte, the source backdrop's colour or None when the photo had no backdrop)."""
    strays, product_px = stray_parts(product_alpha, outline, cfg)
    regions: list[Part] = []
    like, note = 0.0, "the photo has no backdrop: not judged"
    if backdrop is not None and source_rgb is not None and source_alpha is not None:
        regions, like, note = backdrop_regions(source_rgb, source_alpha, placement, cfg)
    spill, judged, spill_note, hue, where = 0.0, 0, "no backdrop colour known: not judged", "", ""
    if backdrop is not None:
        spill, judged, spill_note, hue, where = rim_spill(product_rgb, product_alpha, outline, backdrop, cfg)
    return Leftovers(strays, product_px, regions, note, like, spill, judged, spill_note, hue, where)


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


# opponent colour axes of sRGB: lightness, then two chroma axes (red-green, yellow-blue), in RGB units
_OPPONENT = np.array([[1 / 3, 1 / 3, 1 / 3], [1 / np.sqrt(2), -1 / np.sqrt(2), 0.0],
                      [1 / np.sqrt(6), 1 / np.sqrt(6), -2 / np.sqrt(6)]], np.float32).T


def _opponent(rgb: np.ndarray) -> np.ndarray:
    """N x 3 colours as (lightness, red-green, yellow-blue): chroma apart from lightness, in RGB units."""
    return np.asarray(rgb, np.float32).reshape(-1, 3) @ _OPPONENT


def _texture(lum: np.ndarray) -> np.ndarray:
    """Local standard deviation of the luminance over 5x5 pixels."""
    m = cv2.blur(lum, (5, 5))
    return np.sqrt(np.maximum(cv2.blur(lum * lum, (5, 5)) - m * m, 0.0))


def backdrop_regions(source_rgb: np.ndarray, source_alpha: np.ndarray, placement: Placement,
                     cfg: LeftoverOptions) -> tuple[list[Part], float, str]:
    """Regions of the cut-out that are the source photo's backdrop: (regions on the canvas, share of
    the product that looks like backdrop, why not judged or "").

    Judged in the source photo (at most `WORK_SIDE` px), where product and backdrop have the same
    scale and noise: the backdrop's local colour is the Gaussian mean of the sure-backdrop pixels
    (matte alpha < 8) around each point; the tolerances are the backdrop's own spread about that
    mean (1.5 x its 90th percentile, in lightness and in chroma separately, opponent colour axes)
    and its range of 5x5 texture. On a plain coloured backdrop (its chroma varies by less than
    `PLAIN_HUE_SPREAD` of itself) a pixel of the backdrop's hue (within 20 degrees) with chroma
    and lightness within a lighting change (0.4-1.6x, 0.75-1.35x) matches too: backdrop the light
    falls on otherwise, which is why the matte kept it (the sunlit paper beside the demo's bark
    sandals). A product pixel inside the cut-out (not on its edge) that matches in colour and
    texture is backdrop-like; connected backdrop-like regions that run into the backdrop and are
    larger than `region_area` of the product are kept backdrop: the sheet beside a cap, a floor
    slab under a sweater (a detached piece is a stray part). Blind spots: a backdrop-coloured
    region enclosed by the product is taken for the product's own (coffee in a cup, white
    lettering on a strap; also a hole the matte filled); a product the colour and texture of its
    backdrop (a white sneaker on a white floor) cannot be told from kept backdrop: when more than
    `alike_share` of it looks like backdrop, it is not judged and the note says so; on a white,
    grey or textured backdrop, kept backdrop lit unlike the rest departs from the backdrop's
    colour as it did for the matte, and is missed.
    """
    h, w = source_alpha.shape
    s = min(1.0, WORK_SIDE / max(h, w))
    if s < 1.0:
        size = (max(1, round(w * s)), max(1, round(h * s)))
        rgb, alpha = shrink(source_rgb, size), shrink(source_alpha, size)
    else:
        rgb, alpha = source_rgb, source_alpha
    bd = alpha < 8
    prod = (alpha >= VISIBLE_ALPHA).view(np.uint8)
    core = cv2.erode(prod, np.ones((3, 3), np.uint8)).view(bool)
    n_bd, n_prod = cv2.countNonZero(bd.view(np.uint8)), cv2.countNonZero(prod)
    if n_bd < 64 or cv2.countNonZero(core.view(np.uint8)) < 64:
        return [], 0.0, "too little backdrop or product to compare: not judged"
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
    colour, ref = _opponent(colours_at(rgb, ys, xs)), _opponent(local)
    diff = colour - ref
    d_l, d_ab = np.abs(diff[:, 0]), np.hypot(diff[:, 1], diff[:, 2])
    tex = _texture(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32))[ys, xs]
    m = cy.size  # product points first, then the backdrop sample
    tol_l = max(8.0, 1.5 * float(np.percentile(d_l[m:], 90)))
    spread_ab = float(np.percentile(d_ab[m:], 90))
    tol_ab = max(5.0, 1.5 * spread_ab)
    t_lo, t_hi = np.percentile(tex[m:], (10, 90))
    same = (d_l[:m] <= tol_l) & (d_ab[:m] <= tol_ab)
    hue_spread = spread_ab / max(float(np.median(np.hypot(ref[m:, 1], ref[m:, 2]))), 1.0)
    if hue_spread <= PLAIN_HUE_SPREAD:
        # a plain coloured backdrop lit otherwise (a sunlit or shaded patch) keeps its hue, with
        # chroma and lightness within a lighting change
        c, b = colour[:m], ref[:m]
        cc, bc = np.hypot(c[:, 1], c[:, 2]), np.hypot(b[:, 1], b[:, 2])
        cos = (c[:, 1] * b[:, 1] + c[:, 2] * b[:, 2]) / np.maximum(cc * bc, 1e-6)
        same |= (bc >= MIN_BACKDROP_CHROMA) & (cos >= np.cos(np.radians(20))) & (cc >= 0.4 * bc) & (cc <= 1.6 * bc) \
            & (c[:, 0] >= 0.75 * b[:, 0]) & (c[:, 0] <= 1.35 * b[:, 0])
    ok = same & (tex[:m] >= 0.5 * t_lo) & (tex[:m] <= 1.5 * t_hi + 1.0)
    like = np.zeros(alpha.shape, np.uint8)
    like[cy[ok], cx[ok]] = 1
    like = cv2.morphologyEx(like.view(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    share = cv2.countNonZero(like) / n_prod
    if share > cfg.alike_share:
        return [], share, (f"{share:.0%} of the product has the backdrop's colour and texture: "
                           "product and backdrop too alike to judge kept backdrop")
    n, labels = cv2.connectedComponents(like, connectivity=8)
    if n <= 1:
        return [], share, ""
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
    return regions, share, ""


def hue_name(rgb: np.ndarray) -> str:
    """A plain colour name of an sRGB colour's hue (red, orange, ... pink)."""
    hsv = cv2.cvtColor(np.clip(rgb, 0, 255).astype(np.uint8).reshape(1, 1, 3), cv2.COLOR_RGB2HSV_FULL)
    hue = float(hsv[0, 0, 0]) * 360.0 / 256.0
    names = ((15, "red"), (45, "orange"), (70, "yellow"), (160, "green"), (200, "cyan"), (255, "blue"),
             (290, "purple"), (340, "pink"), (360, "red"))
    return next(name for top, name in names if hue < top or top == 360)


def rim_spill(product_rgb: np.ndarray, product_alpha: np.ndarray, outline: Outline, backdrop: np.ndarray,
              cfg: LeftoverOptions) -> tuple[float, int, str, str, str]:
    """Share of the product's outline along which its rim shows the colour of a coloured backdrop:
    (share, judged outline pixels, why not judged or "", the backdrop's colour name, where).

    A red backdrop leaves a red fringe on a white shirt: edge pixels that are part backdrop (a soft
    edge, a learned matte's soft rim) or light bounced off it. The halo check looks for rim pixels
    *in* the old backdrop colour, so a tint (white mixed with some red) passes it. What shows on
    the new scene is each pixel's colour times its alpha: a learned matte (rembg + IS-Net) is soft
    across the edge, its mixed pixels lie on both sides of alpha 128 and the composite shows those
    under 128 too, by their alpha. So each outline pixel (visible, within `EDGE_PX` of the edge) is
    judged across the rim along the outline's normal, from `SPILL_OUT_PX` outside (the matte's faint
    tail) to `spill_width` inside: the chroma gained along the backdrop's hue (opponent axes,
    lightness apart) over the product's own colour, times alpha, summed over the pixels crossed: the
    backdrop's colour the rim shows, in pixels of it. The product's own colour is read 3-5 rim widths
    further in (5x5 means): deep enough that a bleed fading inward tints it little. An outline pixel
    is tinted when its rim shows `spill_tint` pixels' worth of the backdrop chroma the product lacks
    there and at least `spill_chroma` (a tint fainter than that does not show, whatever the hues: a
    pale backdrop's, a cream wall's). A hard edge cut by a soft matte shows about half a pixel of
    backdrop (the matte's faint tail); a 1 px soft edge or a 20% bleed a pixel or more. The share
    is of the outline's length, so a fringe one pixel wide counts along all its length; where the
    product's own colour is within `MIN_HUE_GAP` of the backdrop's chroma along its hue a fringe
    does not show and that part counts as clean, and a product coloured in the backdrop's hue (its
    median `SAME_HUE_DEPTH` rim widths in: a dark red cap shot on red) is not judged; over
    `spill_limit` fails. JPEG chroma smear, the light a coloured floor bounces and a matte's own
    softness tint a good cut-out's rim too (up to 0.4 of the outline on the tuning photos: the
    sneakers' hand mask on red tiles, the shorts' IS-Net cut-out on a cream wall). Judged for a
    coloured backdrop only. Blind spots: a product's own edge in the backdrop's hue (red piping
    shot on red, a red saucer on wood: a fringe along the white cup above it is missed too); a
    faint fringe on a pale backdrop (pale pink) or a dark product; a bleed behind a hard edge on a
    dark product (it reflects little). A matte that keeps a hard edge's anti-aliased pixels opaque,
    or one soft enough to straddle a hard edge, shows the backdrop as a fringe would: caught.
    """
    bd = _opponent(backdrop)[0]
    name = hue_name(np.asarray(backdrop, np.float32))
    bc = float(np.hypot(bd[1], bd[2]))
    if bc < MIN_BACKDROP_CHROMA:
        return 0.0, 0, "the backdrop is not coloured: not judged", name, ""
    roi, local = outline.region(0.0)
    dist_in = outline.dist_in[local]
    width = max(2.0, cfg.spill_width * outline.size)
    rgb = np.ascontiguousarray(product_rgb[roi])  # read at points below: one copy, not one per read
    a_roi = product_alpha[roi]
    edge = cv2.bitwise_and(cv2.inRange(dist_in, 1e-3, EDGE_PX), cv2.compare(a_roi, VISIBLE_ALPHA, cv2.CMP_GE))
    ey, ex = points(edge)
    if ey.size < 20:
        return 0.0, 0, "no product rim", name, ""
    if _has_hue(rgb, dist_in, SAME_HUE_DEPTH * width, bd[1:]):
        return 0.0, 0, "the product has the backdrop's hue: not judged", name, ""
    step = max(1, ey.size // SPILL_POINTS)  # a share: an even sample of the outline measures it
    ey, ex = ey[::step], ex[::step]
    # the outline's normal: the distance map's gradient
    h, w = dist_in.shape
    gy = dist_in[np.minimum(ey + 1, h - 1), ex] - dist_in[np.maximum(ey - 1, 0), ex]
    gx = dist_in[ey, np.minimum(ex + 1, w - 1)] - dist_in[ey, np.maximum(ex - 1, 0)]
    norm = np.maximum(np.hypot(gx, gy), 1e-6)
    ny, nx = gy / norm, gx / norm
    # the product's own colour: 3 to 5 rim widths inward, from the 5x5 mean of the product layer
    mean5 = cv2.blur(rgb, (5, 5))
    inner, n_in = np.zeros((ey.size, 3), np.float32), np.zeros(ey.size, np.float32)
    for depth in SPILL_DEPTHS:
        iy = np.clip(np.rint(ey + ny * depth * width), 0, h - 1).astype(np.intp)
        ix = np.clip(np.rint(ex + nx * depth * width), 0, w - 1).astype(np.intp)
        inside = dist_in[iy, ix] > 2.0 * width
        inner[inside] += colours_at(mean5, iy[inside], ix[inside])
        n_in += inside
    have = n_in > 0
    ey, ex, ny, nx = ey[have], ex[have], ny[have], nx[have]
    # chroma along the backdrop's hue only: a rim that loses its own colour (a navy edge going
    # grey) is not tinted toward an orange backdrop, though grey lies between navy and orange
    unit = bd[1:] / bc
    p_in = np.maximum(_opponent(inner[have] / n_in[have, None])[:, 1:] @ unit, 0.0)
    room = bc - p_in
    ok = room >= MIN_HUE_GAP  # the product's own colour at least this far short of the backdrop's chroma
    judged = int(ok.sum())
    if judged < 20:
        return 0.0, judged, "the product's rim has the backdrop's hue: not judged", name, ""
    # what the rim shows across the outline: chroma gained toward the backdrop's hue times alpha,
    # summed over the pixels the normal crosses
    shown = np.zeros(ey.size, np.float32)
    for t in np.arange(-float(SPILL_OUT_PX), width + 1e-3, 1.0):
        sy = np.clip(np.rint(ey + ny * t), 0, h - 1).astype(np.intp)
        sx = np.clip(np.rint(ex + nx * t), 0, w - 1).astype(np.intp)
        p = np.maximum(_opponent(colours_at(rgb, sy, sx))[:, 1:] @ unit, 0.0)
        shown += (p - p_in) * (a_roi[sy, sx].astype(np.float32) / 255.0)
    tinted = ok & (shown >= cfg.spill_tint * room) & (shown >= cfg.spill_chroma)
    where = _sides(ey, ex, ok, tinted) if tinted.any() else ""
    return float(tinted.sum()) / ey.size, judged, "", name, where


def _has_hue(rgb: np.ndarray, dist_in: np.ndarray, depth: float, chroma: np.ndarray) -> bool:
    """Whether the product (its pixels at least `depth` inside, an even sample) is coloured in the
    backdrop's hue: its median chroma at least `MIN_BACKDROP_CHROMA` along the backdrop's
    (`chroma`, opponent axes) and within 20 degrees of it. A dark red cap shot on red: its rim
    takes more red from the backdrop, which reads as its own colour."""
    ys, xs = points(cv2.compare(dist_in, depth, cv2.CMP_GT))
    if ys.size < 20:
        return False
    step = max(1, ys.size // 4000)
    c = np.median(_opponent(colours_at(rgb, ys[::step], xs[::step]))[:, 1:], axis=0)
    unit = chroma / max(float(np.hypot(*chroma)), 1e-6)
    along, across = float(c @ unit), abs(float(c[0] * unit[1] - c[1] * unit[0]))
    return along >= MIN_BACKDROP_CHROMA and across <= along * np.tan(np.radians(20))


def _sides(ys: np.ndarray, xs: np.ndarray, judged: np.ndarray, tinted: np.ndarray) -> str:
    """Where a tinted rim lies: the sides of the product (seen from its rim's centre) whose judged
    rim is tinted at least half as much as the most tinted side's ("top and left", ...)."""
    angle = np.degrees(np.arctan2(ys - ys[judged].mean(), xs - xs[judged].mean()))  # image y grows down
    sector = np.rint(angle / 90.0).astype(int) % 4  # 0 right, 1 bottom, 2 left, 3 top
    n = np.bincount(sector[judged], minlength=4)
    share = np.bincount(sector[tinted], minlength=4) / np.maximum(n, 1)
    names = ("right", "bottom", "left", "top")
    order = [i for i in (3, 2, 0, 1) if share[i] >= 0.5 * share.max() and n[i] >= 10] or [int(np.argmax(share))]
    said = [names[i] for i in order]
    return " and ".join([", ".join(said[:-1]), said[-1]] if len(said) > 1 else said)


def leftover_checks(found: Leftovers, cfg: LeftoverOptions) -> list[CheckResult]:
    """The three checks of `find_leftovers`: stray parts, kept backdrop, rim spill; each failure sends
    the SKU to review (rejects it with `blocking`), its message saying what and where."""
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
    return [stray, region, spill]
