"""Rim spill: the colour of a coloured backdrop that a cut-out's rim still shows (a fringe)."""

from __future__ import annotations

import cv2
import numpy as np

from stages.check.outline import VISIBLE_ALPHA, Outline, colours_at
from stages.colour import hue_name, opponent
from stages.masks import points

MIN_BACKDROP_CHROMA = 30.0  # opponent chroma (RGB units) under which a backdrop is white, cream, grey or black: no hue
MIN_HUE_GAP = 20.0  # chroma distance under which the product's own colour is too near the backdrop's hue
SPILL_POINTS = 20000  # outline pixels judged at most (an even sample of a longer outline)
EDGE_PX = 1.5  # the outline: visible product pixels this near its edge
SPILL_OUT_PX = 2  # px: the rim judged across the outline reaches this far out, into a soft matte's faint tail
SPILL_DEPTHS = (3.0, 4.0, 5.0)  # rim widths inward where the product's own colour is read
SAME_HUE_DEPTH = 6.0  # rim widths: the product's colour is its median this far inside, past a bleed's reach


def rim_spill(product_rgb: np.ndarray, product_alpha: np.ndarray, outline: Outline, backdrop: np.ndarray,
              spill_width: float, spill_tint: float, spill_chroma: float) -> tuple[float, int, str, str, str]:
    """Share of the product's outline along which its rim shows the colour of a coloured backdrop:
    (share, judged outline pixels, why not judged or "", the backdrop's colour name, where).

    A red backdrop leaves a red fringe on a white shirt: edge pixels that are part backdrop (a soft
    edge, a learned matte's soft rim) or light bounced off it. The halo check looks for rim pixels
    *in* the old backdrop colour, so a tint (white mixed with some red) passes it. What shows on the
    new scene is each pixel's colour times its alpha: a learned matte (rembg + IS-Net) is soft
    across the edge, its mixed pixels lie on both sides of alpha 128 and the composite shows those
    under 128 too, by their alpha. So each outline pixel (visible, within `EDGE_PX` of the edge) is
    judged across the rim along the outline's normal, from `SPILL_OUT_PX` outside (the matte's faint
    tail) to `spill_width` inside: the chroma gained along the backdrop's hue (opponent axes,
    lightness apart; across the product's own hue where its colour leaves no room along the
    backdrop's, `_spill_axes`) over the product's own colour, times alpha, summed over the pixels
    crossed: the backdrop's colour the rim shows, in pixels of it. The product's own colour is read
    3-5 rim widths further in (5x5 means): deep enough that a bleed fading inward tints it little.
    An outline pixel is tinted when its rim shows `spill_tint` pixels' worth of the backdrop chroma
    the product lacks there and at least `spill_chroma` (a tint fainter than that does not show,
    whatever the hues: a pale backdrop's, a cream wall's). A hard edge cut by a soft matte shows
    about half a pixel of backdrop (the matte's faint tail); a 1 px soft edge or a 20% bleed a pixel
    or more. The share is of the outline's length, so a fringe one pixel wide counts along all its
    length; where the product's own colour leaves less than `MIN_HUE_GAP` of room toward the
    backdrop's on its axis a fringe does not show and that part counts as clean, and a product
    coloured in the backdrop's hue (its median `SAME_HUE_DEPTH` rim widths in: a dark red cap shot
    on red) is not judged; over `spill_limit` fails. JPEG chroma smear, the light a coloured floor
    bounces and a matte's own softness tint a good cut-out's rim too (up to 0.4 of the outline on
    the tuning photos: the sneakers' hand mask on red tiles, the shorts' IS-Net cut-out on a cream
    wall). Judged for a coloured backdrop only. Blind spots: a product's own edge in the backdrop's
    hue (red piping shot on red, a red saucer on wood: a fringe along the white cup above it is
    missed too); a faint fringe on a pale backdrop (pale pink) or a dark product; a bleed behind a
    hard edge on a dark product (it reflects little). A matte that keeps a hard edge's anti-aliased
    pixels opaque, or one soft enough to straddle a hard edge, shows the backdrop as a fringe would:
    caught.
    """
    bd = opponent(backdrop)[0]
    name = hue_name(np.asarray(backdrop, np.float32))
    bc = float(np.hypot(bd[1], bd[2]))
    if bc < MIN_BACKDROP_CHROMA:
        return 0.0, 0, "the backdrop is not coloured: not judged", name, ""
    roi, local = outline.region(0.0)
    dist_in = outline.dist_in[local]
    width = max(2.0, spill_width * outline.size)
    rgb = np.ascontiguousarray(product_rgb[roi])  # read at points below: one copy, not one per read
    a_roi = product_alpha[roi]
    edge = cv2.bitwise_and(cv2.inRange(dist_in, 1e-3, EDGE_PX), cv2.compare(a_roi, VISIBLE_ALPHA, cv2.CMP_GE))
    ey, ex = points(edge)
    if ey.size < 20:
        return 0.0, 0, "no product rim", name, ""
    if _has_hue(rgb, dist_in, SAME_HUE_DEPTH * width, bd[1:]):
        return 0.0, 0, "the product has the backdrop's hue: not judged", name, ""
    step = max(1, ey.size // SPILL_POINTS)  # a share: an even sample of the outline measures it
    ey, ex = ey[::step], ex[::step]
    # the outline's normal: the distance map's gradient
    h, w = dist_in.shape
    gy = dist_in[np.minimum(ey + 1, h - 1), ex] - dist_in[np.maximum(ey - 1, 0), ex]
    gx = dist_in[ey, np.minimum(ex + 1, w - 1)] - dist_in[ey, np.maximum(ex - 1, 0)]
    norm = np.maximum(np.hypot(gx, gy), 1e-6)
    ny, nx = gy / norm, gx / norm
    # the product's own colour: 3 to 5 rim widths inward, from the 5x5 mean of the product layer
    mean5 = cv2.blur(rgb, (5, 5))
    inner, n_in = np.zeros((ey.size, 3), np.float32), np.zeros(ey.size, np.float32)
    for depth in SPILL_DEPTHS:
        iy = np.clip(np.rint(ey + ny * depth * width), 0, h - 1).astype(np.intp)
        ix = np.clip(np.rint(ex + nx * depth * width), 0, w - 1).astype(np.intp)
        inside = dist_in[iy, ix] > 2.0 * width
        inner[inside] += colours_at(mean5, iy[inside], ix[inside])
        n_in += inside
    have = n_in > 0
    ey, ex, ny, nx = ey[have], ex[have], ny[have], nx[have]
    own = opponent(inner[have] / n_in[have, None])[:, 1:]
    unit, p_in, room, across = _spill_axes(own, bd[1:])
    ux, uy = unit.T
    floor = np.where(across, -np.inf, 0.0).astype(np.float32)  # along the backdrop's hue: its chroma only
    ok = room >= MIN_HUE_GAP  # the product's own colour at least this far short of the backdrop's
    judged = int(ok.sum())
    if judged < 20:
        return 0.0, judged, "the product's rim has the backdrop's hue: not judged", name, ""
    # what the rim shows across the outline: chroma gained toward the backdrop along each point's
    # axis times alpha, summed over the pixels the normal crosses
    shown = np.zeros(ey.size, np.float32)
    for t in np.arange(-float(SPILL_OUT_PX), width + 1e-3, 1.0):
        sy = np.clip(np.rint(ey + ny * t), 0, h - 1).astype(np.intp)
        sx = np.clip(np.rint(ex + nx * t), 0, w - 1).astype(np.intp)
        c = opponent(colours_at(rgb, sy, sx))
        p = np.maximum(c[:, 1] * ux + c[:, 2] * uy, floor)
        shown += (p - p_in) * (a_roi[sy, sx].astype(np.float32) / 255.0)
    tinted = ok & (shown >= spill_tint * room) & (shown >= spill_chroma)
    where = _sides(ey, ex, ok, tinted) if tinted.any() else ""
    return float(tinted.sum()) / ey.size, judged, "", name, where


def _spill_axes(own: np.ndarray, backdrop: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The axis along which each rim point's tint toward the backdrop is read (opponent chroma):
    (N x 2 unit axes, the product's own colour on them, the room left to the backdrop's colour on
    them, which points are read across their own hue).

    Along the backdrop's hue, from grey: a rim that loses its own colour (a navy edge going grey)
    is not tinted toward an orange backdrop, though grey lies between navy and orange, so only
    chroma gained in the backdrop's hue counts, above the product's own (none for a colour
    opposite the backdrop's). Where the product's own colour already reaches within `MIN_HUE_GAP`
    of the backdrop's chroma on that axis (a yellow cap on red: yellow holds much of red's axis),
    that axis has no room, and the tint is read across the product's own hue instead: shading and
    a rim going grey move its colour along its own hue (opponent chroma scales with the light),
    while the backdrop's colour mixed in moves it across, toward the side the backdrop lies on; the
    room there is the backdrop's chroma across that hue (a product of the backdrop's own hue has
    none, and is not judged)."""
    bc = float(np.hypot(*backdrop))
    unit = np.broadcast_to(backdrop / bc, own.shape).copy()
    p_in = np.maximum(own @ (backdrop / bc), 0.0)
    room = bc - p_in
    oc = np.hypot(own[:, 0], own[:, 1])
    across = (room < MIN_HUE_GAP) & (oc >= MIN_BACKDROP_CHROMA)
    if across.any():
        o = own[across] / oc[across, None]
        perp = np.stack([-o[:, 1], o[:, 0]], axis=1)  # a quarter turn from the product's own hue
        side = perp @ backdrop
        perp *= np.where(side < 0, -1.0, 1.0)[:, None]  # ... toward the backdrop's side
        unit[across] = perp
        p_in[across] = 0.0
        room[across] = np.abs(side)
    return unit, p_in.astype(np.float32), room.astype(np.float32), across


def _has_hue(rgb: np.ndarray, dist_in: np.ndarray, depth: float, chroma: np.ndarray) -> bool:
    """Whether the product (its pixels at least `depth` inside, an even sample) is coloured in the
    backdrop's hue: its median chroma at least `MIN_BACKDROP_CHROMA` along the backdrop's
    (`chroma`, opponent axes) and within 20 degrees of it. A dark red cap shot on red: its rim
    takes more red from the backdrop, which reads as its own colour."""
    ys, xs = points(cv2.compare(dist_in, depth, cv2.CMP_GT))
    if ys.size < 20:
        return False
    step = max(1, ys.size // 4000)
    c = np.median(opponent(colours_at(rgb, ys[::step], xs[::step]))[:, 1:], axis=0)
    unit = chroma / max(float(np.hypot(*chroma)), 1e-6)
    along, across = float(c @ unit), abs(float(c[0] * unit[1] - c[1] * unit[0]))
    return along >= MIN_BACKDROP_CHROMA and across <= along * np.tan(np.radians(20))


def _sides(ys: np.ndarray, xs: np.ndarray, judged: np.ndarray, tinted: np.ndarray) -> str:
    """Where a tinted rim lies: the sides of the product (seen from its rim's centre) whose judged
    rim is tinted at least half as much as the most tinted side's ("top and left", ...)."""
    angle = np.degrees(np.arctan2(ys - ys[judged].mean(), xs - xs[judged].mean()))  # image y grows down
    sector = np.rint(angle / 90.0).astype(int) % 4  # 0 right, 1 bottom, 2 left, 3 top
    n = np.bincount(sector[judged], minlength=4)
    share = np.bincount(sector[tinted], minlength=4) / np.maximum(n, 1)
    names = ("right", "bottom", "left", "top")
    order = [i for i in (3, 2, 0, 1) if share[i] >= 0.5 * share.max() and n[i] >= 10] or [int(np.argmax(share))]
    said = [names[i] for i in order]
    return " and ".join([", ".join(said[:-1]), said[-1]] if len(said) > 1 else said)
