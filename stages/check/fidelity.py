"""Product fidelity beyond pixel identity: object expansion and the old backdrop's halo (the cut-out's
leftovers are in `stages.check.leftovers`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import cv2
import numpy as np

from stages.check import CheckResult
from stages.check.hangers import HangerOptions
from stages.check.leftovers import LeftoverOptions
from stages.check.outline import (
    VISIBLE_ALPHA,
    Box,
    Outline,
    blur_at,
    colours_at,
    grown_box,
    measure,
    outside_distance,
    product_size,
)

from stages.errors import ConfigError
from stages.layout import Layout
from stages.masks import points

_K3 = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class FidelityOptions:
    """[fidelity]: object expansion and halo; sizes are shares of the product's size (sqrt of its box area)."""

    expansion: Literal["auto", "heuristic", "resegment", "off"] = "auto"  # auto: resegment with a learned matte
    band: float = 0.08  # width of the band judged around the product
    rim: float = 0.004  # anti-aliased rim next to the outline, never judged
    min_area: float = 0.0002  # a grown region smaller than this share of size^2 is noise
    likeness: float = 0.7  # product-like: distance to the edge colour <= likeness x distance to the scene
    min_contrast: float = 32.0  # RGB distance below which two colours cannot be told apart
    expansion_limit: float = 0.01  # farthest reach of grown product beyond the rim, share of the product size
    halo_width: float = 0.006  # rim judged for a backdrop fringe
    halo_limit: float = 0.3  # share of judged rim pixels in the old backdrop colour
    blocking: bool = False  # false: a failed check sends the image to review; true: rejects it
    review_quality: float = 0.5  # a selected variant scoring below this goes to review
    leftovers: LeftoverOptions = field(default_factory=LeftoverOptions)  # stray parts, kept backdrop, rim spill
    hangers: HangerOptions = field(default_factory=HangerOptions)  # a hanger's hook or bar left on a garment

    def check(self, where: str) -> None:
        for name in ("band", "rim", "min_area", "halo_width"):
            if not 0 <= getattr(self, name) <= 0.5:
                raise ConfigError(f"{where}.{name} = {getattr(self, name)}: must be 0..0.5")
        if not self.rim < self.band:
            raise ConfigError(f"{where}.rim = {self.rim}: must be below {where}.band = {self.band}")
        if not 0 < self.likeness <= 1:
            raise ConfigError(f"{where}.likeness = {self.likeness}: must be in (0, 1]")
        if not 0 <= self.min_contrast <= 442:
            raise ConfigError(f"{where}.min_contrast = {self.min_contrast}: must be 0..442")
        for name in ("expansion_limit", "halo_limit", "review_quality"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{where}.{name} = {getattr(self, name)}: must be 0..1")


@dataclass(frozen=True)
class Expansion:
    score: float  # farthest reach of grown product beyond the rim, as a share of the product size
    reach_px: float  # how far the largest grown region reaches out of the outline
    regions: int
    method: str
    mask: np.ndarray  # HxW bool: pixels judged to be extra product


def _grown(candidates: np.ndarray, dist_out: np.ndarray, touch_px: float) -> tuple[np.ndarray, list[tuple[int, float]]]:
    """Connected candidate regions that start at the outline; returns their mask and (area, reach)."""
    mask = np.zeros_like(candidates)
    x, y, w, h = cv2.boundingRect(candidates.view(np.uint8))  # labelled only where there are any
    if not w:
        return mask, []
    box = slice(y, y + h), slice(x, x + w)
    cand, dist = candidates[box], dist_out[box]
    n, labels, stats, _ = cv2.connectedComponentsWithStats(cand.view(np.uint8), connectivity=8)
    lab, d = labels[cand], dist[cand]
    mins = np.full(n, np.inf, np.float32)
    reach = np.zeros(n, np.float32)
    np.minimum.at(mins, lab, d)
    np.maximum.at(reach, lab, d)
    keep = mins <= touch_px
    keep[0] = False
    mask[box] = keep[labels]
    found = [(int(stats[i, cv2.CC_STAT_AREA]), float(reach[i])) for i in np.nonzero(keep)[0]]
    return mask, found


SHADOW_RATIO = (0.3, 1.05)  # brightness range of a cast or contact shadow relative to the scene


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean RGB distance per row (b may be one colour)."""
    d = a - b
    return np.sqrt(np.einsum("ij,ij->i", d, d) if d.ndim == 2 else (d * d).sum(-1))


def _shadow_of(c: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Colours (N x 3) that are the scene colour `b` scaled darker: same chromaticity, lower level."""
    bb = np.maximum((b * b).sum(axis=1), 1.0)
    k = (c * b).sum(axis=1) / bb
    resid = np.linalg.norm(c - k[:, None] * b, axis=1)
    return (k >= SHADOW_RATIO[0]) & (k <= SHADOW_RATIO[1]) & (resid <= 0.05 * k * np.sqrt(bb) + 4.0)


def _band(size: float, cfg: FidelityOptions) -> tuple[float, float]:
    """(band, rim) widths in pixels: the band judged for extra product, the rim never judged."""
    return max(4.0, cfg.band * size), max(1.5, cfg.rim * size)


def _halo_width(size: float, cfg: FidelityOptions) -> float:
    return max(2.0, cfg.halo_width * size)


def _expansion_margin(size: float, cfg: FidelityOptions) -> float:
    return 3.0 * _band(size, cfg)[0] + 2.0  # all judged and reference pixels lie in here


def _halo_margin(size: float, cfg: FidelityOptions) -> float:
    return 16.0 * _halo_width(size, cfg) + 4.0  # the rim and its reference rings, with blur reach


def measure_outline(layout: Layout, cfg: FidelityOptions) -> Outline:
    """The product's distance maps for both checks: measure once, pass to `expansion_heuristic` and `halo`."""
    size = product_size(layout.product_alpha)
    return measure(layout.product_alpha, max(_expansion_margin(size, cfg), _halo_margin(size, cfg)))


def expansion_heuristic(final_rgb: np.ndarray, layout: Layout, cfg: FidelityOptions,
                        outline: Outline | None = None) -> Expansion:
    """Product-coloured regions growing out of the outline into the generated band.

    Generators like to draw "more product" just outside the mask (a longer strap, a taller
    bottle, a second heel). In a band around the product, a pixel is "product-like" when its
    colour is much closer to the product's colour near the nearest outline point (at the edge,
    over a wider patch, or one of the main colours of the product's outer zone, held to a
    stricter likeness) than to the scene's local colour (estimated from beyond the band), and
    that colour pair contrasts clearly. A darker copy of the scene colour is a shadow, not
    product: always below the product, elsewhere unless the product's colour is itself such a
    shadow colour. Product-like regions that grow outward from the outline are expansion; the
    score is how far the farthest one reaches past the anti-aliased rim, as a share of the
    product's size. Known blind spots: scenes coloured like the product edge (within
    `min_contrast`), and grey or shadow-coloured extensions straight down into the floor.
    `benchmarks/fidelity_eval.py` measures it.
    """
    outline = outline or measure_outline(layout, cfg)
    size = outline.size
    band, rim = _band(size, cfg)
    roi, local = outline.region(_expansion_margin(size, cfg))
    x, y, w, h = outline.box
    box = (x - roi[1].start, y - roi[0].start, w, h)  # in the region's pixels
    exp = _heuristic(final_rgb[roi], layout.product_alpha[roi], layout.product_rgb[roi], box,
                     outline.dist_out[local], outline.dist_in[local], size, band, rim, cfg)
    mask = np.zeros(layout.product_alpha.shape, bool)
    mask[roi] = exp.mask
    return replace(exp, mask=mask)


def _heuristic(final_rgb: np.ndarray, alpha: np.ndarray, product_rgb: np.ndarray, box: Box, dist_out: np.ndarray,
               dist_in: np.ndarray, size: float, band: float, rim: float, cfg: FidelityOptions) -> Expansion:
    # colour of the product at the nearest outline point: mean over nearby opaque pixels
    core = alpha >= VISIBLE_ALPHA
    edge_sigma = max(1.5, 0.01 * size)
    # every band pixel and its nearest product pixel lie within `band` of the product's box:
    # the labels are needed only there (the same as over the whole region)
    near = grown_box(box, 1.05 * band + 2.0, alpha.shape)  # the chamfer distance errs by up to ~2%
    by, bx = points((dist_out[near] > rim) & (dist_out[near] <= band))
    if not box[2] or by.size == 0 or not core.any():
        return Expansion(0.0, 0.0, 0, "heuristic", np.zeros(alpha.shape, bool))
    # labels of the nearest product pixel for every outside pixel
    _, nearest = cv2.distanceTransformWithLabels(
        (~core[near]).view(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    ys, xs = points(core[near])  # the source's zero pixels (the product) are labelled 1.. in scan order
    idx = nearest[by, bx] - 1
    oy, ox = near[0].start, near[1].start
    by, bx, ys, xs = by + oy, bx + ox, ys + oy, xs + ox
    # the scene's local colour from beyond the band (what the band "should" look like)
    far = (dist_out > band) & (dist_out <= 3.0 * band)
    b, support = blur_at(final_rgb, far, band, by, bx)
    c = colours_at(final_rgb, by, bx)
    d_bg = _dist(c, b)
    # every judge below needs contrast = |e - b| >= min_contrast and |c - e| <= likeness * |c - b|,
    # so |c - b| >= min_contrast / (1 + likeness): pixels closer to the scene colour are scene
    sel = np.nonzero((support > 1e-3) & (d_bg * (1.0 + cfg.likeness) >= cfg.min_contrast))[0]
    by, bx, b, c, d_bg = by[sel], bx[sel], b[sel], c[sel], d_bg[sel]
    py, px = ys[idx[sel]], xs[idx[sel]]  # the nearest outline point of each judged pixel
    # shadows fall below the product (light from above): there a dark rim kept by the matte
    # looks like a shadow, and grey extensions straight down into the floor are not judged
    below = (by - py) >= 0.5 * dist_out[by, bx]
    like = np.zeros(len(by), bool)

    def judge(e: np.ndarray, likeness: float, share: float) -> None:
        d_prod, contrast = _dist(c, e), _dist(e, b)
        ok = (contrast >= cfg.min_contrast) & (d_prod <= likeness * d_bg) & (d_prod <= share * contrast)
        i = np.nonzero(ok & ~like)[0]
        if i.size:  # a shadow (the scene's colour, darker) explains a pixel unless the product's would be too
            e_i = e[i] if e.ndim == 2 else np.broadcast_to(e, (i.size, 3))
            like[i] = ~(_shadow_of(c[i], b[i]) & (below[i] | ~_shadow_of(e_i, b[i])))

    if by.size:
        # product colour near the nearest outline point, at the edge itself and over a wider patch
        # (an extension may continue the edge colour or repeat the product's texture)
        for sigma in (edge_sigma, 0.5 * band):
            judge(blur_at(product_rgb, core, sigma, py, px)[0], cfg.likeness, 0.5)
        # ...or any of the main colours of the product's outer zone (a strap in the body's colour
        # growing out of a differently coloured button), held to a stricter likeness
        for e in _edge_palette(product_rgb, core, dist_in, band):
            judge(e, 0.5 * cfg.likeness, 0.35)
    cand = np.zeros(alpha.shape, bool)
    cand[by[like], bx[like]] = True
    cand = cv2.morphologyEx(cand.view(np.uint8), cv2.MORPH_OPEN, _K3).view(bool)
    return _score(cand, dist_out, rim, size, cfg, "heuristic")


PALETTE_SIZE = 4


def _edge_palette(rgb: np.ndarray, core: np.ndarray, dist_in: np.ndarray, band: float) -> np.ndarray:
    """Main colours (k-means) of the product within `band` of its outline; clusters under 10% dropped."""
    zy, zx = points(core & (dist_in <= band))
    if len(zy) < 50:
        return np.zeros((0, 3), np.float32)
    step = max(1, len(zy) // 4000)
    zone = rgb[zy[::step], zx[::step]].astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    cv2.setRNGSeed(0)
    _, labels, centres = cv2.kmeans(zone, PALETTE_SIZE, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    share = np.bincount(labels.ravel(), minlength=PALETTE_SIZE) / len(labels)
    return centres[share >= 0.10]


def _score(cand: np.ndarray, dist_out: np.ndarray, rim: float, size: float, cfg: FidelityOptions,
           method: str) -> Expansion:
    """Expansion = the farthest reach (beyond the rim, as a share of the product size) of a region
    that grows out of the outline and is big enough not to be noise."""
    mask, found = _grown(cand, dist_out, rim + 2.0)
    min_area = max(6.0, cfg.min_area * size * size)
    grown = [(a, r) for a, r in found if a >= min_area]
    reach = max((r for _, r in grown), default=0.0)
    score = max(0.0, reach - rim) / size if grown else 0.0
    if not grown:
        mask = np.zeros_like(mask)
    return Expansion(round(score, 5), round(reach, 2), len(grown), method, mask)


def expansion_resegment(final_rgb: np.ndarray, layout: Layout, cfg: FidelityOptions,
                        resegmented_alpha: np.ndarray) -> Expansion:
    """What a fresh cut-out of the final image (by a learned matte backend) holds beyond the placed
    product, grown from its outline."""
    alpha = layout.product_alpha
    size = product_size(alpha)
    rim = _band(size, cfg)[1]
    dist_out = outside_distance(alpha)
    extra = (resegmented_alpha >= 128) & (dist_out > rim)
    extra = cv2.morphologyEx(extra.view(np.uint8), cv2.MORPH_OPEN, _K3).view(bool)
    return _score(extra, dist_out, rim, size, cfg, "resegment")


def expansion_check(exp: Expansion, cfg: FidelityOptions) -> CheckResult:
    ok = exp.score <= cfg.expansion_limit
    limit = f"reach <= {cfg.expansion_limit} of the product size"
    msg = (f"no product grown beyond the matte ({exp.method})" if exp.regions == 0 else
           f"{exp.regions} product-like region(s) grown out of the outline ({exp.method}): "
           f"reaching {exp.reach_px:.0f} px ({exp.score:.1%} of the product size) out of the outline")
    if not ok:
        msg = "generator extended the product: " + msg
    return CheckResult("expansion", ok, exp.score, limit, msg, cfg.blocking)


def expansion_not_judged(cfg: FidelityOptions) -> CheckResult:
    """The expansion check of a scene no trained model drew (see `ContentChecks.run`): passed, saying why."""
    return CheckResult("expansion", True, 0.0, f"reach <= {cfg.expansion_limit} of the product size",
                       "not judged: the scene was not drawn by a trained model (a procedural or flat backdrop "
                       "draws no product)", cfg.blocking)


def backdrop_colour(source_rgb: np.ndarray, matte_alpha: np.ndarray, details: dict[str, Any]) -> np.ndarray | None:
    """The source photo's backdrop colour: the studio matte's own estimate, else the border median."""
    est = details.get("backdrop_rgb") if isinstance(details, dict) else None
    if est:
        return np.median(np.asarray(est, np.float32), axis=0)
    h, w = matte_alpha.shape
    border = np.zeros((h, w), bool)
    b = max(2, min(h, w) // 50)
    border[:b], border[-b:], border[:, :b], border[:, -b:] = True, True, True, True
    bg = border & (matte_alpha < 8)
    if bg.sum() < 16:
        return None
    return np.median(source_rgb[bg].astype(np.float32), axis=0)


def halo(final_rgb: np.ndarray, layout: Layout, backdrop: np.ndarray | None, cfg: FidelityOptions,
         outline: Outline | None = None) -> CheckResult:
    """Share of the product's outer rim that shows the old backdrop's colour against the new scene.

    Only rim pixels where a halo would be visible are judged: the old backdrop colour must differ
    from both the product's colour just inside and the new scene's colour just outside.
    """
    limit = f"<= {cfg.halo_limit} of the judged rim"
    if backdrop is None:
        return CheckResult("halo", True, 0.0, limit, "no backdrop colour known: not judged", cfg.blocking)
    outline = outline or measure_outline(layout, cfg)
    width = _halo_width(outline.size, cfg)
    roi, local = outline.region(_halo_margin(outline.size, cfg))
    final_rgb = final_rgb[roi]
    dist_in, dist_out = outline.dist_in[local], outline.dist_out[local]
    inside = dist_in > 0  # the visible silhouette (alpha >= 128)
    rim = inside & (dist_in <= width)
    sigma = max(2.0, width)
    ry, rx = points(rim)
    if ry.size == 0:
        return CheckResult("halo", True, 0.0, limit, "no product rim", cfg.blocking)
    ring_in = inside & (dist_in > 2.0 * width) & (dist_in <= 4.0 * width)
    inner, inner_w = blur_at(final_rgb, ring_in, sigma * 2, ry, rx)
    scene, scene_w = blur_at(final_rgb, (dist_out > 2.0) & (dist_out <= 4.0 * width), sigma * 2, ry, rx)
    c = colours_at(final_rgb, ry, rx)
    bd = backdrop[None, :]
    visible = (np.linalg.norm(bd - scene, axis=1) >= cfg.min_contrast) \
        & (np.linalg.norm(bd - inner, axis=1) >= cfg.min_contrast) \
        & (inner_w > 1e-3) & (scene_w > 1e-3)
    judged = int(visible.sum())
    if judged < 20:
        return CheckResult("halo", True, 0.0, limit,
                           "product, old backdrop and scene too alike along the rim: not judged", cfg.blocking)
    d_bd = np.linalg.norm(c - bd, axis=1)
    fringe = visible & (d_bd < 0.5 * np.linalg.norm(c - inner, axis=1)) \
        & (d_bd < 0.5 * np.linalg.norm(c - scene, axis=1))
    share = float(fringe.sum()) / judged
    ok = share <= cfg.halo_limit
    msg = (f"{share:.0%} of {judged} judged rim pixels show the old backdrop colour "
           f"({', '.join(str(int(v)) for v in backdrop)})")
    return CheckResult("halo", ok, round(share, 4), limit, ("old backdrop fringe: " if not ok else "") + msg,
                       cfg.blocking)
