"""Shadows joined to the product: a darker band of the backdrop along the outline that the
backdrop difference kept as product."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from stages.matte.backdrop import SHADOW_TINT, Z_BG, gradient

BAND_ROWS = 400  # the product's box is measured shrunk to about this many px on its long side
BAND_RATIO = (0.28, 0.93)  # brightness of a shadow band relative to the backdrop
BAND_REACH = 0.12  # how far in from the outline a band may lie, as a share of sqrt(product area)
BAND_SMOOTH = 0.025  # per px: a shadow's brightness varies slowly; product surfaces carry texture
BAND_EDGE = 0.03  # per px: the step where the product ends and its shadow begins
BAND_INNER = 0.25  # share of a band's inner border that must be such a step
BAND_OUTER = 0.35  # share of a band's border that must face the backdrop (or fade into it)
BAND_THIN = 0.15  # a band runs along the outline: its area is at most this x its length squared
BAND_RIM = 3.0  # px: the outline's mixed pixels, counted with the backdrop they fade into
BAND_SOFT = 0.22  # far-edge steepness (peak gradient per px over the band's depth) a penumbra stays under
BAND_SHARP = 0.35  # steeper than this the far edge is an object's outline
BAND_PIECE = 0.25  # a part at least this share of the largest is a product of its own (a pair)
_K3 = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class AttachedShadow:
    share: float  # the bands cut away (or, when any was kept, those kept) as a share of the cut-out
    box: tuple[int, int, int, int]  # the largest such band's x0, y0, x1, y1
    steepness: float  # its far edge's steepness (low: a soft penumbra)
    cut: bool  # cut away (its far edge is soft) or kept (it could be a grey part)
    cut_share: float  # what was cut away (every band with a soft far edge), as a share of the cut-out


def attached_shadow(product: np.ndarray, ratio: np.ndarray, chroma: np.ndarray, lum: np.ndarray,
                    sigma_c: float) -> tuple[np.ndarray, AttachedShadow | None]:
    """Shadow bands joined to the product: (their pixels, what was found or None).

    A cast or contact shadow next to a dark product differs from the backdrop as much as the
    product does, so the backdrop difference keeps both as one region. What tells the shadow
    apart is not its darkness (a black cap is darker) but that it is the backdrop darkened:
    its colour is the backdrop's (chroma within the shadow tint of its luminance drop), it is
    smooth (no texture or edges of its own), it lies between a step at the product's outline
    and the backdrop, and its far edge is soft. A band with all the signs is cut away, with
    its fade toward the outline and the thin or detached slivers of outline the cut leaves
    (they would show as a pale arc beside the product); one
    whose far edge is sharp (a smooth grey rim or sole would look like that too) is kept and
    reported, so the caller can send the cut-out to review. Runs on the product's box shrunk
    to about BAND_ROWS px (the scale its px thresholds were set at).
    """
    found = np.zeros_like(product)
    area = int(cv2.countNonZero(product.view(np.uint8)))
    if area < 256:
        return found, None
    x, y, w, h = cv2.boundingRect(product.view(np.uint8))
    step = max(1, round(max(w, h) / BAND_ROWS))  # measured at about BAND_ROWS px: a few ms at any size
    m = 4 * step
    y0, x0 = max(0, y - m), max(0, x - m)
    y1 = y0 + (min(product.shape[0], y + h + m) - y0) // step * step
    x1 = x0 + (min(product.shape[1], x + w + m) - x0) // step * step
    roi = (slice(y0, y1), slice(x0, x1))
    size = ((x1 - x0) // step, (y1 - y0) // step)
    shrink = (lambda a: a[roi]) if step == 1 else (lambda a: cv2.resize(a[roi], size, interpolation=cv2.INTER_AREA))
    prod = shrink(product.view(np.uint8) * np.uint8(255)) > 127
    r, c, lu = shrink(ratio), shrink(chroma), shrink(lum)
    small_area = int(prod.sum())
    reach = max(4.0, BAND_REACH * np.sqrt(small_area))
    inside = cv2.distanceTransform(prod.view(np.uint8), cv2.DIST_L2, 3)
    tone = (prod & (inside <= reach) & (r >= BAND_RATIO[0]) & (r <= BAND_RATIO[1])
            & (c <= Z_BG * sigma_c - SHADOW_TINT * lu))
    smooth = gradient(r, tone) <= BAND_SMOOTH
    cand = cv2.morphologyEx((tone & smooth).view(np.uint8), cv2.MORPH_OPEN, _K3)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
    if n <= 1:
        return found, None
    ring = cv2.dilate(lab.astype(np.float32), np.ones((7, 7), np.uint8)).astype(np.int32)
    ring[cand.view(bool)] = 0
    size = np.maximum(stats[:, 4], 1)
    band_px = cand.view(bool)
    lb = lab[band_px]
    level = np.bincount(lb, weights=r[band_px], minlength=n) / size
    depth_in = np.bincount(lb, weights=inside[band_px], minlength=n) / size
    ys, xs = np.nonzero(ring)  # the ring's pixels only: a small share of the box
    rl, ri, rr = ring[ys, xs], inside[ys, xs], r[ys, xs]
    # the far side: toward the outline from the band and brighter (the fade into the backdrop)
    far = (ri <= 1.5) | ((ri < depth_in[rl]) & (rr > level[rl] + 0.03))
    steep = gradient(r)
    near = ~far & (steep[ys, xs] >= BAND_EDGE)  # the near side: the product's own edge
    counts = np.bincount(rl, minlength=n)
    inner = np.bincount(rl[near], minlength=n)
    facing = np.bincount(rl[far], minlength=n)
    peak = cv2.dilate(steep, np.ones((5, 5), np.uint8))[ys, xs]
    far_grad = np.bincount(rl[far], weights=peak[far], minlength=n) / np.maximum(facing, 1)
    depth = 1.0 - level
    within = counts - facing
    long_side = np.maximum(stats[:, 2], stats[:, 3]).astype(np.float64)
    ok = ((stats[:, 4] >= max(16, 0.001 * small_area)) & (facing >= BAND_OUTER * counts)
          & (stats[:, 4] <= BAND_THIN * long_side * long_side)
          & (inner >= BAND_INNER * np.maximum(within, 1)))
    steepness = far_grad / np.maximum(depth, 1e-3)
    ok &= steepness <= BAND_SHARP  # sharper than that is an object's edge, not a penumbra
    ok[0] = False
    if not ok.any():
        return found, None
    cut = ok & (steepness <= BAND_SOFT)
    # the band and its fade toward the outline
    grown = cv2.dilate(np.where(cut[lab], lab, 0).astype(np.float32), np.ones((13, 13), np.uint8)).astype(np.int32)
    fade = (grown > 0) & prod & (inside < depth_in[grown]) & (r > level[grown] + 0.03)
    small = (cut[lab] | fade).view(np.uint8)
    found[roi] = (small if step == 1 else cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)).view(bool)
    found &= product
    if found.any():  # slivers of the outline the cut left beside the product (thin or detached) go with it
        full = (slice(y0, y1), slice(x0, x1))
        rest = (product[full] & ~found[full]).view(np.uint8)
        near = cv2.dilate(found[full].view(np.uint8), np.ones((9, 9), np.uint8)).view(bool)
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        thin = near & rest.view(bool) & ~cv2.morphologyEx(rest, cv2.MORPH_OPEN, disc).view(bool)
        rest &= ~thin.view(np.uint8)
        k, pieces, pstats, _ = cv2.connectedComponentsWithStats(rest, connectivity=8)
        body = pstats[:, 4] >= BAND_PIECE * pstats[1:, 4].max(initial=0)
        body[0] = True
        touch = np.zeros(k, bool)
        touch[np.unique(pieces[near])] = True
        found[full] |= thin | (touch & ~body)[pieces]
    # a kept band no wider than the outline's mixed zone leaves no stray part: not worth a review
    width = np.zeros(n)
    np.maximum.at(width, lb, inside[band_px])
    kept = ok & ~cut & (width > 2 * BAND_RIM)
    show = kept if kept.any() else cut
    i = int(np.argmax(np.where(show, stats[:, 4], 0)))
    share = int(stats[kept, 4].sum()) * step * step if kept.any() else int(found.sum())
    bx, by, bw, bh = (int(v) * step for v in stats[i, :4])
    return found, AttachedShadow(round(share / area, 4), (x0 + bx, y0 + by, x0 + bx + bw, y0 + by + bh),
                                 round(float(steepness[i]), 3), not kept.any(), round(float(found.sum()) / area, 4))
