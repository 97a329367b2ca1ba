"""Object-expansion detector: detection and false-alarm rates on cases built from real photos.

Negatives are clean composites made by the pipeline's own steps (`stages.pipeline.stage`:
plain-backdrop matte, layout, geometric depth, the procedural scene in several colours, composite;
no shadow layer, so the band around the product holds only the scene) from the photos in
catalog/images.
Positives are the same composites after the product's silhouette was extended into the band
around it, the way generators draw "more product":

- `elongate`: the product continues past its outline (a longer bottle, a taller shoe): the
  product layer shifted outward is pasted where it falls outside the original outline;
- `strap`: a strap or lace leaves the outline along its normal, in the product's edge colour;
- `blob`: an extra piece (a second heel, a knob) made of the product's own texture, attached
  to the outline.

Each is built at three sizes (3%, 6%, 10% of the product's size), at a random outline point
whose outward ray runs through open scene. The last line prints the key figure: detection rate
over all built cases and false-alarm rate over the clean composites (targets: >= 80%, <= 5%).
Faint cases (the extension's colour within `min_contrast` of the scene it covers, e.g. a black
strap on a charcoal wall) are counted in the detection rate and also reported apart.

Usage: .venv/bin/python benchmarks/fidelity_eval.py [--quick] [--canvas 512] [--method heuristic|resegment]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ops.config import Config, load_config  # noqa: E402
from ops.sources import load_image  # noqa: E402
from ops.workbench import load_parts  # noqa: E402
from stages.check.fidelity import expansion_heuristic, expansion_resegment  # noqa: E402
from stages.composite import composite  # noqa: E402
from stages.layout import Layout  # noqa: E402
from stages.matte import compute_matte, load_matte_backend  # noqa: E402
from stages.pipeline import Brief, Photo, stage  # noqa: E402

IMAGES = REPO / "catalog" / "images"
# Plain-backdrop photos the plain-backdrop matte cuts out reliably (tests/data/masks: IoU >= 0.97) plus
# the hanger shots; the textured-backdrop photos go to review before any scene is made.
PHOTOS = [
    "19_shoes_black-suede_white.jpg", "20_shoes_beige-loafers_on-beige-floor.jpg",
    "22_shoes_strap-sandals_white.jpg", "27_hat_leather-cap_on-white-sheet.jpg",
    "28_hat_leather-newsboy-cap_on-white-sheet.jpg", "32_apparel_black-shorts_on-white-quilt.jpg",
    "31_apparel_shorts-on-hanger_white-wall.jpg", "34_apparel_light-shirt-on-hanger_white-wall.jpg",
]
PROMPTS = ["clean studio backdrop", "sage green wall", "charcoal backdrop", "warm terracotta backdrop",
           "dusty blue backdrop"]
KINDS = ("elongate", "strap", "blob")
SIZES = (0.03, 0.06, 0.10)


@dataclass
class Case:
    photo: str
    prompt: str
    scene: np.ndarray  # the generated background, before the product went back on
    final: np.ndarray
    layout: Layout
    source_rgb: np.ndarray
    matte_alpha: np.ndarray
    matte_details: dict


def base_config(canvas: int = 512) -> Config:
    cfg = load_config(REPO / "config.toml")
    return replace(cfg, layout=replace(cfg.layout, width=canvas, height=canvas))


def clean_cases(cfg: Config, photos: list[str] = PHOTOS, prompts: list[str] = PROMPTS, seed: int = 7) -> list[Case]:
    """Clean composites made by the pipeline's steps, one per (photo, prompt)."""
    cfg = replace(cfg, scene=replace(cfg.scene, backend="procedural", fallback=()),
                  shadow=replace(cfg.shadow, enabled=False))
    parts = load_parts(cfg)
    out = []
    for name in photos:
        img = load_image(str(IMAGES / name), cfg.load)
        matte = compute_matte(parts.matte, img.rgb, img.alpha)
        for i, prompt in enumerate(prompts):
            staging = stage(parts, Photo(img.rgb, img.alpha), Brief(prompt), [seed + i], matte=matte, checks="none")
            v = staging.variants[0]
            out.append(Case(name, prompt, v.scene.rgb, v.pixels, staging.layout, img.rgb, matte.alpha, matte.details))
    return out


def _size(alpha: np.ndarray) -> float:
    ys, xs = np.nonzero(alpha > 0)
    return float(np.sqrt((xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)))


def _outline_points(alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outline points with their outward normals (from the gradient of the smoothed alpha)."""
    a = cv2.GaussianBlur(alpha.astype(np.float32) / 255.0, (0, 0), 3.0)
    gy, gx = np.gradient(a)
    sil = (alpha >= 128).view(np.uint8)
    edge = (sil > 0) & (cv2.erode(sil, np.ones((3, 3), np.uint8)) == 0)
    ys, xs = np.nonzero(edge)
    n = -np.stack([gx[ys, xs], gy[ys, xs]], axis=1)
    norm = np.linalg.norm(n, axis=1)
    ok = norm > 1e-4
    return np.stack([xs[ok], ys[ok]], axis=1), n[ok] / norm[ok, None]


def _paste(scene: np.ndarray, region: np.ndarray, colours: np.ndarray, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Draw `colours` into the generated scene over `region` (1 px feather), as a generator would
    (it paints everything that is not opaque product), then composite the product back on."""
    region = region & (layout.product_alpha < 255)
    a = cv2.GaussianBlur(region.astype(np.float32), (0, 0), 0.8)
    out = scene.astype(np.float32) * (1 - a[..., None]) + colours.astype(np.float32) * a[..., None]
    painted = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return composite(painted, layout), region & (layout.product_alpha == 0)


def extend(case: Case, kind: str, rel: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The case's final image with the product extended outward; returns (image, extension mask)."""
    alpha, rgb = case.layout.product_alpha, case.layout.product_rgb
    h, w = alpha.shape
    size = _size(alpha)
    length = max(3.0, rel * size)
    pts, normals = _outline_points(alpha)
    # outline points whose outward normal points up, left or right (not into the floor), away from the edge
    ok = (normals[:, 1] < 0.5) & (pts[:, 0] > length + 4) & (pts[:, 0] < w - length - 4) & (pts[:, 1] > length + 4)
    # the outward ray must run through open scene (not across a gap into the product again)
    steps = np.arange(3, int(length) + 4, dtype=np.float32)
    rx = np.clip(np.rint(pts[:, :1] + normals[:, :1] * steps), 0, w - 1).astype(int)
    ry = np.clip(np.rint(pts[:, 1:] + normals[:, 1:] * steps), 0, h - 1).astype(int)
    ok &= (alpha[ry, rx] == 0).all(axis=1)
    pts, normals = pts[ok], normals[ok]
    k = int(rng.integers(len(pts)))
    (x0, y0), (nx, ny) = pts[k], normals[k]
    if kind == "elongate":
        # shift the product along the outward normal at a random outline point; keep the part
        # near that point (a local continuation, not a whole second product)
        dx, dy = int(round(nx * length)), int(round(ny * length))
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        shifted_a = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_NEAREST)
        shifted = cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_NEAREST)
        yy, xx = np.mgrid[:h, :w]
        near = (xx - x0 - dx / 2) ** 2 + (yy - y0 - dy / 2) ** 2 <= (1.5 * length + 0.08 * size) ** 2
        region = (shifted_a >= 128) & near
        return _paste(case.scene, region, shifted, case.layout)
    if kind == "strap":
        width = max(2, int(round(0.25 * length)))
        region = np.zeros((h, w), np.uint8)
        end = (int(round(x0 + nx * length)), int(round(y0 + ny * length)))
        cv2.line(region, (int(x0), int(y0)), end, 1, thickness=width)
        inside = alpha >= 128
        sample = inside & ((np.mgrid[:h, :w][0] - y0) ** 2 + (np.mgrid[:h, :w][1] - x0) ** 2 <= (2 * width + 3) ** 2)
        colour = np.median(rgb[sample], axis=0) if sample.any() else rgb[y0, x0]
        shade = rng.normal(0, 4, size=(h, w, 1))
        colours = np.clip(colour[None, None, :] + shade, 0, 255)
        return _paste(case.scene, region.astype(bool), colours, case.layout)
    if kind == "blob":
        r = max(3, int(round(0.5 * length)))
        cx, cy = int(round(x0 + nx * r)), int(round(y0 + ny * r))
        region = np.zeros((h, w), np.uint8)
        cv2.circle(region, (cx, cy), r, 1, -1)
        # texture: the product's own pixels from a patch further inside, moved out
        ix, iy = int(round(x0 - nx * 2 * r)), int(round(y0 - ny * 2 * r))
        m = np.float32([[1, 0, cx - ix], [0, 1, cy - iy]])
        moved = cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_NEAREST)
        moved_a = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_NEAREST)
        region = region.astype(bool) & (moved_a >= 128)
        return _paste(case.scene, region, moved, case.layout)
    raise ValueError(f"unknown extension kind {kind!r}")


def detect(case: Case, image: np.ndarray, cfg: Config, method: str, resegmenter=None):
    if method == "resegment":
        alpha2 = resegmenter.run(image).alpha
        return expansion_resegment(image, case.layout, cfg.fidelity, alpha2)
    return expansion_heuristic(image, case.layout, cfg.fidelity)


def evaluate(cfg: Config, cases: list[Case], method: str = "heuristic", resegmenter=None,
             sizes=SIZES, kinds=KINDS, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    limit = cfg.fidelity.expansion_limit
    neg = [detect(c, c.final, cfg, method, resegmenter).score for c in cases]
    false_alarms = [(c.photo, c.prompt, s) for c, s in zip(cases, neg) if s > limit]
    per: dict[tuple[str, float], list[bool]] = {}
    missed = []
    seen: list[bool] = []
    faint: list[bool] = []
    for c in cases:
        for kind in kinds:
            for rel in sizes:
                img, region = extend(c, kind, rel, rng)
                if region.sum() < 4:
                    continue
                hit = detect(c, img, cfg, method, resegmenter).score > limit
                # visible: the extension differs clearly from the scene it covers (dark on dark is not)
                diff = np.linalg.norm(img[region].astype(np.float32) - c.final[region].astype(np.float32), axis=1)
                visible = float(np.median(diff)) >= cfg.fidelity.min_contrast
                per.setdefault((kind, rel), []).append(hit)
                (seen if visible else faint).append(hit)
                if not hit:
                    missed.append((c.photo, c.prompt, kind, rel, visible))
    hits = [h for v in per.values() for h in v]
    return {
        "negatives": len(neg), "false_alarms": len(false_alarms), "false_alarm_rate": len(false_alarms) / max(1, len(neg)),
        "positives": len(hits), "detected": sum(hits), "detection_rate": sum(hits) / max(1, len(hits)),
        "visible": len(seen), "visible_detected": sum(seen), "visible_detection_rate": sum(seen) / max(1, len(seen)),
        "faint": len(faint), "faint_detected": sum(faint),
        "per_kind_size": {f"{k}@{r:.2f}": (sum(v), len(v)) for (k, r), v in sorted(per.items())},
        "false_alarm_cases": false_alarms, "missed": missed,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 photos x 2 scene colours")
    ap.add_argument("--canvas", type=int, default=512, help="square canvas size in px")
    ap.add_argument("--method", choices=("heuristic", "resegment"), default="heuristic",
                    help="resegment uses the configured matte backend on the final image")
    ap.add_argument("--target-detection", type=float, default=0.80)
    ap.add_argument("--target-false-alarm", type=float, default=0.05)
    args = ap.parse_args(argv)
    cfg = base_config(args.canvas)
    photos, prompts = (PHOTOS[:3], PROMPTS[:2]) if args.quick else (PHOTOS, PROMPTS)
    t0 = time.perf_counter()
    cases = clean_cases(cfg, photos, prompts)
    reseg = load_matte_backend(cfg.matte.backend, cfg.matte.options) if args.method == "resegment" else None
    res = evaluate(cfg, cases, args.method, reseg)
    print(f"expansion detector: {args.method}, canvas {args.canvas}px, limit {cfg.fidelity.expansion_limit} "
          f"reach (share of the product size); {len(photos)} photos x {len(prompts)} scene colours")
    print(f"{'case':<16}{'detected':>10}")
    for key, (hit, n) in res["per_kind_size"].items():
        print(f"{key:<16}{hit:>5} / {n:<4}")
    for photo, prompt, score in res["false_alarm_cases"]:
        print(f"false alarm: {photo} / {prompt}: score {score:.4f}")
    for photo, prompt, kind, rel, visible in res["missed"][:10]:
        print(f"missed: {photo} / {prompt}: {kind}@{rel:.2f}{'' if visible else ' (faint: extension close to the scene colour)'}")
    print(f"visible extensions (median colour change >= min_contrast): {res['visible_detected']}/{res['visible']} "
          f"detected ({res['visible_detection_rate']:.1%}); faint ones: {res['faint_detected']}/{res['faint']}")
    print(f"({time.perf_counter() - t0:.1f} s)")
    ok = res["detection_rate"] >= args.target_detection and res["false_alarm_rate"] <= args.target_false_alarm
    print(f"detection rate {res['detection_rate']:.1%} ({res['detected']}/{res['positives']}), false-alarm rate "
          f"{res['false_alarm_rate']:.1%} ({res['false_alarms']}/{res['negatives']}); target >= "
          f"{args.target_detection:.0%} / <= {args.target_false_alarm:.0%}: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
