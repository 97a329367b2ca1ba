"""Edge colour: the old backdrop's share taken out of a cut-out's soft edge pixels."""

from __future__ import annotations

import math

import cv2
import numpy as np

from stages.masks import points
from stages.matte.translucent import plateaus
from stages.resample import box_reduce

WORK_SIDE = 512  # the colour maps: the product's box is read reduced by a whole factor to at most this many px
PURE_BACKDROP = 13  # alpha (of 255) under which a reduced pixel counts as backdrop (5%)
CORE_REACH = 3  # reduced px: the window in which a soft pixel's product colour is read from opaque pixels
BACKDROP_REACH = 8  # reduced px: the window in which its backdrop colour is read
SAMPLE_ROW = 4096  # samples per row of the maps handed to cv2.remap
UNMIX_FROM, UNMIX_FULL = 0.1, 0.5  # product share from which a pixel's own colour begins to count, and counts alone
MEASURABLE = 20.0  # RGB distance between the product and backdrop colours from which a pixel's share is read


def unmix_edge(rgb: np.ndarray, alpha: np.ndarray, box: tuple[int, int, int, int],
               leave_plateaus: bool = False) -> tuple[np.ndarray, int]:
    """The pixels of `box` (x0, y0, x1, y1) of a photo, with every soft edge pixel's colour unmixed
    from the backdrop: (a copy of the box, how many soft pixels were unmixed).

    A cut-out's soft edge pixel (0 < alpha < 255) shows the product and the old backdrop mixed,
    `I = a F + (1 - a) B`. Composited as it stands it puts `a (1 - a) B` of the old backdrop on the
    new scene: a red fringe around a white shirt shot on red, a pale rim around a dark shoe shot on
    white. Each soft pixel's product colour `F` is estimated and the mix replaced by it, so the
    composite shows `a F` over the scene. Opaque pixels (alpha 255) are copied unchanged: the
    product itself is never altered, only the old backdrop's share of its edge is taken out.

    `B` is the mean of the backdrop near the pixel (reduced pixels of alpha under 5% within
    `BACKDROP_REACH`, read from the photo around the box too) and `F` the mean of the nearest
    opaque product pixels (within `CORE_REACH`). The product's share the pixel shows, `s`, is its
    place between `B` and `F` (where they differ by `MEASURABLE`), at most its alpha; the pixel's
    own evidence is `(I - (1 - s) B) / s`, exact where the mix model holds, but never moved past
    `F`. A learned matte's alpha is a probability, not a coverage: it overstates a rim pixel's
    coverage (of IS-Net's soft rim pixels at 90% or more on the tuning photos, the colour puts a
    fifth under two thirds: unmixed by its alpha, a third of the backdrop stays there), and
    understates it on a frayed hem, where threads cover more of a pixel than its alpha says and the
    full step would overshoot into the backdrop's complement (a denim hem on red turned cyan).
    Light the backdrop bounced onto the product is not such a mix (a pink sheen on a white rim lies
    off the line from `B` to `F`) and is not taken out. How far that evidence counts goes by `s`:
    alone from `UNMIX_FULL`, where noise is at most doubled; blended toward `F` below; `F` alone
    under `UNMIX_FROM`. A learned matte's soft rim lying over the backdrop (alpha 30%, its colour
    the backdrop's) thus shows the product's colour by its alpha instead of a line of the backdrop's. Without an opaque pixel near, the pixel's own
    evidence stands alone; without a backdrop pixel near (the product meets the photo's frame),
    the pixel is left as it is. The maps are read with the box reduced by a whole factor to at
    most `WORK_SIDE` px (bilinear between reduced pixels), so beyond one reduction of the box the
    cost is the soft pixels' count: at 12 MP, where the embedded matte's edge resized up from 0.5
    MP holds about 260,000, some 70 ms on one core.

    `leave_plateaus`: leave the matte's translucent parts (`stages.matte.translucent.plateaus`,
    grown by an edge's width) as they are. A learned matte unsure of a sleeve makes it 60%
    opaque; that sleeve is not a mix of product and backdrop, and unmixing it would take the
    backdrop's colour out of the product's own (a denim sleeve on red turned cyan): left as the
    photo shows it, the rim-spill check still sees the backdrop through it.

    Blind spots: a matte that is soft where the product is (a sheer fabric over the backdrop: its
    soft pixels are unmixed toward what the backdrop is not, which is what a composite through it
    needs); a backdrop that changes colour within a few reduced pixels of the product (a pattern):
    its mean there is the mix model's `B` only roughly.
    """
    x0, y0, x1, y1 = box
    out = np.array(rgb[y0:y1, x0:x1], order="C", copy=True)
    a_box = np.ascontiguousarray(alpha[y0:y1, x0:x1])
    ys, xs = points(cv2.inRange(a_box, 1, 254))
    if ys.size == 0:
        return out, 0
    idx = ys.astype(np.intp) * (x1 - x0) + xs  # flat indices into the box, in scan order
    k = max(1, math.ceil(max(x1 - x0, y1 - y0) / WORK_SIDE))  # a whole factor: OpenCV's fast box average
    pad = (BACKDROP_REACH + 1) * k
    h, w = alpha.shape
    rx0, ry0 = max(0, x0 - pad), max(0, y0 - pad)
    rw, rh = max(1, (min(w, x1 + pad) - rx0) // k), max(1, (min(h, y1 + pad) - ry0) // k)
    region_rgb = box_reduce(rgb[ry0 : ry0 + rh * k, rx0 : rx0 + rw * k], k)
    region_a = box_reduce(alpha[ry0 : ry0 + rh * k, rx0 : rx0 + rw * k], k)
    colour = region_rgb.astype(np.float32)
    core = _local_mean(colour, cv2.compare(region_a, 255, cv2.CMP_EQ), CORE_REACH)
    backdrop = _local_mean(colour, cv2.compare(region_a, PURE_BACKDROP, cv2.CMP_LT), BACKDROP_REACH)
    # the soft pixels' places on the reduced maps (pixel centres)
    mx = ((xs + (x0 - rx0) + 0.5) * (1.0 / k) - 0.5).astype(np.float32)
    my = ((ys + (y0 - ry0) + 0.5) * (1.0 / k) - 0.5).astype(np.float32)
    b = _sample(backdrop, mx, my)
    known = ~np.isnan(b[:, 0])  # no backdrop near: left as it is
    if leave_plateaus:
        part, width, _ = plateaus(region_a)
        grown = cv2.dilate(part, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * round(width) + 1,) * 2))
        iy = np.clip(np.rint(my), 0, rh - 1).astype(np.intp)
        ix = np.clip(np.rint(mx), 0, rw - 1).astype(np.intp)
        known &= grown[iy, ix] == 0  # a translucent part, not an edge: left as it is
    if not known.any():
        return out, 0
    idx, b = idx[known], b[known]
    fc = _sample(core, mx[known], my[known])
    flat = out.reshape(-1, 3)
    a = a_box.ravel()[idx].astype(np.float32)[:, None] * np.float32(1 / 255)
    mixed = flat[idx].astype(np.float32)
    # the product's share the pixel shows: its place from B to F, at most alpha
    away = mixed - b
    span = fc - b
    spread = _dot(span, span)
    share = _dot(away, span) / np.maximum(spread, 1.0)
    share = np.where((spread >= MEASURABLE**2) & ~np.isnan(share), np.minimum(share, a), a)
    # own evidence: I moved away from B by (1 - s) / s of (I - B), s that share, never past F's place
    step = (1.0 - share) / np.maximum(share, 1e-3)
    reach = _dot(fc - mixed, away) / np.maximum(_dot(away, away), 1.0)
    np.minimum(step, np.maximum(reach, 0.0), out=step, where=~np.isnan(reach))
    own = mixed + step * away
    np.clip(own, 0.0, 255.0, out=own)
    np.copyto(fc, own, where=np.isnan(fc))  # no opaque pixel near: its own evidence alone
    wgt = np.clip((share - UNMIX_FROM) * (1.0 / (UNMIX_FULL - UNMIX_FROM)), 0.0, 1.0)
    own -= fc
    own *= wgt
    own += fc
    flat[idx] = np.rint(own).astype(np.uint8)
    return out, int(idx.size)


def _dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Row-wise dot products of two N x 3 arrays, as N x 1."""
    return np.einsum("ij,ij->i", u, v)[:, None]


def _local_mean(colour: np.ndarray, mask: np.ndarray, reach: int) -> np.ndarray:
    """Mean colour of the `mask` pixels within `reach` px (a square window) of each pixel; NaN
    where there is none."""
    k = (2 * reach + 1, 2 * reach + 1)
    m = cv2.multiply(mask, 1 / 255, dtype=cv2.CV_32F)
    total = cv2.boxFilter(cv2.copyTo(colour, mask), -1, k, normalize=False, borderType=cv2.BORDER_CONSTANT)
    count = cv2.boxFilter(m, -1, k, normalize=False, borderType=cv2.BORDER_CONSTANT)
    empty = count < 0.5
    count[empty] = np.nan
    return total / count[..., None]


def _sample(img: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """N x 3 bilinear samples of an hxwx3 float map at (mx, my); NaN where a neighbour is NaN."""
    n = mx.size
    rows = -(-n // SAMPLE_ROW)  # remap's maps are laid out in rows (it takes at most 32767 per side)
    maps = [np.resize(m.ravel(), rows * SAMPLE_ROW).reshape(rows, SAMPLE_ROW) for m in (mx, my)]
    got = cv2.remap(img, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return got.reshape(-1, 3)[:n]
