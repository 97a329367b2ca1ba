"""Regenerate the reference masks in this folder from the catalog photos.

Each mask starts from OpenCV's GrabCut (a colour-model graph cut that shares nothing with the
studio backend) seeded with a hand-chosen rectangle and hand-placed strokes: `fg` strokes are
certainly product, `bg` strokes certainly backdrop. Strokes are `(width, [(x, y), ...])` in
source-image pixels: a polyline of that width, or a filled polygon when the width is 0. The
coordinates below were read off the photos at high zoom and corrected until the outline followed
the product; README.md gives the labelling policy (shadows, hangers, holes).

The binary cut then gets a soft edge: in a BAND px strip either side of the outline alpha is the
linear-mix coverage between the neighbouring product and backdrop colours; everything else is
0 or 255.

    .venv/bin/python tests/data/masks/make_masks.py                  # write all masks
    .venv/bin/python tests/data/masks/make_masks.py 19 22            # only these photos
    .venv/bin/python tests/data/masks/make_masks.py --overlay /tmp/ov  # also write review overlays
    .venv/bin/python tests/data/masks/make_masks.py --check          # compare with the stored masks
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
IMAGES = HERE.parents[2] / "catalog" / "images"
BAND = 2  # px either side of the binary outline that get a soft alpha
WINDOW = 9  # px: neighbourhood for the local product and backdrop colours
MIN_CONTRAST = 24.0  # levels: below this the local colours are too alike to mix
ITERATIONS = 10
MIN_PART = 40  # px: product islands smaller than this are GrabCut noise
MIN_GAP = 12  # px: enclosed backdrop pockets smaller than this are filled

# rect: (x0, y0, x1, y1), everything outside is backdrop.
SPECS: dict[str, dict] = {
    "19_shoes_black-suede_white": {
        "rect": (62, 112, 335, 462),
        "fg": [
            (5, [(120, 160), (125, 300), (130, 420)]),
            (5, [(265, 140), (260, 300), (262, 440)]),
            (5, [(95, 250), (95, 380)]),
            (5, [(215, 250), (215, 400)]),
            (5, [(298, 200), (305, 380)]),
        ],
        "bg": [
            (3, [(194, 112), (193, 200), (191, 300), (191, 400), (190, 440)]),
            (3, [(62, 444), (190, 444)]),
        ],
    },
    "20_shoes_beige-loafers_on-beige-floor": {
        "rect": (60, 30, 392, 514),
        "fg": [
            (5, [(140, 70), (145, 250), (150, 480)]),
            (5, [(95, 200), (100, 400)]),
            (5, [(195, 200), (195, 420)]),
            (5, [(290, 55), (300, 250), (310, 480)]),
            (5, [(255, 150), (265, 420)]),
            (5, [(355, 200), (360, 420)]),
            # the pale collar rims of both heels, 2-5 px wide and neutral against the pink floor
            (1, [(100, 92), (100, 80), (102, 72), (102, 68), (105, 64), (107, 60), (112, 56), (116, 52),
                 (120, 50), (125, 49), (130, 49), (135, 50), (140, 51), (145, 54)]),
            (1, [(237, 128), (237, 116), (239, 112), (241, 106), (242, 100), (245, 96), (246, 92),
                 (248, 88), (250, 84), (251, 80), (256, 76), (257, 72), (260, 68), (262, 64), (266, 60),
                 (267, 56), (272, 51), (277, 46), (280, 43), (285, 40), (290, 39), (295, 39), (300, 40),
                 (305, 43), (307, 46)]),
        ],
        "bg": [
            (3, [(215, 30), (215, 100), (222, 200), (225, 300), (226, 360), (230, 450), (225, 514)]),
        ],
    },
    "22_shoes_strap-sandals_white": {
        "rect": (20, 32, 388, 394),
        "fg": [
            (5, [(100, 60), (110, 200), (110, 360)]),
            (3, [(35, 262), (150, 270)]),
            (5, [(60, 128), (210, 158)]),
            (5, [(290, 60), (295, 200), (300, 370)]),
            (3, [(255, 270), (350, 262)]),
            (5, [(245, 140), (340, 115)]),
            (3, [(248, 121), (248, 124)]),  # highlight on the strap's metal loop, not a hole
        ],
        "bg": [
            (3, [(205, 32), (205, 118)]),
            (3, [(203, 182), (205, 300), (210, 394)]),
            (3, [(185, 185), (188, 300), (182, 394)]),
            (3, [(222, 188), (224, 300), (226, 394)]),
            (3, [(378, 140), (378, 240)]),
            (3, [(386, 300), (375, 394)]),
            (3, [(73, 178), (68, 202)]),  # backdrop seen between strap and sole
        ],
    },
    "27_hat_leather-cap_on-white-sheet": {
        "rect": (88, 138, 282, 420),
        "fg": [
            (5, [(185, 170), (185, 380)]),
            (5, [(120, 220), (130, 380)]),
            (5, [(250, 220), (250, 380)]),
        ],
        "bg": [
            (3, [(88, 414), (282, 414)]),
        ],
    },
    "28_hat_leather-newsboy-cap_on-white-sheet": {
        "rect": (3, 80, 386, 466),
        "fg": [
            (5, [(60, 250), (340, 250)]),
            (5, [(180, 100), (190, 440)]),
            (5, [(40, 280), (110, 410)]),
        ],
        "bg": [
            # cast shadow along the right of the crown: a flat, warm plateau (~100-125 levels,
            # the tone of the other shadow at the bottom right) between two sharp steps
            (1, [(357, 190), (362, 200), (369, 220), (373, 240), (373, 270), (370, 280), (369, 290),
                 (368, 300), (363, 310), (360, 320), (355, 330), (350, 340)]),
            (3, [(340, 372), (386, 372)]),
            (3, [(8, 400), (50, 445)]),
        ],
    },
    "32_apparel_black-shorts_on-white-quilt": {
        "rect": (8, 105, 365, 392),
        "fg": [
            (5, [(100, 200), (300, 200)]),
            (5, [(80, 320), (150, 340)]),
            (5, [(250, 330), (320, 320)]),
            (5, [(200, 140), (200, 280)]),
        ],
        "bg": [
            (3, [(195, 330), (195, 392)]),
        ],
    },
    "23_shoes_white-sneakers_on-brown": {
        "rect": (92, 98, 336, 416),
        "fg": [
            (5, [(150, 120), (150, 400)]),
            (5, [(125, 150), (130, 380)]),
            (5, [(185, 150), (180, 380)]),
            (5, [(265, 120), (265, 400)]),
            (5, [(230, 150), (230, 380)]),
            (5, [(300, 150), (300, 330)]),
        ],
        "bg": [
            # backdrop between the shoes: a V above the point where they touch, a slit below
            (3, [(210, 98), (211, 150), (212, 186)]),
            (1, [(208, 250), (206, 280), (205, 300), (205, 340), (206, 416)]),
            (1, [(304, 358), (301, 370), (298, 381), (298, 392)]),
        ],
    },
    "15_kitchen_coffee-cup_on-wood": {
        # cup, saucer and spoon are the product; the saucer is close to an ellipse centred
        # (278, 228) with half-axes (200, 158): strokes at 85% inside and 112% outside it
        "rect": (50, 12, 505, 400),
        "fg": [
            (5, [(448, 228), (425, 295), (363, 344), (278, 362), (193, 344), (131, 295), (108, 228),
                 (131, 161), (193, 112), (278, 94), (363, 112), (425, 161), (448, 228)]),
            (5, [(200, 120), (390, 120)]),
            (5, [(290, 40), (290, 300)]),
            (2, [(412, 80), (408, 120)]),
            (3, [(350, 270), (370, 300)]),
        ],
        "bg": [
            (3, [(436, 103), (472, 140), (502, 228), (472, 316), (436, 353), (390, 381), (336, 399),
                 (220, 399), (166, 381), (120, 353), (84, 316), (54, 228), (84, 140), (120, 103)]),
        ],
    },
}


def _draw(mask: np.ndarray, items: list, value: int) -> None:
    for width, pts in items:
        p = np.int32(pts).reshape(-1, 1, 2)
        if width == 0:
            cv2.fillPoly(mask, [p], value)
        else:
            cv2.polylines(mask, [p], False, value, width)


def seeds(shape: tuple[int, int], spec: dict) -> np.ndarray:
    """GrabCut label map from the spec: outside the rectangle and `bg` strokes are definite
    backdrop, `fg` strokes definite product (drawn last, so they win), the rest of the rectangle
    probable product."""
    h, w = shape
    m = np.full((h, w), cv2.GC_BGD, np.uint8)
    x0, y0, x1, y1 = spec["rect"]
    m[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)] = cv2.GC_PR_FGD
    _draw(m, spec.get("bg", []), cv2.GC_BGD)
    _draw(m, spec.get("fg", []), cv2.GC_FGD)
    return m


def binary_cut(rgb: np.ndarray, spec: dict) -> np.ndarray:
    """GrabCut from the seeds, then specks dropped and pinholes filled."""
    m = seeds(rgb.shape[:2], spec)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    cv2.grabCut(np.ascontiguousarray(rgb[..., ::-1]), m, None, bgd, fgd, ITERATIONS, cv2.GC_INIT_WITH_MASK)
    fg = (m == cv2.GC_FGD) | (m == cv2.GC_PR_FGD)
    # drop specks, fill pinholes (JPEG noise), but keep every hand-marked backdrop pixel out
    n, lab, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    fg = (stats[:, cv2.CC_STAT_AREA] >= MIN_PART)[lab] & fg
    n, lab, stats, _ = cv2.connectedComponentsWithStats((~fg).astype(np.uint8), connectivity=4)
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    small = stats[:, cv2.CC_STAT_AREA] < MIN_GAP
    small[border] = False
    hard_bg = seeds(rgb.shape[:2], {**spec, "fg": []}) == cv2.GC_BGD
    return (fg | small[lab]) & ~hard_bg


def soften(rgb: np.ndarray, fg: np.ndarray, spec: dict) -> np.ndarray:
    """Soft alpha in a BAND-px strip either side of the binary outline.

    Each strip pixel is modelled as a linear mix of the product and backdrop colours next to it:
    F and B are the mean colours of the sure product and sure backdrop pixels (outside the strip)
    in a WINDOW x WINDOW neighbourhood, and alpha = (I - B).(F - B) / |F - B|^2, clipped to
    [0, 1]. Where the two means are too alike to tell (|F - B| < MIN_CONTRAST levels) the binary
    cut is kept.
    """
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * BAND + 1, 2 * BAND + 1))
    f8 = fg.astype(np.uint8)
    sure_fg = cv2.erode(f8, k).astype(bool)
    sure_bg = ~cv2.dilate(f8, k).astype(bool)
    strip = ~sure_fg & ~sure_bg
    img = rgb.astype(np.float32)

    def local_mean(region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = region.astype(np.float32)
        n = cv2.boxFilter(w, -1, (WINDOW, WINDOW), normalize=False)
        s = cv2.boxFilter(img * w[..., None], -1, (WINDOW, WINDOW), normalize=False)
        return s / np.maximum(n, 1e-6)[..., None], n

    f_mean, f_n = local_mean(sure_fg)
    b_mean, b_n = local_mean(sure_bg)
    fb = f_mean - b_mean
    fb2 = (fb * fb).sum(axis=2)
    mix = ((img - b_mean) * fb).sum(axis=2) / np.maximum(fb2, 1e-6)
    usable = strip & (f_n > 0.5) & (b_n > 0.5) & (fb2 >= MIN_CONTRAST**2)
    alpha = fg.astype(np.float32)
    alpha[usable] = np.clip(mix[usable], 0.0, 1.0)
    # hand-marked pixels are not up for re-estimation
    s = seeds(rgb.shape[:2], spec)
    alpha[s == cv2.GC_BGD] = 0.0
    alpha[s == cv2.GC_FGD] = 1.0
    return np.round(alpha * 255.0).astype(np.uint8)


def overlay(rgb: np.ndarray, alpha: np.ndarray, spec: dict, scale: int = 2) -> np.ndarray:
    """Photo with the 50% outline in red, backdrop tinted blue, strokes drawn thin."""
    big = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC).astype(np.float32)
    a = cv2.resize(alpha, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    tint = np.float32([40, 90, 255])
    big = big * a[..., None] + (big * 0.5 + tint * 0.5) * (1 - a[..., None])
    out = np.clip(big, 0, 255).astype(np.uint8)
    edge = (a > 0.5).astype(np.uint8)
    contours, _ = cv2.findContours(edge, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, (255, 0, 0), 1)
    for key, col in (("fg", (0, 200, 0)), ("bg", (255, 0, 255))):
        for width, pts in spec.get(key, []):
            p = (np.int32(pts) * scale).reshape(-1, 1, 2)
            if width == 0:
                cv2.polylines(out, [p], True, col, 1)
            else:
                cv2.polylines(out, [p], False, col, 1)
    return out


def photo(stem: str) -> Path:
    (path,) = [p for p in IMAGES.iterdir() if p.stem == stem]
    return path


def make(stem: str) -> np.ndarray:
    spec = SPECS[stem]
    rgb = np.asarray(Image.open(photo(stem)).convert("RGB"))
    return soften(rgb, binary_cut(rgb, spec), spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("only", nargs="*", help="photo number prefixes (default: all)")
    ap.add_argument("--overlay", type=Path, help="also write <stem>_overlay.png here for review")
    ap.add_argument("--out", type=Path, default=HERE, help="where to write the masks (default: here)")
    ap.add_argument("--check", action="store_true", help="write nothing; compare with the stored masks")
    args = ap.parse_args()
    status = 0
    for stem, spec in SPECS.items():
        if args.only and stem.split("_")[0] not in args.only:
            continue
        alpha = make(stem)
        if args.check:
            stored = np.asarray(Image.open(HERE / f"{stem}.png").convert("L"))
            changed = int(((stored >= 128) != (alpha >= 128)).sum())
            diff = int(np.abs(stored.astype(int) - alpha).max())
            print(f"{stem}: {changed} px changed side, largest alpha difference {diff}")
            status |= changed > 0
            continue
        Image.fromarray(alpha).save(args.out / f"{stem}.png", optimize=True)
        if args.overlay:
            args.overlay.mkdir(parents=True, exist_ok=True)
            rgb = np.asarray(Image.open(photo(stem)).convert("RGB"))
            Image.fromarray(overlay(rgb, alpha, spec)).save(args.overlay / f"{stem}_overlay.png")
        print(f"{stem}: product {(alpha >= 128).mean():.1%} of the frame")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
