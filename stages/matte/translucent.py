"""Translucent parts: a region of a cut-out that is neither product nor backdrop, wider than an edge."""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from stages.matte.base import Matte
from stages.resample import box_reduce

WORK_SIDE = 512  # the alpha is read reduced by a whole factor to at most this many px on its long side
OPAQUE, CLEAR = 242, 13  # alpha (of 255) from which a pixel is product (95%), up to which backdrop (5%)
EDGE_SHARE = 0.03  # an edge is at most this share of sqrt(cut-out area) from product or backdrop (3 px at least)
FLAT = 6.0  # alpha levels per px: a plateau changes slower than the softest edge's middle
LIMIT = 0.01  # translucent share of the cut-out's area from which it goes to review
CONFIDENCE = 0.3  # the factor a translucent part puts on the matte's confidence


@dataclasses.dataclass(frozen=True)
class Translucent:
    share: float  # translucent pixels / the cut-out's area (alpha summed)
    box: tuple[int, int, int, int] | None  # x0, y0, x1, y1 (photo px) of the largest translucent part


def translucent_part(alpha: np.ndarray) -> Translucent:
    """The cut-out's translucent part: soft pixels farther than an edge's width from both the
    product (alpha >= 95%) and the backdrop (<= 5%), where the alpha is flat.

    A soft edge is a ramp from product to backdrop: each of its pixels lies within the ramp's
    width of both, and alpha changes fastest in its middle. A learned matte that is unsure of a
    part (a sleeve on a same-toned sheet, a strap) makes a plateau instead: 40-80% over a region
    wider than any edge. Composited, that part shows the scene through the product (a ghostly
    sleeve), and no later step can tell it from a product that is meant to be see-through. Read
    with the alpha reduced to at most `WORK_SIDE` px (whole-factor area average, so a 12 MP
    photo costs what a 0.25 MP one does): the edge width is `EDGE_SHARE` of the square root of
    the cut-out's area (3 px at least), and a plateau is flatter than `FLAT` levels per px (the
    middle of an edge blurred by a Gaussian of 8 px, 2% of a 400 px photo, is steeper: 12 levels
    per px). On the hand masks of the tuning photos, edges blurred by up to 6 px give at most
    0.4% of the area; the outer tenth of the product's width (3-8% of its area) made 30-85%
    opaque gives 2-3.5% on six of the eight and is missed on two (0.2%, 0.9%); the outer fifth
    (12-20%) gives 7-17%. The tuning photos' own cut-outs (embedded and IS-Net) give 0. Blind
    spots: translucent parts under about 5% of the product or narrower than two edge widths, and
    plateaus at 95% or more (they show little).
    """
    k = max(1, math.ceil(max(alpha.shape) / WORK_SIDE))
    part, _, area = plateaus(box_reduce(alpha, k))
    n, _, stats, _ = cv2.connectedComponentsWithStats(part, connectivity=8)
    if n <= 1:
        return Translucent(0.0, None)
    big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, bw, bh = (int(v) * k for v in stats[big, :4])
    return Translucent(float(stats[1:, cv2.CC_STAT_AREA].sum()) / area, (x, y, x + bw, y + bh))


def plateaus(a: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(uint8 mask of the translucent pixels of the alpha `a`, the edge width in px, the cut-out's
    area): see `translucent_part`."""
    area = cv2.sumElems(a)[0] / 255.0
    width = max(3.0, EDGE_SHARE * math.sqrt(area))
    from_product = cv2.distanceTransform(cv2.compare(a, OPAQUE, cv2.CMP_LT), cv2.DIST_L2, 3)
    from_backdrop = cv2.distanceTransform(cv2.compare(a, CLEAR, cv2.CMP_GT), cv2.DIST_L2, 3)
    af = a.astype(np.float32)
    slope = cv2.magnitude(cv2.Sobel(af, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(af, cv2.CV_32F, 0, 1, ksize=3)) / 8.0
    return ((from_product > width) & (from_backdrop > width) & (slope < FLAT)).astype(np.uint8), width, area


def judge_translucency(matte: Matte) -> Matte:
    """The matte with its translucent part measured (`translucent_share`, in `details` too) and, over
    `LIMIT`, its confidence cut by `CONFIDENCE` with a reason saying how much and where: an
    uncertain cut-out goes to review. Only for a matte whose soft pixels mix product and backdrop:
    the photo's own transparency and kept shadows are translucent on purpose."""
    if not matte.mixed_edge:
        return matte
    found = translucent_part(matte.alpha)
    share = round(found.share, 4)
    details = {**matte.details, "translucent_share": share}
    if found.share <= LIMIT or found.box is None:
        return dataclasses.replace(matte, details=details, translucent_share=share)
    x0, y0, x1, y1 = found.box
    reasons = [*details.get("reasons", []),
               f"translucent part: {found.share:.1%} of the cut-out is neither product nor backdrop, the largest "
               f"at ({x0}, {y0})-({x1}, {y1}) of the photo: the scene would show through it"]
    return dataclasses.replace(matte, confidence=matte.confidence * CONFIDENCE, details={**details, "reasons": reasons},
                               translucent_share=share)
