"""Product fidelity beyond pixel identity: object expansion and background halo.

The composite stage guarantees that the product's own pixels are untouched, but a generator can
still draw "more product" just outside the matte (a longer strap, a taller bottle, a second heel)
and a matte that swallowed a rim of the old backdrop leaves a fringe of its colour around the
product. Both are judged on the final composited image, in canvas space.

Expansion has two detectors:

- `resegment` (used with a learned matte backend): cut the product out of the final image again
  and count what the new cut-out holds beyond the placed product (grown from its outline);
- `heuristic` (no learned matte): in a band around the product, a pixel is "product-like" when its
  colour is much closer to the product's colour near the nearest outline point (at the edge, over
  a wider patch, or one of the main colours of the product's outer zone, held to a stricter
  likeness) than to the scene's local colour (estimated from beyond the band), and that colour
  pair contrasts clearly. A darker copy of the scene colour is a shadow, not product: always
  below the product, elsewhere unless the product's colour is itself such a shadow colour.
  Product-like regions that grow outward from the outline are expansion; the score is how far
  the farthest one reaches past the anti-aliased rim, as a share of the product's size.
  Known blind spots: scenes coloured like the product edge (within `min_contrast`), and grey or
  shadow-coloured extensions straight down into the floor.

`benchmarks/fidelity_eval.py` measures both detectors on extensions built from real photos.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from stages.check import CheckResult
from stages.config import FidelityConfig
from stages.layout import Layout

_K3 = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class Expansion:
    score: float  # farthest reach of grown product beyond the rim, as a share of the product size
    reach_px: float  # how far the largest grown region reaches out of the outline
    regions: int
    method: str
    mask: np.ndarray  # HxW bool: pixels judged to be extra product


def _bbox(alpha: np.ndarray) -> tuple[int, int, int, int]:
    """x, y, w, h of the product's pixels (alpha > 0); w = 0 when there are none."""
    return cv2.boundingRect((alpha > 0).view(np.uint8))


def _product_size(alpha: np.ndarray) -> float:
    _, _, w, h = _bbox(alpha)
    return float(np.sqrt(w * h)) if w else 1.0


def _blur_at(rgb: np.ndarray, weight: np.ndarray, sigma: float, ys: np.ndarray,
             xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian mean of `rgb` (uint8) over the pixels where `weight` (bool) is set, read at the
    points (ys, xs): normalised convolution; returns (N x 3 colours, N supports).

    Wide blurs run at reduced resolution (the means are smooth: an 80 px sigma at 1024 px costs a
    few ms instead of several hundred) and are read bilinearly at the points, never upsampled."""
    factor = int(max(1, min(8, sigma // 3)))
    h, wd = weight.shape
    if factor == 1:  # narrow: in float, where 8-bit rounding would show at weakly supported points
        if ys.size == 0:
            return np.zeros((0, 3), np.float32), np.zeros(0, np.float32)
        # only around the points: OpenCV's kernel for a float blur reaches 4 sigma, so the means
        # read at the points are the same as over the whole image
        r = int(np.ceil(4 * sigma)) + 1
        y0, y1 = max(0, int(ys.min()) - r), min(h, int(ys.max()) + r + 1)
        x0, x1 = max(0, int(xs.min()) - r), min(wd, int(xs.max()) + r + 1)
        box_rgb, box_w = rgb[y0:y1, x0:x1], weight[y0:y1, x0:x1]
        num = cv2.GaussianBlur(box_rgb.astype(np.float32) * box_w[..., None], (0, 0), sigma)[ys - y0, xs - x0]
        den = cv2.GaussianBlur(box_w.astype(np.float32), (0, 0), sigma)[ys - y0, xs - x0]
    else:
        small = (max(1, wd // factor), max(1, h // factor))
        # area means of 0/255 values: the blur that follows averages their rounding away
        mask = weight.view(np.uint8)
        masked = cv2.bitwise_and(rgb, rgb, mask=mask)
        mask255 = mask * np.uint8(255)
        num_s = cv2.resize(masked, small, interpolation=cv2.INTER_AREA).astype(np.float32)
        den_s = cv2.resize(mask255, small, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        num_s = cv2.GaussianBlur(num_s, (0, 0), sigma / factor)
        den_s = cv2.GaussianBlur(den_s, (0, 0), sigma / factor)
        # pixel centres of the full-size grid in the small one (as cv2.resize maps them)
        mx = (xs.astype(np.float32) + 0.5) * (small[0] / wd) - 0.5
        my = (ys.astype(np.float32) + 0.5) * (small[1] / h) - 0.5
        num, den = _sample(num_s, mx, my).reshape(-1, 3), _sample(den_s, mx, my).reshape(-1)
    return num / np.maximum(den, 1e-4)[:, None], den


_ROW = 1024  # cv2.remap maps are at most 32767 wide or high: points go in rows of this many


def _sample(img: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """Bilinear reads of `img` at the points (mx, my), edge pixels repeated beyond the border."""
    n = mx.size
    if n == 0:
        return np.zeros((0, *img.shape[2:]), img.dtype)
    pad = -n % _ROW
    grid = [np.pad(m, (0, pad)).reshape(-1, _ROW) for m in (mx, my)]
    out = cv2.remap(img, grid[0], grid[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(-1, *img.shape[2:])[:n]


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


def _outside_distance(alpha: np.ndarray) -> np.ndarray:
    inside = (alpha > 0).view(np.uint8)
    return cv2.distanceTransform(1 - inside, cv2.DIST_L2, 5)


def expansion_heuristic(final_rgb: np.ndarray, layout: Layout, cfg: FidelityConfig) -> Expansion:
    """Product-coloured regions growing out of the outline into the generated band."""
    size = _product_size(layout.product_alpha)
    band = max(4.0, cfg.band * size)
    rim = max(1.5, cfg.rim * size)  # anti-aliasing and matte softness: never judged
    roi = _roi(layout.product_alpha, 3.0 * band + 2.0)  # all judged and reference pixels lie in here
    exp = _heuristic(final_rgb[roi], layout.product_alpha[roi], layout.product_rgb[roi], size, band, rim, cfg)
    mask = np.zeros(layout.product_alpha.shape, bool)
    mask[roi] = exp.mask
    return replace(exp, mask=mask)


def _roi(alpha: np.ndarray, margin: float) -> tuple[slice, slice]:
    x, y, w, h = _bbox(alpha)
    if not w:
        return slice(0, alpha.shape[0]), slice(0, alpha.shape[1])
    m = int(np.ceil(margin))
    return slice(max(0, y - m), y + h + m), slice(max(0, x - m), x + w + m)


def _heuristic(final_rgb: np.ndarray, alpha: np.ndarray, product_rgb: np.ndarray, size: float, band: float,
               rim: float, cfg: FidelityConfig) -> Expansion:
    dist_out = _outside_distance(alpha)
    inside = alpha > 0
    # colour of the product at the nearest outline point: mean over nearby opaque pixels
    core = alpha >= 128
    edge_sigma = max(1.5, 0.01 * size)
    # labels of the nearest product pixel for every outside pixel
    _, nearest = cv2.distanceTransformWithLabels(
        (~core).view(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    ys, xs = np.nonzero(core)  # the source's zero pixels (the product) are labelled 1.. in scan order
    in_band = (dist_out > rim) & (dist_out <= band)
    if not in_band.any() or xs.size == 0:
        return Expansion(0.0, 0.0, 0, "heuristic", np.zeros_like(inside))
    by, bx = np.nonzero(in_band)
    # the scene's local colour from beyond the band (what the band "should" look like)
    far = (dist_out > band) & (dist_out <= 3.0 * band)
    b, support = _blur_at(final_rgb, far, band, by, bx)
    c = final_rgb[by, bx].astype(np.float32)
    d_bg = _dist(c, b)
    # every judge below needs contrast = |e - b| >= min_contrast and |c - e| <= likeness * |c - b|,
    # so |c - b| >= min_contrast / (1 + likeness): pixels closer to the scene colour are scene
    sel = np.nonzero((support > 1e-3) & (d_bg * (1.0 + cfg.likeness) >= cfg.min_contrast))[0]
    by, bx, b, c, d_bg = by[sel], bx[sel], b[sel], c[sel], d_bg[sel]
    idx = nearest[by, bx] - 1
    py, px = ys[idx], xs[idx]  # the nearest outline point of each judged pixel
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
            judge(_blur_at(product_rgb, core, sigma, py, px)[0], cfg.likeness, 0.5)
        # ...or any of the main colours of the product's outer zone (a strap in the body's colour
        # growing out of a differently coloured button), held to a stricter likeness
        for e in _edge_palette(product_rgb, core, band):
            judge(e, 0.5 * cfg.likeness, 0.35)
    cand = np.zeros(alpha.shape, bool)
    cand[by[like], bx[like]] = True
    cand = cv2.morphologyEx(cand.view(np.uint8), cv2.MORPH_OPEN, _K3).view(bool)
    return _score(cand, dist_out, rim, size, cfg, "heuristic")


PALETTE_SIZE = 4


def _edge_palette(rgb: np.ndarray, core: np.ndarray, band: float) -> np.ndarray:
    """Main colours (k-means) of the product within `band` of its outline; clusters under 10% dropped."""
    dist_in = cv2.distanceTransform(core.view(np.uint8), cv2.DIST_L2, 3)
    zy, zx = np.nonzero(core & (dist_in <= band))
    if len(zy) < 50:
        return np.zeros((0, 3), np.float32)
    step = max(1, len(zy) // 4000)
    zone = rgb[zy[::step], zx[::step]].astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    cv2.setRNGSeed(0)
    _, labels, centres = cv2.kmeans(zone, PALETTE_SIZE, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    share = np.bincount(labels.ravel(), minlength=PALETTE_SIZE) / len(labels)
    return centres[share >= 0.10]


def _score(cand: np.ndarray, dist_out: np.ndarray, rim: float, size: float, cfg: FidelityConfig,
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


def expansion_resegment(final_rgb: np.ndarray, layout: Layout, cfg: FidelityConfig,
                        resegmented_alpha: np.ndarray) -> Expansion:
    """What a fresh cut-out of the final image holds beyond the placed product, grown from its outline."""
    alpha = layout.product_alpha
    size = _product_size(alpha)
    rim = max(1.5, cfg.rim * size)
    dist_out = _outside_distance(alpha)
    extra = (resegmented_alpha >= 128) & (dist_out > rim)
    extra = cv2.morphologyEx(extra.view(np.uint8), cv2.MORPH_OPEN, _K3).view(bool)
    return _score(extra, dist_out, rim, size, cfg, "resegment")


def expansion_check(exp: Expansion, cfg: FidelityConfig) -> CheckResult:
    ok = exp.score <= cfg.expansion_limit
    limit = f"reach <= {cfg.expansion_limit} of the product size"
    msg = (f"no product grown beyond the matte ({exp.method})" if exp.regions == 0 else
           f"{exp.regions} product-like region(s) grown out of the outline ({exp.method}): "
           f"reaching {exp.reach_px:.0f} px ({exp.score:.1%} of the product size) out of the outline")
    if not ok:
        msg = "generator extended the product: " + msg
    return CheckResult("expansion", ok, exp.score, limit, msg, cfg.blocking)


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


def halo(final_rgb: np.ndarray, layout: Layout, backdrop: np.ndarray | None, cfg: FidelityConfig) -> CheckResult:
    """Share of the product's outer rim that shows the old backdrop's colour against the new scene.

    Only rim pixels where a halo would be visible are judged: the old backdrop colour must differ
    from both the product's colour just inside and the new scene's colour just outside.
    """
    limit = f"<= {cfg.halo_limit} of the judged rim"
    if backdrop is None:
        return CheckResult("halo", True, 0.0, limit, "no backdrop colour known: not judged", cfg.blocking)
    size = _product_size(layout.product_alpha)
    width = max(2.0, cfg.halo_width * size)
    roi = _roi(layout.product_alpha, 16.0 * width + 4.0)  # the rim and its reference rings, with blur reach
    alpha, final_rgb = layout.product_alpha[roi], final_rgb[roi]
    inside = alpha >= 128  # the visible silhouette: a soft matte's faint tail is mostly scene
    dist_in = cv2.distanceTransform(inside.view(np.uint8), cv2.DIST_L2, 5)
    dist_out = _outside_distance(alpha)
    rim = inside & (dist_in <= width)
    sigma = max(2.0, width)
    ry, rx = np.nonzero(rim)
    if ry.size == 0:
        return CheckResult("halo", True, 0.0, limit, "no product rim", cfg.blocking)
    ring_in = inside & (dist_in > 2.0 * width) & (dist_in <= 4.0 * width)
    inner, inner_w = _blur_at(final_rgb, ring_in, sigma * 2, ry, rx)
    scene, scene_w = _blur_at(final_rgb, (dist_out > 2.0) & (dist_out <= 4.0 * width), sigma * 2, ry, rx)
    c = final_rgb[ry, rx].astype(np.float32)
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
