"""Leftover check (stages/check/leftovers.py): detection and false-alarm rates on cases built from real photos.

Clean cases are good cut-outs: the catalog photos with a hand mask (tests/data/masks), placed on the
canvas by the real layout step (floor, packshot and thirds placements). Leftovers are then added by
means that know nothing of the check's rules (its colour references, tolerances or texture measure):

- `island`: a strip of another catalog photo's real backdrop (wood table, quilt, tiles, sheet)
  pasted beside the product, detached from it;
- `hand`: a skin-coloured, shaded blob with fingers, detached beside the product;
- `kept`: a disc of the source photo's own backdrop, next to the product, added to its mask (the
  matte kept it), so it touches the product's outline;
- `spill`: the product's rim (the outer 1-3 x `spill_width`) blended toward a real red backdrop
  colour (the catalog's red tiles, photo 23) by 15%, 30% or 50%, the backdrop colour given as red;
- `fringe`: the product re-shot on a plain red, pink, orange or blue backdrop by the physical model
  of benchmarks/_fringe_cases.py (soft edge of `size` px plus colour bleed), then cut out by the
  real matte backend (embedded by default): the fringe a cut-out keeps from a coloured backdrop;
  `reshot` (must pass): the same re-shoot with a hard edge and at most a faint bleed (5%).

Sizes are multiples of the check's size floor (`stray_area` or `region_area` of the product's
area), from half of it (must pass) to ten times (1.5 is near the floor); for `spill` the size is
the tint. The printed table gives per family and size the cases caught (their check failed) and
false alarms (another leftover check failed; on a clean case, any).

Usage: .venv/bin/python benchmarks/leftover_eval.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
for _p in (REPO, REPO / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import _fringe_cases as fringes  # noqa: E402
from stages.check.fidelity import FidelityOptions, backdrop_colour, measure_outline  # noqa: E402
from stages.check.leftovers import LeftoverOptions, find_leftovers, leftover_checks  # noqa: E402
from stages.check.outline import product_size  # noqa: E402
from stages.layout import Layout, LayoutOptions, place_product  # noqa: E402

IMAGES = REPO / "catalog" / "images"
MASKS = REPO / "tests" / "data" / "masks"
# the hand-masked photos on plain backdrops, then the textured ones
PLAIN = ["19_shoes_black-suede_white", "20_shoes_beige-loafers_on-beige-floor", "22_shoes_strap-sandals_white",
         "27_hat_leather-cap_on-white-sheet", "28_hat_leather-newsboy-cap_on-white-sheet",
         "32_apparel_black-shorts_on-white-quilt"]
TEXTURED = ["23_shoes_white-sneakers_on-brown", "15_kitchen_coffee-cup_on-wood"]
# real backdrop regions of other catalog photos: (photo, x0, y0, x1, y1) in its pixels
BACKDROP_PATCHES = [("15_kitchen_coffee-cup_on-wood.png", 0, 0, 120, 100),
                    ("32_apparel_black-shorts_on-white-quilt.jpg", 0, 0, 120, 90),
                    ("23_shoes_white-sneakers_on-brown.jpg", 0, 420, 130, 533),
                    ("26_apparel_black-dress_on-white-sheet.jpg", 0, 330, 110, 427)]
RED_PHOTO = "23_shoes_white-sneakers_on-brown.jpg"  # its border: dark red tiles
MULTIPLES = (0.5, 1.5, 3.0, 10.0)  # sizes as multiples of the check's floor; 0.5 must pass


@dataclass(frozen=True)
class Case:
    family: str
    photo: str
    size: float  # the leftover's size as a multiple of the check's floor; 0 for a clean case
    layout: Layout
    source_rgb: np.ndarray
    source_alpha: np.ndarray
    backdrop: np.ndarray | None
    check: str = ""  # the check that must fail; "" = none must


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def photo_path(stem: str) -> Path:
    return next(IMAGES.glob(f"{stem}.*"))


def clean_case(stem: str, placement: str = "", canvas: int = 1024) -> Case:
    """A good cut-out: the photo with its hand mask, placed by the layout step."""
    rgb, alpha = read_rgb(photo_path(stem)), cv2.imread(str(MASKS / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
    layout = place_product(rgb, alpha, LayoutOptions(width=canvas, height=canvas), placement)
    return Case("clean", stem, 0.0, layout, rgb, alpha, backdrop_colour(rgb, alpha, {}))


def _visible_px(layout: Layout) -> int:
    return int((layout.product_alpha >= 128).sum())


def _open_spot(layout: Layout, radius: float, away: float, rng: np.random.Generator) -> tuple[int, int] | None:
    """A centre where a blob of `radius` lies `away` px or more from the product, inside the canvas."""
    free = cv2.distanceTransform((layout.product_alpha == 0).view(np.uint8), cv2.DIST_L2, 5)
    h, w = free.shape
    r = int(np.ceil(radius)) + 2
    ok = np.zeros_like(free, bool)
    ok[r:h - r, r:w - r] = free[r:h - r, r:w - r] >= radius + away
    # nearest such spots first: a leftover sits beside the product
    ys, xs = np.nonzero(ok & (free <= radius + away + 6))
    if ys.size == 0:
        return None
    i = rng.integers(ys.size)
    return int(xs[i]), int(ys[i])


def _with_layer(case: Case, family: str, size: float, rgb: np.ndarray, alpha: np.ndarray, check: str) -> Case:
    layout = replace(case.layout, product_rgb=rgb, product_alpha=alpha,
                     mask=np.where(alpha < 255, 255, 0).astype(np.uint8))
    return replace(case, family=family, size=size, layout=layout, check=check)


def island(case: Case, size: float, rng: np.random.Generator, cfg: LeftoverOptions, hand: bool = False) -> Case | None:
    """A detached leftover of `size` x the stray floor: a strip of a real backdrop photo, or a hand."""
    area = size * cfg.stray_area * _visible_px(case.layout)
    if hand:  # a palm (ellipse) with four fingers, skin-coloured and shaded
        rx = np.sqrt(area / np.pi / 1.3 / 1.25)
        shape = np.zeros((int(6 * rx), int(6 * rx)), np.uint8)
        c = shape.shape[0] // 2
        cv2.ellipse(shape, (c, c), (round(rx), round(1.3 * rx)), 0, 0, 360, 255, -1)
        for k in range(4):
            x = int(c - 0.75 * rx + k * 0.5 * rx)
            cv2.line(shape, (x, c), (x + k - 2, int(c - 2.1 * rx)), 255, max(1, int(0.28 * rx)))
        yy = np.linspace(0.8, 1.1, shape.shape[0], dtype=np.float32)[:, None, None]
        patch = np.clip(np.array([222, 170, 140], np.float32) * yy + rng.normal(0, 3, (*shape.shape, 3)), 0, 255)
    else:  # a strip, three times as wide as high, of a real backdrop region of another photo
        name, x0, y0, x1, y1 = BACKDROP_PATCHES[rng.integers(len(BACKDROP_PATCHES))]
        src = read_rgb(IMAGES / name)[y0:y1, x0:x1]
        sh = max(2, round(np.sqrt(area / 3.0)))
        shape = np.full((sh, 3 * sh), 255, np.uint8)
        patch = cv2.resize(src, (3 * sh, sh), interpolation=cv2.INTER_AREA).astype(np.float32)
    h, w = shape.shape
    gap = cfg.gap * product_size(case.layout.product_alpha)
    spot = _open_spot(case.layout, 0.5 * np.hypot(h, w), 3.0 * gap + 4, rng)
    if spot is None:
        return None
    x, y = spot[0] - w // 2, spot[1] - h // 2
    rgb, alpha = case.layout.product_rgb.copy(), case.layout.product_alpha.copy()
    sel = shape > 0
    rgb[y:y + h, x:x + w][sel] = patch[sel].astype(np.uint8)
    alpha[y:y + h, x:x + w][sel] = 255
    return _with_layer(case, "hand" if hand else "island", size, rgb, alpha, "stray_parts")


def kept_backdrop(case: Case, size: float, rng: np.random.Generator, cfg: LeftoverOptions,
                  canvas: int = 1024) -> Case | None:
    """A disc of the source's own backdrop beside the product, added to its mask (kept by the matte)."""
    alpha = case.source_alpha
    target = size * cfg.region_area * float((alpha >= 128).sum())
    ys = np.nonzero(alpha >= 128)[0]
    row = int(np.median(ys) + rng.uniform(-0.25, 0.25) * (ys.max() - ys.min()))
    cols = np.nonzero(alpha[row] >= 128)[0]
    if cols.size == 0:
        return None
    side = int(rng.integers(2))
    edge = int(cols.min()) if side == 0 else int(cols.max())
    outside = (alpha < 128).view(np.uint8)  # the soft edge too: the kept disc joins the product
    grown = alpha.copy()
    for r in range(3, alpha.shape[1]):
        disc = np.zeros_like(outside)
        cv2.circle(disc, (edge + (-1 if side == 0 else 1) * r // 2, row), r, 1, -1)
        added = disc.view(bool) & outside.view(bool)
        if added.sum() >= target:
            grown[added] = 255
            break
    else:
        return None
    layout = place_product(case.source_rgb, grown, LayoutOptions(width=canvas, height=canvas),
                           case.layout.placement.preset or case.layout.placement.mode)
    return replace(case, family="kept", size=size, layout=layout, source_alpha=grown, check="backdrop_region")


def red_backdrop() -> np.ndarray:
    """A real red backdrop colour: the border median of the catalog photo on red-brown tiles."""
    rgb = read_rgb(IMAGES / RED_PHOTO)
    b = 8
    border = np.concatenate([rgb[:b].reshape(-1, 3), rgb[-b:].reshape(-1, 3), rgb[:, :b].reshape(-1, 3),
                             rgb[:, -b:].reshape(-1, 3)])
    return np.median(border.astype(np.float32), axis=0)


def spill(case: Case, tint: float, width: float, red: np.ndarray, cfg: LeftoverOptions) -> Case:
    """The product's rim (`width` x spill_width of its size) blended `tint` of the way to red."""
    layout = case.layout
    outline = measure_outline(layout, FidelityOptions())
    px = max(2.0, width * cfg.spill_width * outline.size)
    inside = cv2.distanceTransform((layout.product_alpha >= 128).view(np.uint8), cv2.DIST_L2, 5)
    rim = (inside > 0) & (inside <= px)
    rgb = layout.product_rgb.copy()
    rgb[rim] = np.clip((1 - tint) * rgb[rim] + tint * red, 0, 255).astype(np.uint8)
    out = _with_layer(case, "spill", tint, rgb, layout.product_alpha, "rim_spill")
    return replace(out, backdrop=red)


def fringe(stem: str, colour: str, soft: float, bleed: float, matte: Any, canvas: int = 1024) -> Case:
    """The product of a hand-masked photo re-shot on a plain `colour` backdrop (soft edge of `soft`
    px, colour bleed `bleed`), cut out by `matte` (a matte backend) and placed by the layout step.
    A soft edge of 1 px or more is a visible fringe (`rim_spill` must fail); a hard edge with a
    faint bleed (<= 5%) is a clean re-shoot (`reshot`: none must fail)."""
    rgb, mask = fringes.hand_masked(stem)
    src = fringes.reshoot(rgb, mask, fringes.BACKDROPS[colour], soft, bleed)
    m = matte.run(src)
    layout = place_product(src, m.alpha, LayoutOptions(width=canvas, height=canvas))
    visible = soft >= 1.0
    return Case("fringe" if visible else "reshot", stem, soft if visible else bleed, layout, src, m.alpha,
                backdrop_colour(src, m.alpha, m.details), "rim_spill" if visible else "")


def fringe_cases(stems: list[str], matte: Any) -> list[Case]:
    """Per photo, one colour in turn: two visible fringes (1.5 px edge, faint bleed; 3 px, 30%
    bleed) and two clean re-shoots (hard edge, no bleed and 5% bleed)."""
    colours = list(fringes.BACKDROPS)
    cases = []
    for i, stem in enumerate(stems):
        colour = colours[i % len(colours)]
        cases += [fringe(stem, colour, soft, bleed, matte) for soft, bleed in ((1.5, 0.05), (3.0, 0.3), (0, 0), (0, 0.05))]
    return cases


def judge(case: Case, cfg: LeftoverOptions) -> dict[str, bool]:
    """{check name: failed} for one case."""
    outline = measure_outline(case.layout, FidelityOptions())
    found = find_leftovers(case.layout.product_rgb, case.layout.product_alpha, case.layout.placement, outline,
                           case.source_rgb, case.source_alpha, case.backdrop, cfg)
    return {c.name: not c.passed for c in leftover_checks(found, cfg)}


def build_cases(stems: list[str], cfg: LeftoverOptions, seed: int = 0) -> list[Case]:
    rng = np.random.default_rng(seed)
    red = red_backdrop()
    cases: list[Case] = []
    for stem in stems:
        clean = [clean_case(stem, p) for p in ("", "packshot", "thirds")]
        cases += clean
        base = clean[0]
        for m in MULTIPLES:
            cases += [c for c in (island(base, m, rng, cfg), island(base, m, rng, cfg, hand=True),
                                  kept_backdrop(base, m, rng, cfg)) if c is not None]
        for tint in (0.15, 0.3, 0.5):
            cases.append(spill(base, tint, 2.0, red, cfg))
    return cases


def evaluate(cases: list[Case], cfg: LeftoverOptions) -> dict[str, dict[str, list[int]]]:
    """{family: {size: [caught, total, false alarms]}}: caught = its check failed; a false alarm =
    another leftover check failed (on a clean case: any)."""
    table: dict[str, dict[str, list[int]]] = {}
    for case in cases:
        failed = judge(case, cfg)
        row = table.setdefault(case.family, {}).setdefault(f"{case.size:g}", [0, 0, 0])
        row[1] += 1
        if case.check:
            row[0] += failed[case.check]
            row[2] += any(v for k, v in failed.items() if k != case.check)
        else:
            row[2] += any(failed.values())
    return table


def timing(stem: str, cfg: LeftoverOptions, canvas: int = 1024, repeat: int = 9) -> float:
    """Fastest of `repeat` runs of the whole leftover check on one product, in ms."""
    case = clean_case(stem, "", canvas)
    outline = measure_outline(case.layout, FidelityOptions())
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        find_leftovers(case.layout.product_rgb, case.layout.product_alpha, case.layout.placement, outline,
                       case.source_rgb, case.source_alpha, case.backdrop, cfg)
        best = min(best, time.perf_counter() - t)
    return best * 1000.0


def key_figures(table: dict[str, dict[str, list[int]]]) -> tuple[float, float]:
    """(detection rate over the leftovers at 3x the floor or more, the 50% rim tint and the fringes,
    false-alarm rate over the clean cases, the clean re-shoots and the leftovers at half the floor,
    which must pass)."""
    hit = n = fa = m = 0
    for family, rows in table.items():
        for size, (caught, total, false) in rows.items():
            if family == "clean":
                fa, m = fa + false, m + total
            elif family == "reshot":
                fa, m = fa + false, m + total
            elif family == "fringe" or (family == "spill" and float(size) >= 0.5) or \
                    (family != "spill" and float(size) >= 3):
                hit, n = hit + caught, n + total
            elif family != "spill" and float(size) <= 0.5:
                fa, m = fa + caught + false, m + total
    return hit / max(n, 1), fa / max(m, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="three photos")
    args = ap.parse_args()
    cfg = LeftoverOptions()
    stems = PLAIN[:2] + TEXTURED[:1] if args.quick else PLAIN + TEXTURED
    from stages.matte.plain_backdrop import PlainBackdropMatte, PlainBackdropOptions

    cases = build_cases(stems, cfg) + fringe_cases(stems, PlainBackdropMatte(PlainBackdropOptions()))
    table = evaluate(cases, cfg)
    print(f"{'family':8s} {'size':>5s} {'caught':>8s} {'false alarms':>13s}")
    for family, rows in table.items():
        for size, (caught, total, false) in rows.items():
            shown = f"{caught}/{total}" if family != "clean" else f"-/{total}"
            print(f"{family:8s} {size:>5s} {shown:>8s} {false:>10d}/{total}")
    for stem in stems[:3]:
        print(f"timing {stem}: {timing(stem, cfg):.1f} ms at 1024 px (fastest of 9)")
    det, fa = key_figures(table)
    ok = det >= 0.9 and fa <= 0.02
    print(f"detection {det:.0%} (>= 3x the floor, 50% rim tint, fringes; target >= 90%), false alarms {fa:.0%} "
          f"(clean, re-shot and half-floor cases; target <= 2%): {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
