"""Embedded matte for packshots on plain backdrops: no model weights, tens of ms per megapixel.

The backdrop is modelled from the frame border as a smooth colour field, so gradients and
vignetting count as background. Each pixel's difference to that field is split into a luminance
part (shading, wrinkles and shadows live there) and a chroma part (usually far quieter), each
scaled by the border's own noise. Hysteresis thresholds give a trimap, a band at the
product's edge gets a linear-mix alpha (wide enough to hand the halo of contact shadow around
the product back to the backdrop), and a confidence says when the photo does not suit the
method (textured backdrop, product cut by the frame, weak contrast) so the SKU goes to review
instead of shipping a bad cut-out.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from stages.config import StudioMatteConfig

Z_BG, Z_FG = 4.5, 11.0  # noise-normalised distance: below is backdrop, above is surely product
FLOOR_L, FLOOR_C = 3.0, 1.5  # noise floors in levels: clipped white shows no noise at all
SHADOW_MIN_RATIO = 0.45  # darkest a cast shadow gets, as a share of the backdrop's luminance
SHADOW_MAX_GRADIENT = 0.03  # per px, relative: penumbrae are soft, product edges are not
SHADOW_MAX_STEEPNESS = 0.15  # per px, as a share of the local darkening: a penumbra spans > ~5 px
SHADOW_TINT = 0.20  # chroma shift a shadow may carry, as a share of its luminance drop
SHADOW_RING_BG = 0.25  # share of a shadow's outline that must fade into the backdrop
EDGE_REACH = 2  # the mixed edge zone spans this many soft-edge widths into the product
HALO_SLACK = 0.25  # a halo colour lies within 2x this of |F - B| off the backdrop-product line
HUE_TOL = 0.04  # hue difference (unit-length RGB) within which product and backdrop hues tie
THIN_WEIGHT = 0.02  # weight of thin parts' pixels next to core pixels when sampling product colour
EDGE_BAND = 0.2  # objects within this share of the frame from one side may be clutter
MAX_FIT_SAMPLES = 8_000
_K3 = np.ones((3, 3), np.uint8)


def _design(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)


def _border_samples(img: np.ndarray, b: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape[:2]
    mask = np.zeros((h, w), bool)
    mask[:b], mask[-b:], mask[:, :b], mask[:, -b:] = True, True, True, True
    ys, xs = np.nonzero(mask)
    step = max(1, len(ys) // MAX_FIT_SAMPLES)
    ys, xs = ys[::step], xs[::step]
    design = _design(xs * (2.0 / max(w - 1, 1)) - 1.0, ys * (2.0 / max(h - 1, 1)) - 1.0)
    return img[ys, xs].astype(np.float64), design


def _split(e: list[np.ndarray], bg: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residual along the backdrop colour (signed luminance change), across it (chroma), |bg|.

    Channels come as separate planes: per-plane arithmetic is several times faster than
    reductions over an interleaved last axis.
    """
    bnorm = np.sqrt(bg[0] * bg[0] + bg[1] * bg[1] + bg[2] * bg[2])
    np.maximum(bnorm, 1.0, out=bnorm)
    lum = (e[0] * bg[0] + e[1] * bg[1] + e[2] * bg[2]) / bnorm
    chroma = e[0] * e[0] + e[1] * e[1] + e[2] * e[2] - lum * lum
    np.sqrt(np.maximum(chroma, 0.0, out=chroma), out=chroma)
    return lum, chroma, bnorm


def fit_backdrop(img: np.ndarray, b: int) -> tuple[np.ndarray, float, float, float]:
    """Robust quadratic colour field over the border strip.

    Refits on the border pixels that agree with the current model, so a product touching the
    frame does not drag the estimate. Returns (coefficients 6x3, luminance noise, chroma noise,
    share of border samples rejected), noise in 8-bit levels.
    """
    cols, a = _border_samples(img, b)
    coef = np.zeros((6, 3))
    coef[0] = np.median(cols, axis=0)
    keep = np.ones(len(cols), bool)
    for k in (5.0, 4.0, 3.5, 3.5):
        res = np.linalg.norm(cols - a @ coef, axis=1)
        keep = res < k * max(float(np.median(res[keep] if keep.any() else res)), 1.5) + 2.0
        if keep.sum() < 12:
            return coef, 255.0, 255.0, 1.0
        ak = a[keep]  # least squares through its 6x6 normal equations (min-norm where rank-deficient)
        coef, *_ = np.linalg.lstsq(ak.T @ ak, ak.T @ cols[keep], rcond=None)
    model = a[keep] @ coef
    lum, chroma, _ = _split(list((cols[keep] - model).T), list(model.T))
    sigma_l = max(float(np.median(np.abs(lum))) / 0.6745, FLOOR_L)
    sigma_c = max(float(np.median(chroma)) / 1.1774, FLOOR_C)  # Rayleigh median
    return coef, sigma_l, sigma_c, float(1.0 - keep.mean())


def render_backdrop(coef: np.ndarray, h: int, w: int) -> list[np.ndarray]:
    """The fitted backdrop as three float32 planes."""
    x = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    y = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
    planes = []
    for ch in range(3):
        a0, ax, ay, axx, axy, ayy = coef[:, ch].astype(np.float32)
        planes.append((a0 + ay * y + ayy * y * y) + (ax + axy * y) * x + axx * x * x)
    return planes


def _labels(mask: np.ndarray) -> tuple[int, np.ndarray]:
    return cv2.connectedComponents(mask.view(np.uint8), connectivity=8)


def _gradient(plane: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Gradient magnitude per pixel after a light blur; with `mask`, only masked pixels are
    averaged (normalised convolution), so a dark product does not bleed into its own shadow."""
    if mask is None:
        smooth = cv2.GaussianBlur(plane, (0, 0), 1.2)
    else:
        m = mask.astype(np.float32)
        smooth = cv2.GaussianBlur(plane * m, (0, 0), 1.2) / np.maximum(cv2.GaussianBlur(m, (0, 0), 1.2), 1e-3)
    return cv2.magnitude(cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1)) / 8.0


def _cast_shadows(ratio, chroma, lum, sigma_c, is_bg) -> np.ndarray:
    """Darkenings of the backdrop: near-backdrop chroma, soft gradient, fading into the backdrop.

    A grey product panel can be as dark and neutral as a shadow; what tells them apart is that
    a shadow's outline melts into the backdrop while an object's outline is a sharp edge.
    """
    tol = Z_BG * sigma_c - SHADOW_TINT * lum
    tone = (ratio >= SHADOW_MIN_RATIO) & (ratio <= 1.0) & (chroma <= tol)
    # a faint step is still an object edge if it is sharp: compare slope with local depth
    depth = cv2.dilate(np.where(tone, 1.0 - ratio, 0.0).astype(np.float32), np.ones((9, 9), np.uint8))
    limit = np.clip(SHADOW_MAX_STEEPNESS * depth, 0.006, SHADOW_MAX_GRADIENT)
    sharp = (_gradient(ratio, tone | is_bg) >= limit).view(np.uint8)
    like = tone & ~cv2.dilate(sharp, _K3).view(bool)
    like = cv2.morphologyEx(like.view(np.uint8), cv2.MORPH_CLOSE, _K3).view(bool) & ~is_bg
    n, lab = _labels(like)
    if n <= 1:
        return like
    grown = cv2.dilate(lab.astype(np.float32), _K3).astype(np.int32)
    ring = np.where(like, 0, grown)  # outside pixels tagged with the shadow they border
    ring_all = np.bincount(ring.ravel(), minlength=n)
    ring_bg = np.bincount(ring[is_bg], minlength=n)
    fades = ring_bg >= SHADOW_RING_BG * np.maximum(ring_all, 1)
    fades[0] = False
    return fades[lab]


def _local_means(planes, mask, k, ys, xs) -> tuple[np.ndarray, np.ndarray]:
    """Mean colour of the `mask` pixels in a k x k window around each (ys, xs), and their count
    (a float mask weighs pixels). Wide windows are summed at half resolution: the means are
    smooth, and it halves the cost."""
    m = mask.astype(np.float32, copy=False)
    layers = [m] + [plane * m for plane in planes]
    scale = 1.0
    if k >= 9 and min(m.shape) >= 2:
        h, w = m.shape[0] // 2, m.shape[1] // 2  # an exact 2x2 average; an odd last row/column drops
        layers = [cv2.resize(a[: 2 * h, : 2 * w], (w, h), interpolation=cv2.INTER_AREA) for a in layers]
        k, ys, xs, scale = k // 2 | 1, np.minimum(ys // 2, h - 1), np.minimum(xs // 2, w - 1), 4.0
    flat = ys * layers[0].shape[1] + xs
    count, *sums = [cv2.boxFilter(a, -1, (k, k), normalize=False).ravel().take(flat) for a in layers]
    return np.stack(sums, axis=1) / np.maximum(count, 1e-6)[:, None], count * scale


def _ramp(v: float, good: float, bad: float) -> float:
    """1 at `good`, 0 at `bad`, linear between (either direction)."""
    return float(np.clip((bad - v) / (bad - good), 0.0, 1.0))


def _thin_contacts(fg: np.ndarray) -> int:
    """Narrow runs of product on the frame: backdrop lines (grout, bed edges) or a cut-off part."""
    count = 0
    for side in (fg[0], fg[-1], fg[:, 0], fg[:, -1]):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], side.view(np.int8), [0]])))
        runs = edges[1::2] - edges[::2]
        count += int((runs <= max(3, 0.015 * len(side))).sum())
    return count


def _select_product(z_eff: np.ndarray, speck: int, band: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Hysteresis: faint pixels count only when attached to enough clearly different ones.

    Objects hugging one side of the frame (bed edge, wall, headboard) are dropped as clutter
    unless they are the main object. Returns (product, strong, texture share, clutter share).
    """
    h, w = z_eff.shape
    weak, strong = z_eff >= Z_BG, z_eff >= Z_FG
    n, lab, stats, _ = cv2.connectedComponentsWithStats(weak.view(np.uint8), connectivity=8)
    keep = np.bincount(lab[strong], minlength=n) >= speck
    keep[0] = False
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
    n, lab = _labels(~product)
    small = np.bincount(lab.ravel(), minlength=n) < speck
    small[np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))] = False
    product |= small[lab]
    return product, strong, texture, clutter / (h * w)


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
    f, fw = _local_means(crop, weight, k, ry, rx)
    b_local, bw = _local_means(crop, ~product[roi], k, ry, rx)
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


def studio_matte(rgb: np.ndarray, cfg: StudioMatteConfig) -> tuple[np.ndarray, float, dict[str, Any]]:
    """Alpha (HxW uint8), confidence and diagnostics for a product photographed on a plain backdrop."""
    h, w = rgb.shape[:2]
    planes = [plane.astype(np.float32) for plane in cv2.split(rgb)]
    b = int(np.clip(cfg.border_px, 1, max(1, min(h, w) // 4)))
    coef, sigma_l, sigma_c, rejected = fit_backdrop(rgb, b)
    bg = render_backdrop(coef, h, w)
    lum, chroma, bnorm = _split([p - q for p, q in zip(planes, bg)], bg)
    z = cv2.magnitude(lum * np.float32(1.0 / sigma_l), chroma * np.float32(1.0 / sigma_c))
    is_bg = z < Z_BG
    ratio = 1.0 + lum / bnorm

    # backdrop darkenings never seed the product; with "keep" cast shadows return, translucent
    shadow = _cast_shadows(ratio, chroma, lum, sigma_c, is_bg)
    z_eff = np.where(shadow, np.float32(0.0), z)
    speck = max(16, int(h * w * 4e-4))
    band = max(2, round(min(h, w) / 160))  # width of the soft edge, px
    product, strong, texture, clutter = _select_product(z_eff, speck, band)
    alpha = _edge_alpha(planes, bg, z_eff, product, strong, band, sigma_c)
    fg = alpha > 0.5
    kept_shadow = 0.0
    if cfg.shadows == "keep":
        n, lab = _labels(shadow)
        near = cv2.dilate(product.view(np.uint8), _K3).view(bool)
        cast = np.zeros(n, bool)
        cast[np.unique(lab[near & shadow])] = True
        cast[0] = False
        cast_px = cast[lab]
        dark = np.clip((1.0 - ratio) / (1.0 - SHADOW_MIN_RATIO), 0.0, 1.0)
        alpha = np.where(cast_px, np.maximum(alpha, dark), alpha)
        kept_shadow = float(cast_px.mean())
    alpha8 = np.round(alpha * 255.0).astype(np.uint8)

    # quality measures look at the product itself, kept shadows aside
    coverage = float(fg.mean())
    touch = float(np.concatenate([fg[0], fg[-1], fg[1:-1, 0], fg[1:-1, -1]]).mean())
    contacts = _thin_contacts(fg)
    outline = fg & ~cv2.erode(fg.view(np.uint8), _K3).view(bool)
    grad = _gradient(ratio)
    sub = ~fg[::3, ::3]
    g_noise = float(np.median(grad[::3, ::3][sub])) if sub.any() else 1.0
    g_near = cv2.dilate(grad, _K3)
    support = float((g_near[outline] > 4.0 * g_noise + 0.01).mean()) if outline.any() else 0.0
    faint = float((product & ~strong).sum() / max(1, int(product.sum())))

    scores = {
        "luminance_noise": _ramp(sigma_l, 15.0, 40.0),
        "chroma_noise": _ramp(sigma_c, 2.5, 8.0),
        "texture": _ramp(texture, 0.03, 0.15),
        "clutter": 1.0 - 0.4 * (1.0 - _ramp(clutter, 0.02, 0.15)),
        "frame_touch": _ramp(touch, 0.04, 0.40),
        "thin_contacts": max(0.3, 1.0 - 0.2 * contacts),
        "coverage": min(_ramp(coverage, 0.03, 0.005), _ramp(coverage, 0.80, 0.95)),
        "edge_support": _ramp(support, 0.70, 0.30),
        "separation": _ramp(faint, 0.20, 0.70),
    }
    messages = {
        "luminance_noise": f"backdrop not plain: brightness varies by {sigma_l:.1f} levels along the border",
        "chroma_noise": f"backdrop not plain: colour varies by {sigma_c:.1f} levels along the border",
        "texture": f"backdrop textured: {texture:.1%} of it departs from the border model",
        "clutter": f"objects along the frame edge ({clutter:.1%} of the image) were left out",
        "frame_touch": f"product touches the frame on {touch:.0%} of the border",
        "thin_contacts": f"{contacts} thin structure(s) run into the frame (backdrop lines or a cut-off part)",
        "coverage": f"implausible product coverage {coverage:.1%}",
        "edge_support": f"only {support:.0%} of the outline lies on an image edge",
        "separation": f"weak product/backdrop contrast on {faint:.0%} of the product",
    }
    confidence = float(np.prod(list(scores.values())))
    spots = ((0, 0), (0, -1), (-1, 0), (-1, -1), (h // 2, w // 2))
    details: dict[str, Any] = {
        # backdrop estimate at the top-left, top-right, bottom-left, bottom-right corners and centre
        "backdrop_rgb": [[round(float(plane[y, x]), 1) for plane in bg] for y, x in spots],
        "noise_luminance": round(sigma_l, 2),
        "noise_chroma": round(sigma_c, 2),
        "border_rejected": round(rejected, 4),
        "shadows": cfg.shadows,
        "shadow_fraction": round(float(shadow.mean()), 4),
        "kept_shadow_fraction": round(kept_shadow, 4),
        "texture": round(texture, 4),
        "clutter": round(clutter, 4),
        "edge_support": round(support, 4),
        "faint_fraction": round(faint, 4),
        "border_touch": round(touch, 4),
        "thin_contacts": contacts,
        "coverage": round(coverage, 4),
        "scores": {k: round(v, 3) for k, v in scores.items()},
        "reasons": [messages[k] for k, s in scores.items() if s < 0.9],
    }
    return alpha8, confidence, details
