"""Ragged outline: a stretch of a cut-out's edge torn pixel by pixel, as a textured backdrop tears it."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

_DISC3 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
JOIN = 5  # ragged pixels within this window (px) of each other are one stretch
DECISIVE = 0.8  # a pixel counts when the matte is this sure of it: alpha >= 0.8 or <= 0.2


@dataclasses.dataclass(frozen=True)
class Ragged:
    share: float  # ragged pixels of the largest stretch / the product's size (sqrt of its area)
    box: tuple[int, int, int, int] | None  # x0, y0, x1, y1 of that stretch (the alpha's pixels)


def ragged_edge(alpha: np.ndarray) -> Ragged:
    """The largest ragged stretch of the outline of a cut-out (`alpha`: float, 0..1, at its
    matting size; the product is alpha > 0.5).

    A matte that thresholds each pixel's distance from the backdrop cuts a clean line where the
    product meets a plain backdrop, even where that line is a staircase or a fine curve: a 3 px
    disc opening and closing change a few corner pixels of it. Where the backdrop is textured
    or noisy next to the product (a woven floor in the shade between two shoes, a light rim
    against a grainy floor), its light and dark pixels fall on either side of the threshold, and
    the cut-out's edge there is a comb of one-pixel teeth and notches, or a rim broken into
    flecks, which the opening and closing remove. On a staged image it shows as a torn edge or a
    fringe of kept floor. Only pixels the matte is sure of count (alpha at least `DECISIVE`, or at
    most 1 - it): a soft edge pixel near 0.5 that falls on either side shows as a soft edge, not
    a tooth. The changed pixels, joined within `JOIN` px, make stretches; the largest one's count
    is taken against the product's size. Teeth are one pixel of the matte, so it is judged at
    the size the matte worked at (the embedded matte: at most `work_pixels`). On the tuning
    photos whose cut-outs are good the largest stretch is at most 0.021 of the product's size;
    the beige loafers on a woven floor (their heel rim torn, a patch of shaded floor kept between
    the shoes) 0.32. Blind spots: kept backdrop whose edge is smooth (a shadow on smooth paper:
    the kept-shadow tests look at those) and a product whose own edge is ragged at pixel scale
    (fur, fringe, frayed threads: flagged, so a person looks at it).
    """
    product = (alpha > 0.5).view(np.uint8)
    n_px = cv2.countNonZero(product)
    if n_px == 0:
        return Ragged(0.0, None)
    x, y, w, h = cv2.boundingRect(product)
    pad = 2  # the opening and closing see the box's surroundings as backdrop
    y0, x0 = max(0, y - pad), max(0, x - pad)
    roi = (slice(y0, y + h + pad), slice(x0, x + w + pad))
    box = product[roi]
    changed = cv2.bitwise_or(cv2.subtract(box, cv2.morphologyEx(box, cv2.MORPH_OPEN, _DISC3)),
                             cv2.subtract(cv2.morphologyEx(box, cv2.MORPH_CLOSE, _DISC3), box))
    a = alpha[roi]
    changed &= ((a >= DECISIVE) | (a <= 1.0 - DECISIVE)).view(np.uint8)
    if not cv2.countNonZero(changed):
        return Ragged(0.0, None)
    joined = cv2.dilate(changed, np.ones((JOIN, JOIN), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    counts = np.bincount(labels[changed.view(bool)], minlength=n)
    counts[0] = 0
    i = int(np.argmax(counts))
    sx, sy, sw, sh = (int(v) for v in stats[i, :4])
    return Ragged(float(counts[i]) / float(np.sqrt(n_px)), (sx + x0, sy + y0, sx + x0 + sw, sy + y0 + sh))
