"""What a backdrop-difference cut-out keeps that is not the product (a floor reflection, pieces of
backdrop beside it) and what it drops that is (white lettering inside it)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

REFLECTION_ROWS = 96  # the mirror test runs on the product's box scaled to this height
REFLECTION_MAX_GAIN = 0.75  # a reflection is at most this share of the product's contrast
REFLECTION_MIN_GAIN = 0.05
REFLECTION_STEP = 0.8  # the largest gain of the first two rows below the contact line
REFLECTION_MIRRORED = 0.6  # share of the mirrored product rows the region below covers
REFLECTION_MIN_FIT = 0.6  # share of the region's variation the mirrored, faded product explains
REFLECTION_MIN_AREA = 0.02  # the region below the contact line, as a share of the product
JOINED_RATIO = 0.5  # backdrop-coloured: at most this share of the distance to the product's colour
PIECE_MAX_SHARE = 0.25  # a detached part at least this share of the main one is a product of its own (a pair)


@dataclass(frozen=True)
class Reflection:
    contact_row: int  # first row below the product's base, full resolution
    gain: float  # the reflection's contrast as a share of the product's
    fit: float  # share of the region's variation explained by the mirrored product
    share: float  # the removed region as a share of the cut-out


def fill_thin_holes(product: np.ndarray, band: int) -> tuple[np.ndarray, int]:
    """Enclosed gaps no wider than 2x`band` are details of the product, not holes through it.

    White lettering or stitching on a dark strap has the white backdrop's colour, so the
    backdrop difference drops it; what tells it from a gap between straps or the inside of a
    handle, through which the backdrop really shows, is that strokes are thin while such gaps
    are wider than the soft edge on both sides of them. Returns (product, pixels filled).
    """
    gaps = ~product
    n, lab = cv2.connectedComponents(gaps.view(np.uint8), connectivity=4)
    if n <= 2:
        return product, 0
    wide = cv2.distanceTransform(gaps.view(np.uint8), cv2.DIST_L2, 3) > band
    keep_open = np.zeros(n, bool)
    keep_open[np.unique(lab[wide])] = True
    keep_open[np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))] = True
    filled = ~keep_open[lab] & gaps
    return product | filled, int(filled.sum())


def backdrop_pieces(product: np.ndarray, planes: list[np.ndarray], backdrop: list[np.ndarray],
                    band: int) -> tuple[np.ndarray, np.ndarray]:
    """Parts of the cut-out beside the product whose colour is nearer the backdrop's than the product's.

    Curled paper edges, specks and fluff of a sheet, worn patches of a painted board, a strip
    of backdrop paper, the rim of a reflection differ from the fitted backdrop enough to pass its
    threshold, yet keep its colour. The product's bodies are what survives an opening wider than
    the soft edge (so a part hanging on by a lace or a thin rim comes off), grown back to their
    outline; a body much smaller than the largest (a pair's second shoe is not) and every part
    outside the bodies is judged by its median colour against the backdrop under it and the main
    body's median colour. Returns (product without them, the removed pixels).
    """
    removed = np.zeros_like(product)
    step = max(1, band // 2)  # the bodies are found at 1/step scale: a 2 px soft edge there
    if cv2.countNonZero(product.view(np.uint8)) < 16 * step * step:
        return product, removed
    box = _box(product, step, 4 * band)
    prod = product[box]
    h, w = prod.shape
    small = prod if step == 1 else cv2.resize(
        prod.view(np.uint8) * np.uint8(255), (w // step, h // step), interpolation=cv2.INTER_AREA) > 127
    size = 4 * (band // step) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    opened = cv2.morphologyEx(small.view(np.uint8), cv2.MORPH_OPEN, kernel)
    n, lab_o, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    if n <= 1:
        return product, removed
    areas = stats[1:, cv2.CC_STAT_AREA]
    main = 1 + int(np.argmax(areas))
    bodies = np.zeros(n, bool)
    bodies[1:] = areas >= PIECE_MAX_SHARE * areas.max()
    body = cv2.dilate(bodies[lab_o].view(np.uint8), kernel)
    core = (cv2.erode(opened, kernel) > 0) & (lab_o == main)
    if step > 1:
        body = cv2.resize(body * np.uint8(255), (w, h), interpolation=cv2.INTER_LINEAR) > 0
    body = body.view(bool) & prod
    n, lab, stats, _ = cv2.connectedComponentsWithStats((prod & ~body).view(np.uint8), connectivity=8)
    if n <= 1:
        return product, removed
    colours = [plane[box] for plane in planes]
    ys, xs = np.nonzero(core if core.sum() >= 64 else lab_o == main)
    ys, xs = np.minimum(ys * step, h - 1)[::3], np.minimum(xs * step, w - 1)[::3]
    p = np.array([np.median(plane[ys, xs]) for plane in colours])
    out = removed[box]
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < 4 * step * step:
            continue
        x, y, cw, ch = stats[i, :4]
        roi = (slice(y, y + ch), slice(x, x + cw))
        piece = lab[roi] == i
        c = np.array([np.median(plane[roi][piece]) for plane in colours])
        b = np.array([np.median(plane[box][roi][piece]) for plane in backdrop])
        if np.linalg.norm(c - b) < np.linalg.norm(c - p):
            out[roi] |= piece
    return product & ~removed, removed


def _box(product: np.ndarray, step: int, margin: int) -> tuple[slice, slice]:
    """The product's bounding box grown by `margin` px, cut to whole `step`s so that shrinking
    it by `step` is an exact average."""
    x, y, bw, bh = cv2.boundingRect(product.view(np.uint8))
    x0, y0 = max(0, x - margin) // step * step, max(0, y - margin) // step * step
    x1 = x0 + max(step, (min(product.shape[1], x + bw + margin) - x0) // step * step)
    y1 = y0 + max(step, (min(product.shape[0], y + bh + margin) - y0) // step * step)
    return slice(y0, min(y1, product.shape[0])), slice(x0, min(x1, product.shape[1]))


def floor_reflection(product: np.ndarray, planes: list[np.ndarray],
                     backdrop: list[np.ndarray]) -> Reflection | None:
    """A faded mirror image of the product's base below it (a glossy floor or sweep), or None.

    Below a candidate contact line the photo's difference to the backdrop is compared with the
    mirrored difference above it, over both regions' outlines: a reflection repeats the
    product's pattern and outline at a fraction of its contrast. A product part that continues
    the outline at full contrast (a sole, a box's lower half) has a gain near 1; one of another
    shape leaves most of the variation unexplained. Runs on the product's box shrunk by a whole
    factor to about REFLECTION_ROWS rows, so it costs a few ms at any photo size.
    """
    if cv2.countNonZero(product.view(np.uint8)) < 64:
        return None
    step = max(1, cv2.boundingRect(product.view(np.uint8))[3] // REFLECTION_ROWS)
    roi = _box(product, step, 0)
    y0 = roi[0].start
    size = ((roi[1].stop - roi[1].start) // step, (roi[0].stop - y0) // step)
    if min(size) < 4:
        return None
    shrink = lambda a: cv2.resize(a[roi], size, interpolation=cv2.INTER_AREA)  # noqa: E731
    mask = shrink(product.view(np.uint8) * np.uint8(255)) > 127
    diff = np.stack([shrink(p) - shrink(b) for p, b in zip(planes, backdrop)], axis=-1)
    diff = cv2.GaussianBlur(diff, (0, 0), 1.0) * mask[..., None]
    rows = mask.shape[0]
    total = float(mask.sum())
    flat = diff.reshape(rows, -1)  # zero off the product, so sums over a row are sums over its product
    sq = np.einsum("ij,ij->i", flat, flat)
    area = mask.sum(axis=1)
    best: tuple[float, float, int] | None = None
    for c in range(int(0.3 * rows), rows - 3):
        n = min(rows - 1 - c, c + 1)
        if area[c + 1:c + 1 + n].sum() < REFLECTION_MIN_AREA * total:
            continue
        # a reflection starts faded right at the contact line (a rounded base fades gradually):
        # the first two rows' gains decide cheaply
        if any(flat[c + 1 + k] @ flat[c - k] > REFLECTION_STEP * max(sq[c - k], 1e-6) for k in (0, 1)):
            continue
        below, above = flat[c + 1:c + 1 + n], flat[c + 1 - n:c + 1][::-1]
        aa, bb = sq[c + 1 - n:c + 1][::-1], sq[c + 1:c + 1 + n]
        ok = aa > 0
        if ok.sum() < 3:
            continue
        # the reflection fades with distance from the contact line: one gain per row
        ab = np.einsum("ij,ij->i", below, above)
        gains = np.where(ok, ab / np.maximum(aa, 1e-6), 0.0)
        gain = float(np.median(gains[: max(3, n // 3)]))
        mb, ma = mask[c + 1:c + 1 + n], mask[c + 1 - n:c + 1][::-1]
        # ... and mirrors most of the outline above it (a base's last rows are a shrinking sliver)
        if (not REFLECTION_MIN_GAIN <= gain <= REFLECTION_MAX_GAIN or gains.max() > 1.0
                or (mb & ma).sum() < REFLECTION_MIRRORED * ma.sum()):
            continue
        # residual of below = gain x mirrored above, against the spread of below, over both outlines
        res = float(bb.sum() - 2.0 * (gains * ab).sum() + (gains * gains * aa).sum())
        count = max(1, int((mb | ma).sum()))
        mean = below.reshape(n, -1, 3).sum(axis=(0, 1)) / count
        spread = float(bb.sum() - count * (mean @ mean))
        fit = 1.0 - res / max(spread, 1e-6)
        if best is None or fit > best[0]:
            best = (fit, gain, c)
    if best is None or best[0] < REFLECTION_MIN_FIT:
        return None
    fit, gain, c = best
    contact = y0 + (c + 1) * step
    share = float(product[contact:].sum() / max(1, int(product.sum())))
    return Reflection(contact, round(gain, 3), round(fit, 3), round(share, 4))


def joined_backdrop(product: np.ndarray, planes: list[np.ndarray], backdrop: list[np.ndarray],
                    band: int) -> tuple[np.ndarray, float, tuple[int, int, int, int] | None]:
    """Regions of backdrop colour joined to the product at its outline: (their pixels, the
    largest one's share of the cut-out, its box (x0, y0, x1, y1) or None).

    A backdrop that is not one colour (a painted board worn to the wood, floor in the shade
    between a pair of shoes, paper lying against the product) has patches that differ from the
    fitted backdrop, and where one touches the product the two make one region: no rule on
    shape can cut it away. What gives it away is colour: far nearer the backdrop's than the
    product's (JOINED_RATIO), over a patch wider than a seam or a stitch that reaches the
    outline. Measured at a scale where the soft edge is about 2 px, so it costs little at any size.
    """
    region = np.zeros_like(product)
    step = max(1, band // 2)
    if cv2.countNonZero(product.view(np.uint8)) < 64 * step * step:
        return region, 0.0, None
    roi = _box(product, step, 4 * step)
    y0, x0 = roi[0].start, roi[1].start
    size = ((roi[1].stop - x0) // step, (roi[0].stop - y0) // step)
    shrink = (lambda a: a[roi]) if step == 1 else (lambda a: cv2.resize(a[roi], size, interpolation=cv2.INTER_AREA))
    prod = shrink(product.view(np.uint8) * np.uint8(255)) > 127
    if prod.sum() < 64:
        return region, 0.0, None
    img, bg = [shrink(p) for p in planes], [shrink(b) for b in backdrop]
    core = cv2.erode(prod.view(np.uint8), np.ones((9, 9), np.uint8)).view(bool)
    sel = core if core.sum() >= 64 else prod
    colour = [float(np.median(p[sel][::5])) for p in img]
    to_bg = sum((p - b) ** 2 for p, b in zip(img, bg))  # per plane: far faster than over a colour axis
    to_product = sum((p - np.float32(c)) ** 2 for p, c in zip(img, colour))
    near_bg = to_bg < JOINED_RATIO * JOINED_RATIO * to_product
    like = (cv2.blur((near_bg & prod).astype(np.float32), (7, 7)) > 0.6).view(np.uint8)
    like = cv2.morphologyEx(like, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8)).view(bool) & prod
    n, lab, stats, _ = cv2.connectedComponentsWithStats(like.view(np.uint8), connectivity=8)
    outside = cv2.dilate((~prod).view(np.uint8), np.ones((3, 3), np.uint8)).view(bool)
    reaches = np.zeros(n, bool)
    reaches[np.unique(lab[outside & like])] = True
    reaches[0] = False
    if not reaches.any():
        return region, 0.0, None
    small = reaches[lab].view(np.uint8)
    region[roi] = (small if step == 1 else cv2.resize(small, (size[0] * step, size[1] * step),
                                                       interpolation=cv2.INTER_NEAREST)).view(bool)
    region &= product
    areas = np.where(reaches, stats[:, cv2.CC_STAT_AREA], 0)
    i = int(np.argmax(areas))
    x, y, cw, ch = (int(v) * step for v in stats[i, :4])
    return region, float(areas[i] / prod.sum()), (x0 + x, y0 + y, x0 + x + cw, y0 + y + ch)
