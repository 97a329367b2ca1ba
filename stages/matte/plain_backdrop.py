"""`plain-backdrop`: the embedded matte for packshots on white or plain backdrops (no model weights)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from stages.errors import ConfigError
from stages.matte.backdrop import (
    SHADOW_MIN_RATIO, Z_BG, Z_FG, BackdropFit, cast_shadows, gradient, labels, local_means, measure_backdrop, ramp,
)
from stages.matte.attached_shadow import AttachedShadow, attached_shadow
from stages.matte.base import Matte, check_rgb
from stages.matte.cleanup import Reflection, backdrop_pieces, fill_thin_holes, floor_reflection, joined_backdrop
from stages.matte.ragged import Ragged, ragged_edge
from stages.resample import covered, shrink

EDGE_REACH = 2  # the mixed edge zone spans this many soft-edge widths into the product
HALO_SLACK = 0.25  # a halo colour lies within 2x this of |F - B| off the backdrop-product line
HUE_TOL = 0.04  # hue difference (unit-length RGB) within which product and backdrop hues tie
THIN_WEIGHT = 0.02  # weight of thin parts' pixels next to core pixels when sampling product colour
EDGE_BAND = 0.2  # objects within this share of the frame from one side may be clutter
_K3 = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class PlainBackdropOptions:
    """[matte.plain_backdrop]"""

    border_px: int = 6  # width of the border strip that samples the backdrop
    shadows: Literal["remove", "keep"] = "remove"  # cast shadows on the backdrop
    work_pixels: int = 500_000  # larger photos are matted reduced to about this many pixels

    def check(self, where: str) -> None:
        if self.border_px < 1:
            raise ConfigError(f"{where}.border_px = {self.border_px}: must be >= 1")
        if self.work_pixels < 65_536:
            raise ConfigError(f"{where}.work_pixels = {self.work_pixels}: must be >= 65536 (256x256)")


class PlainBackdropMatte:
    """Backdrop-difference matte for packshots on white or plain backdrops: tens of ms per megapixel."""

    name = "plain-backdrop"
    Options = PlainBackdropOptions
    learned = False

    def __init__(self, options: PlainBackdropOptions) -> None:
        self.options = options

    @classmethod
    def load(cls, options: PlainBackdropOptions) -> PlainBackdropMatte:
        return cls(options)  # nothing to load

    def run(self, rgb: np.ndarray) -> Matte:
        alpha, confidence, details = plain_backdrop_matte(check_rgb(rgb), self.options)
        return Matte(alpha, confidence, self.name, details, mixed_edge=not details["kept_shadow_fraction"])


def plain_backdrop_matte(rgb: np.ndarray, options: PlainBackdropOptions) -> tuple[np.ndarray, float, dict[str, Any]]:
    """Alpha (HxW uint8), confidence and diagnostics for a product photographed on a plain backdrop.

    The backdrop is modelled from the frame border as a smooth colour field, so gradients and
    vignetting count as background (`measure_backdrop`). Hysteresis thresholds on the distance to
    it give a trimap, a band at the product's edge gets a linear-mix alpha (wide enough to hand the
    halo of contact shadow around the product back to the backdrop), and a confidence says when
    the photo does not suit the method (textured backdrop, product cut by the frame, weak
    contrast) so the SKU goes to review instead of shipping a bad cut-out.

    A photo larger than `options.work_pixels` is matted reduced to about that many pixels (area
    average, `stages.resample.shrink`) and its alpha resized back (bilinear), with the boxes in
    the reasons in the photo's own pixels: every width the method uses (the soft edge, specks,
    the shadow and reflection tests) is a share of the image size, so a cut-out made reduced is
    as good as one made at full size (at 4 and 12 MP it matches the reference masks better on
    average: benchmarks/matte_eval.py --megapixels), while the
    cost stops growing with the photo (about 1 s for a 4 MP photo at full size on one core). The
    product is shown at most at canvas size (about 1 MP), where the resized soft edge is as wide
    as one made at full size.
    """
    h0, w0 = hc, wc = rgb.shape[:2]
    f = min(1.0, (options.work_pixels / (h0 * w0)) ** 0.5)
    if f < 1.0:
        size = (max(1, round(w0 * f)), max(1, round(h0 * f)))
        hc, wc = covered(rgb.shape, size)  # the last few rows and columns may be left out...
        rgb = shrink(rgb, size)
    h, w = rgb.shape[:2]
    sx, sy = wc / w, hc / h  # photo pixels per matted pixel
    fit = measure_backdrop(rgb, options.border_px)
    # backdrop darkenings never seed the product; with "keep" cast shadows return, translucent
    shadow = cast_shadows(fit.ratio, fit.chroma, fit.lum, fit.sigma_c, fit.z < Z_BG)
    z_eff = np.where(shadow, np.float32(0.0), fit.z)
    speck = max(16, int(h * w * 4e-4))
    band = max(2, round(min(h, w) / 160))  # width of the soft edge, px
    product, strong, texture, clutter = _select_product(z_eff, speck, band, fit.z)
    reflection = floor_reflection(product, fit.planes, fit.backdrop)
    if reflection is not None:
        product[reflection.contact_row:] = False
    product, pieces = backdrop_pieces(product, fit.planes, fit.backdrop, band)
    region, *joined = joined_backdrop(product, fit.planes, fit.backdrop, band)
    product &= ~region
    band_px, band_shadow = attached_shadow(product, fit.ratio, fit.chroma, fit.lum, fit.sigma_c)
    product &= ~band_px  # the bands with a soft far edge
    alpha = _edge_alpha(fit.planes, fit.backdrop, z_eff, product, strong, band, fit.sigma_c)
    fg = alpha > 0.5  # quality measures look at the product itself, kept shadows aside
    ragged = ragged_edge(alpha)
    kept_shadow = 0.0
    if options.shadows == "keep":
        alpha, kept_shadow = _keep_shadows(alpha, shadow, product, fit.ratio)
    alpha8 = np.round(alpha * 255.0).astype(np.uint8)
    confidence, details = _confidence(fg, product, strong, fit, texture, clutter)
    confidence, details = _leftovers(confidence, details, product, pieces, reflection, joined,
                                     band_shadow, ragged, (sx, sy))
    if (h, w) != (h0, w0):  # ...and get the alpha of the last one matted
        alpha8 = cv2.resize(alpha8, (wc, hc), interpolation=cv2.INTER_LINEAR)
        alpha8 = cv2.copyMakeBorder(alpha8, 0, h0 - hc, 0, w0 - wc, cv2.BORDER_REPLICATE)
    spots = ((0, 0), (0, -1), (-1, 0), (-1, -1), (h // 2, w // 2))
    details = {
        # backdrop estimate at the top-left, top-right, bottom-left, bottom-right corners and centre
        "backdrop_rgb": [[round(float(plane[y, x]), 1) for plane in fit.backdrop] for y, x in spots],
        "noise_luminance": round(fit.sigma_l, 2),
        "noise_chroma": round(fit.sigma_c, 2),
        "border_rejected": round(fit.rejected, 4),
        "shadows": options.shadows,
        "shadow_fraction": round(float(shadow.mean()), 4),
        "kept_shadow_fraction": round(kept_shadow, 4),
        "matted_at": [w, h],  # the photo's size, or its reduced size when it had more than work_pixels
        **details,
    }
    return alpha8, confidence, details


def _keep_shadows(alpha: np.ndarray, shadow: np.ndarray, product: np.ndarray,
                  ratio: np.ndarray) -> tuple[np.ndarray, float]:
    """Cast shadows touching the product back in the matte, as translucent as they are dark."""
    n, lab = labels(shadow)
    near = cv2.dilate(product.view(np.uint8), _K3).view(bool)
    cast = np.zeros(n, bool)
    cast[np.unique(lab[near & shadow])] = True
    cast[0] = False
    cast_px = cast[lab]
    dark = np.clip((1.0 - ratio) / (1.0 - SHADOW_MIN_RATIO), 0.0, 1.0)
    return np.where(cast_px, np.maximum(alpha, dark), alpha), float(cast_px.mean())


def _confidence(fg: np.ndarray, product: np.ndarray, strong: np.ndarray, fit: BackdropFit, texture: float,
                clutter: float) -> tuple[float, dict[str, Any]]:
    """How far to trust the cut-out (the product of per-aspect scores, each 1 when clean) and the
    measures behind it, with a reason for every aspect that scores below 0.9."""
    coverage = float(fg.mean())
    touch = float(np.concatenate([fg[0], fg[-1], fg[1:-1, 0], fg[1:-1, -1]]).mean())
    contacts = _thin_contacts(fg)
    outline = fg & ~cv2.erode(fg.view(np.uint8), _K3).view(bool)
    grad = gradient(fit.ratio)
    sub = ~fg[::3, ::3]
    g_noise = float(np.median(grad[::3, ::3][sub])) if sub.any() else 1.0
    g_near = cv2.dilate(grad, _K3)
    support = float((g_near[outline] > 4.0 * g_noise + 0.01).mean()) if outline.any() else 0.0
    faint = float((product & ~strong).sum() / max(1, int(product.sum())))
    sigma_l, sigma_c = fit.sigma_l, fit.sigma_c
    scored = {  # aspect: (score, why it is low)
        "luminance_noise": (ramp(sigma_l, 15.0, 40.0),
                            f"backdrop not plain: brightness varies by {sigma_l:.1f} levels along the border"),
        "chroma_noise": (ramp(sigma_c, 2.5, 8.0),
                         f"backdrop not plain: colour varies by {sigma_c:.1f} levels along the border"),
        "texture": (ramp(texture, 0.03, 0.15), f"backdrop textured: {texture:.1%} of it departs from the border model"),
        "clutter": (1.0 - 0.4 * (1.0 - ramp(clutter, 0.02, 0.15)),
                    f"objects along the frame edge ({clutter:.1%} of the image) were left out"),
        "frame_touch": (ramp(touch, 0.04, 0.40), f"product touches the frame on {touch:.0%} of the border"),
        "thin_contacts": (max(0.3, 1.0 - 0.2 * contacts),
                          f"{contacts} thin structure(s) run into the frame (backdrop lines or a cut-off part)"),
        "coverage": (min(ramp(coverage, 0.03, 0.005), ramp(coverage, 0.80, 0.95)),
                     f"implausible product coverage {coverage:.1%}"),
        "edge_support": (ramp(support, 0.70, 0.30), f"only {support:.0%} of the outline lies on an image edge"),
        "separation": (ramp(faint, 0.20, 0.70), f"weak product/backdrop contrast on {faint:.0%} of the product"),
    }
    scores = {k: s for k, (s, _) in scored.items()}
    return float(np.prod(list(scores.values()))), {
        "texture": round(texture, 4), "clutter": round(clutter, 4), "edge_support": round(support, 4),
        "faint_fraction": round(faint, 4), "border_touch": round(touch, 4), "thin_contacts": contacts,
        "coverage": round(coverage, 4), "scores": {k: round(v, 3) for k, v in scores.items()},
        "reasons": [why for s, why in scored.values() if s < 0.9],
    }


def _leftovers(confidence: float, details: dict[str, Any], product: np.ndarray, pieces: np.ndarray,
               reflection: Reflection | None, joined: list[Any],
               band: AttachedShadow | None, ragged: Ragged,
               scale: tuple[float, float]) -> tuple[float, dict[str, Any]]:
    """Lower the confidence for what was cut away as not product (it may have been product), and
    for a ragged stretch of the outline (an edge torn by a textured backdrop: `ragged_edge`).

    A removed floor reflection always sends the cut-out to review (the contact line is a guess);
    removed pieces of backdrop colour do once they hold about 1% of the cut-out (specks go
    silently; a reason shows from 0.6%), and so does a removed region of backdrop colour joined
    to the product (the reason gives its box). A shadow band joined to the product that was
    cut away lowers it from 2% of the cut-out; one kept (its far edge is sharp: a grey part
    or a shadow?) sends the cut-out to review from 0.2% (the size of a stray part). A ragged
    stretch lowers it from 0.15 of the product's size and sends it to review from 0.25. The
    details' `where` gives the box (photo px) each reason names, for the report to outline.
    `scale`: photo pixels per matted pixel (x, y), for the boxes and rows the details report.
    """
    sx, sy = scale

    def box_(x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
        return round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy)

    if reflection is not None:
        reflection = dataclasses.replace(reflection, contact_row=round(reflection.contact_row * sy))
    if band is not None:
        band = dataclasses.replace(band, box=box_(*band.box))
    scores, reasons = dict(details["scores"]), list(details["reasons"])
    where: dict[str, list[int]] = {}  # aspect: the box (photo px) its reason names
    removed = int(pieces.sum())
    share = removed / max(1, int(product.sum()) + removed)
    scores["backdrop_pieces"] = 0.4 + 0.6 * ramp(share, 0.005, 0.01)
    if scores["backdrop_pieces"] < 0.9:
        n, _, stats, _ = cv2.connectedComponentsWithStats(pieces.view(np.uint8), connectivity=8)
        x, y, x1, y1 = box_(stats[1:, 0].min(), stats[1:, 1].min(), (stats[1:, 0] + stats[1:, 2]).max(),
                            (stats[1:, 1] + stats[1:, 3]).max())
        where["backdrop_pieces"] = [x, y, x1, y1]
        reasons.append(f"{n - 1} detached piece(s) of backdrop colour beside the product ({share:.1%} of the "
                       f"cut-out, within x {x}-{x1}, y {y}-{y1} of the photo) were left out: backdrop paper, "
                       "sheet or product?")
    scores["floor_reflection"] = 1.0 if reflection is None else 0.4
    if reflection is not None:
        reasons.append(f"a faded mirror image of the product's base below row {reflection.contact_row} "
                       f"(a floor reflection, {reflection.share:.1%} of the cut-out) was cut away: check the base")
    joined_share, box = joined
    box = box_(*box) if box is not None else box
    scores["joined_backdrop"] = 0.4 + 0.6 * ramp(joined_share, 0.005, 0.012)
    if scores["joined_backdrop"] < 0.9:
        where["joined_backdrop"] = list(box)
        reasons.append(f"a region of backdrop colour joined to the product ({joined_share:.1%} of the cut-out, "
                       f"within x {box[0]}-{box[2]}, y {box[1]}-{box[3]} of the photo) was cut away: backdrop or "
                       "product?")
    scores["attached_shadow"] = 1.0
    if band is not None:
        x0, y0, x1, y1 = band.box
        if band.cut:
            scores["attached_shadow"] = 0.4 + 0.6 * ramp(band.share, 0.02, 0.04)
            what = "was cut away: check the product's edge there"
        else:
            scores["attached_shadow"] = 0.4 + 0.6 * ramp(band.share, 0.001, 0.002)
            what = "was kept as product (its far edge is sharp): a shadow or a grey part?"
        if scores["attached_shadow"] < 0.9:
            where["attached_shadow"] = list(band.box)
            reasons.append(f"a smooth band of darkened backdrop colour along the outline, like a shadow "
                           f"({band.share:.1%} of the cut-out, within x {x0}-{x1}, y {y0}-{y1} of the photo) {what}")
    scores["ragged_edge"] = 0.4 + 0.6 * ramp(ragged.share, 0.15, 0.25)
    if scores["ragged_edge"] < 0.9 and ragged.box is not None:
        x0, y0, x1, y1 = where["ragged_edge"] = list(box_(*ragged.box))
        reasons.append(f"a ragged stretch of the outline within x {x0}-{x1}, y {y0}-{y1} of the photo (torn pixel "
                       "by pixel, as a textured backdrop tears a cut-out): a torn edge or kept backdrop? check the "
                       "edge there")
    details = {**details, "backdrop_pieces": round(share, 4), "joined_backdrop": round(joined_share, 4),
               "ragged_edge": round(ragged.share, 4),
               "attached_shadow": None if band is None else {**vars(band), "box": list(band.box)},
               "floor_reflection": None if reflection is None else vars(reflection),
               "scores": {k: round(v, 3) for k, v in scores.items()}, "reasons": reasons, "where": where}
    return float(np.prod(list(scores.values()))), details


def _thin_contacts(fg: np.ndarray) -> int:
    """Narrow runs of product on the frame: backdrop lines (grout, bed edges) or a cut-off part."""
    count = 0
    for side in (fg[0], fg[-1], fg[:, 0], fg[:, -1]):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], side.view(np.int8), [0]])))
        runs = edges[1::2] - edges[::2]
        count += int((runs <= max(3, 0.015 * len(side))).sum())
    return count


def _select_product(z_eff: np.ndarray, speck: int, band: int,
                    z: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Hysteresis: faint pixels count only when attached to enough clearly different ones.

    Objects hugging one side of the frame (bed edge, wall, headboard) are dropped as clutter
    unless they are the main object. With nothing clearly different, the largest faint region
    (shadow-like ones included: `z` is the distance before shadows were zeroed) is the product.
    Enclosed gaps as thin as lettering are filled. Returns (product, strong, texture share,
    clutter share).
    """
    h, w = z_eff.shape
    weak, strong = z_eff >= Z_BG, z_eff >= Z_FG
    n, lab, stats, _ = cv2.connectedComponentsWithStats(weak.view(np.uint8), connectivity=8)
    keep = np.bincount(lab[strong], minlength=n) >= speck
    keep[0] = False
    if not keep.any():
        weak, n, lab, stats, keep = _faint_object(z, speck)  # shadow-like darkenings included
    outside = ~keep[lab]
    texture = float((weak & outside).sum() / max(1, int(outside.sum())))
    areas = stats[:, cv2.CC_STAT_AREA] * keep
    main = int(np.argmax(areas))
    clutter = 0
    for i in np.nonzero(keep)[0]:
        x, y, cw, ch = stats[i, :4]
        hugs_side = (y + ch <= EDGE_BAND * h or y >= (1 - EDGE_BAND) * h
                     or x + cw <= EDGE_BAND * w or x >= (1 - EDGE_BAND) * w)
        if i != main and hugs_side and areas[i] < 0.25 * areas[main]:
            keep[i] = False
            clutter += int(areas[i])
    product = keep[lab]
    # thin faint tendrils (fold lines, grout) hang off the product; thin parts that clearly
    # differ from the backdrop (laces, straps, hanger wire) are strong and stay
    size = 2 * ((band + 1) // 2) + 3
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    opened = cv2.morphologyEx(product.view(np.uint8), cv2.MORPH_OPEN, kernel).view(bool)
    product &= opened | strong
    # tiny enclosed gaps (specular highlights) are product; real holes (straps, handles) stay open
    n, lab = labels(~product)
    small = np.bincount(lab.ravel(), minlength=n) < speck
    small[np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))] = False
    product |= small[lab]
    product, _ = fill_thin_holes(product, band)
    return product, strong, texture, clutter / (h * w)


def _faint_object(z: np.ndarray, speck: int):
    """The largest smoothed faint region clear of the frame, for a photo with nothing clearly
    different from the backdrop: a white product on white gives a faint cut-out (which the
    separation score sends to review) rather than an empty one that fails the row. A photo
    with no such region (a blank backdrop) still gives an empty cut-out."""
    h, w = z.shape
    weak = cv2.GaussianBlur(z, (0, 0), 1.5) >= Z_BG
    weak = cv2.morphologyEx(weak.view(np.uint8), cv2.MORPH_OPEN, _K3).view(bool)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(weak.view(np.uint8), connectivity=8)
    x, y, cw, ch, area = (stats[:, i] for i in range(5))
    inside = (x > 0) & (y > 0) & (x + cw < w) & (y + ch < h) & (area >= 4 * speck)
    inside[0] = False
    keep = np.zeros(n, bool)
    if inside.any():
        keep[int(np.argmax(np.where(inside, area, 0)))] = True
    return weak, n, lab, stats, keep


def _edge_alpha(planes, bg, z_eff, product, strong, band, sigma_c) -> np.ndarray:
    """Alpha in [0,1]: 1 in the core, a linear mix of local product and backdrop colours at the edge.

    The mixed zone reaches EDGE_REACH soft-edge widths into the product: the hysteresis region
    tends to swallow the halo a product leaves on the backdrop (contact shadow, lens blur), which
    is backdrop-coloured and so mixes out. Product colours come from the core beyond that zone,
    or for thin parts without a core from their clearly-different pixels.
    """
    reach = EDGE_REACH * band + 1
    inside = cv2.distanceTransform(product.view(np.uint8), cv2.DIST_L2, 3)
    core = inside > reach
    alpha = core.astype(np.float32)
    edge = product & ~core
    flat = np.flatnonzero(edge)
    if not len(flat):
        return alpha
    width = edge.shape[1]
    ys, xs = np.divmod(flat, width)
    k = 2 * reach + 3
    y0, y1 = max(0, int(ys[0]) - k), min(edge.shape[0], int(ys[-1]) + k + 1)
    x0, x1 = max(0, int(xs.min()) - k), min(width, int(xs.max()) + k + 1)
    roi = (slice(y0, y1), slice(x0, x1))
    ry, rx = ys - y0, xs - x0
    crop = [plane[roi] for plane in planes]
    # core pixels outweigh the rest; thin parts fall back on their eroded strong pixels
    thin = cv2.erode(strong.view(np.uint8), _K3).view(bool) & product & (inside > band)
    weight = core[roi] + np.float32(THIN_WEIGHT) * thin[roi]
    f, fw = local_means(crop, weight, k, ry, rx)
    b_local, bw = local_means(crop, ~product[roi], k, ry, rx)
    at = lambda a: a.ravel().take(flat)  # noqa: E731
    p = np.stack([at(plane) for plane in planes], axis=1)
    model = np.stack([at(plane) for plane in bg], axis=1)
    bk = np.where((bw > 0.5)[:, None], b_local, model)
    fb = f - bk
    fb2 = np.einsum("ij,ij->i", fb, fb)
    mix = np.einsum("ij,ij->i", p - bk, fb) / np.maximum(fb2, 1e-6)
    ramp = (at(z_eff) - Z_BG) / (Z_FG - Z_BG)
    # the mix is trusted where a product colour is nearby and clearly differs from the backdrop
    reliable = (fw > 0.5 * THIN_WEIGHT) & (fb2 >= (2 * Z_FG * sigma_c) ** 2)
    value = np.clip((np.where(reliable, mix, ramp) - 0.03) / 0.9, 0.0, 1.0)
    # deeper than `band` px alpha may only drop for a halo: a colour on the line between
    # the local backdrop and product colours (not a darker seam or a lit rim, which lie off it)
    # with the backdrop's hue rather than the product's (a shaded product rim keeps its own)
    deep = at(inside) > band
    i = np.flatnonzero(deep & reliable & (mix > -HALO_SLACK))
    d = p[i] - bk[i]
    off_line = np.einsum("ij,ij->i", d, d) - mix[i] * mix[i] * fb2[i]
    hue = lambda c: c / np.maximum(np.sqrt(np.einsum("ij,ij->i", c, c)), 1.0)[:, None]  # noqa: E731
    hp, hf, hb = hue(p[i]), hue(f[i]), hue(bk[i])
    to_f, to_b = (np.einsum("ij,ij->i", e, e) for e in (hp - hf, hp - hb))
    halo = (off_line <= (2 * HALO_SLACK) ** 2 * fb2[i]) & (to_b <= to_f + HUE_TOL * HUE_TOL)
    value[deep] = 1.0
    value[i[halo]] = np.clip((mix[i[halo]] - 0.03) / 0.9, 0.0, 1.0)
    alpha.ravel()[flat] = value
    return alpha
