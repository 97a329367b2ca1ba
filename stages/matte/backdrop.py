"""The backdrop model of the plain-backdrop matte: a smooth colour field fitted to the frame border,
and the cast shadows it darkens into."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

Z_BG, Z_FG = 4.5, 11.0  # noise-normalised distance: below is backdrop, above is surely product
FLOOR_L, FLOOR_C = 3.0, 1.5  # noise floors in levels: clipped white shows no noise at all
SHADOW_MIN_RATIO = 0.45  # darkest a cast shadow gets, as a share of the backdrop's luminance
SHADOW_MAX_GRADIENT = 0.03  # per px, relative: penumbrae are soft, product edges are not
SHADOW_MAX_STEEPNESS = 0.15  # per px, as a share of the local darkening: a penumbra spans > ~5 px
SHADOW_TINT = 0.20  # chroma shift a shadow may carry, as a share of its luminance drop
SHADOW_RING_BG = 0.25  # share of a shadow's outline that must fade into the backdrop
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


def labels(mask: np.ndarray) -> tuple[int, np.ndarray]:
    return cv2.connectedComponents(mask.view(np.uint8), connectivity=8)


def gradient(plane: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Gradient magnitude per pixel after a light blur; with `mask`, only masked pixels are
    averaged (normalised convolution), so a dark product does not bleed into its own shadow."""
    if mask is None:
        smooth = cv2.GaussianBlur(plane, (0, 0), 1.2)
    else:
        m = mask.astype(np.float32)
        smooth = cv2.GaussianBlur(plane * m, (0, 0), 1.2) / np.maximum(cv2.GaussianBlur(m, (0, 0), 1.2), 1e-3)
    return cv2.magnitude(cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1)) / 8.0


def cast_shadows(ratio, chroma, lum, sigma_c, is_bg) -> np.ndarray:
    """Darkenings of the backdrop: near-backdrop chroma, soft gradient, fading into the backdrop.

    A grey product panel can be as dark and neutral as a shadow; what tells them apart is that
    a shadow's outline melts into the backdrop while an object's outline is a sharp edge.
    """
    tol = Z_BG * sigma_c - SHADOW_TINT * lum
    tone = (ratio >= SHADOW_MIN_RATIO) & (ratio <= 1.0) & (chroma <= tol)
    # a faint step is still an object edge if it is sharp: compare slope with local depth
    depth = cv2.dilate(np.where(tone, 1.0 - ratio, 0.0).astype(np.float32), np.ones((9, 9), np.uint8))
    limit = np.clip(SHADOW_MAX_STEEPNESS * depth, 0.006, SHADOW_MAX_GRADIENT)
    sharp = (gradient(ratio, tone | is_bg) >= limit).view(np.uint8)
    like = tone & ~cv2.dilate(sharp, _K3).view(bool)
    like = cv2.morphologyEx(like.view(np.uint8), cv2.MORPH_CLOSE, _K3).view(bool) & ~is_bg
    n, lab = labels(like)
    if n <= 1:
        return like
    grown = cv2.dilate(lab.astype(np.float32), _K3).astype(np.int32)
    ring = np.where(like, 0, grown)  # outside pixels tagged with the shadow they border
    ring_all = np.bincount(ring.ravel(), minlength=n)
    ring_bg = np.bincount(ring[is_bg], minlength=n)
    fades = ring_bg >= SHADOW_RING_BG * np.maximum(ring_all, 1)
    fades[0] = False
    return fades[lab]


def local_means(planes, mask, k, ys, xs) -> tuple[np.ndarray, np.ndarray]:
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


def ramp(v: float, good: float, bad: float) -> float:
    """1 at `good`, 0 at `bad`, linear between (either direction)."""
    return float(np.clip((bad - v) / (bad - good), 0.0, 1.0))


@dataclass(frozen=True, eq=False)
class BackdropFit:
    """A photo measured against its fitted backdrop: per pixel, how far it departs from it."""

    planes: list[np.ndarray]  # the photo's R, G, B as float32 planes
    backdrop: list[np.ndarray]  # the fitted backdrop's R, G, B
    lum: np.ndarray  # signed luminance change against the backdrop
    chroma: np.ndarray  # colour change across the backdrop colour
    ratio: np.ndarray  # brightness relative to the backdrop (1 = the backdrop, < 1 darker)
    z: np.ndarray  # noise-normalised distance to the backdrop
    sigma_l: float  # the border's luminance noise, levels
    sigma_c: float  # its chroma noise
    rejected: float  # share of border samples the robust fit left out


def measure_backdrop(rgb: np.ndarray, border_px: int) -> BackdropFit:
    """Fit the backdrop to a `border_px` strip and measure every pixel against it.

    Each pixel's difference to the fitted field is split into a luminance part (shading,
    wrinkles and shadows live there) and a chroma part (usually far quieter), each scaled by
    the border's own noise: `z` is their combined distance in noise units."""
    h, w = rgb.shape[:2]
    planes = [plane.astype(np.float32) for plane in cv2.split(rgb)]
    b = int(np.clip(border_px, 1, max(1, min(h, w) // 4)))
    coef, sigma_l, sigma_c, rejected = fit_backdrop(rgb, b)
    bg = render_backdrop(coef, h, w)
    lum, chroma, bnorm = _split([p - q for p, q in zip(planes, bg)], bg)
    z = cv2.magnitude(lum * np.float32(1.0 / sigma_l), chroma * np.float32(1.0 / sigma_c))
    return BackdropFit(planes, bg, lum, chroma, 1.0 + lum / bnorm, z, sigma_l, sigma_c, rejected)
