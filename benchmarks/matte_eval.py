"""Matte quality against reference masks: IoU, boundary F-measure, alpha error, confidence.

For every photo in --images that has a mask of the same stem in --masks (`<stem>.png`, 8-bit,
255 = product, soft edges allowed) the chosen matte backend runs on the photo and is compared
with the mask:

    iou   |alpha >= 128  AND  mask >= 128| / |alpha >= 128  OR  mask >= 128|
    bf    boundary F-measure: the outlines of both binarised mattes (pixels of the region with a
          4-neighbour outside it) are matched within a tolerance of --boundary-tol px (default
          2 px, about 0.3% of the diagonal of a 400x534 photo); precision is the share of the
          backend's outline within tolerance of the mask's, recall the converse, bf = 2PR/(P+R)
    mae   mean |alpha/255 - mask/255| over the whole frame
    conf  the backend's own confidence (0..1) and whether it sends the photo to review

Photos without a mask are skipped with a note. Each photo is marked plain or textured: from
--plain when given (stems or number prefixes), else from the `background` column of
manifest.csv beside the photos (plain, white... count as plain; textured... as textured).

The last line is the summary, e.g.

    plain_background_mean_iou=0.975 min_iou=0.970 n=6 textured_max_confidence=0.12 n_textured=2

    .venv/bin/python benchmarks/matte_eval.py --images catalog/images --masks tests/data/masks
    .venv/bin/python benchmarks/matte_eval.py --images catalog/images --masks tests/data/masks \\
        --backend plain-backdrop --config config.toml --plain 19 20 22
    .venv/bin/python benchmarks/matte_eval.py --images catalog/images --masks tests/data/masks \
        --megapixels 4    # photos and masks resampled to catalog size first (tolerance scaled with them)
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"}
BOUNDARY_TOL_PX = 2.0
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


# ---------------------------------------------------------------- metrics


def binarize(alpha: np.ndarray) -> np.ndarray:
    """Product pixels of an 8-bit matte or mask: value >= 128 (bool arrays pass through)."""
    a = np.asarray(alpha)
    return a.copy() if a.dtype == bool else a >= 128


def iou(alpha: np.ndarray, mask: np.ndarray) -> float:
    """Intersection over union of the binarised mattes; 1.0 when both are empty."""
    a, m = binarize(alpha), binarize(mask)
    union = int((a | m).sum())
    return 1.0 if union == 0 else float((a & m).sum() / union)


def outline(region: np.ndarray) -> np.ndarray:
    """Pixels of `region` with a 4-neighbour outside it (the frame's edge does not count)."""
    r = region.astype(np.uint8)
    eroded = cv2.erode(r, _CROSS, borderType=cv2.BORDER_REPLICATE)
    return region & (eroded == 0)


def boundary_f(alpha: np.ndarray, mask: np.ndarray, tol: float = BOUNDARY_TOL_PX) -> float:
    """Boundary F-measure of the binarised mattes with a match tolerance of `tol` pixels.

    1.0 when neither has an outline, 0.0 when only one has.
    """
    pa, pm = outline(binarize(alpha)), outline(binarize(mask))
    na, nm = int(pa.sum()), int(pm.sum())
    if na == 0 and nm == 0:
        return 1.0
    if na == 0 or nm == 0:
        return 0.0

    def dist_to(b: np.ndarray) -> np.ndarray:  # distance of every pixel to the nearest pixel of b
        return cv2.distanceTransform((~b).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)

    precision = float((dist_to(pm)[pa] <= tol).mean())
    recall = float((dist_to(pa)[pm] <= tol).mean())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def mae(alpha: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute difference of alpha/255 and mask/255."""
    a = np.asarray(alpha, dtype=np.float64) / 255.0
    m = np.asarray(mask, dtype=np.float64) / 255.0
    return float(np.abs(a - m).mean())


# ---------------------------------------------------------------- evaluation


@dataclass
class Result:
    name: str
    kind: str  # "plain", "textured" or "?" (unknown)
    iou: float
    bf: float
    mae: float
    confidence: float
    review: bool
    ms: float
    reasons: list[str] = field(default_factory=list)


def _matches(stem: str, keys: set[str]) -> bool:
    return stem in keys or stem.split("_")[0] in keys


def background_kinds(images: Path, plain: list[str] | None = None) -> dict[str, str]:
    """stem -> "plain" | "textured" from --plain (everything else textured) or manifest.csv."""
    stems = [p.stem for p in sorted(images.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    if plain is not None:
        keys = set(plain)
        return {s: "plain" if _matches(s, keys) else "textured" for s in stems}
    kinds: dict[str, str] = {}
    manifest = images / "manifest.csv"
    if manifest.is_file():
        with manifest.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                bg = (row.get("background") or "").strip().lower()
                stem = Path(row.get("file") or "").stem
                if not stem or not bg:
                    continue
                kinds[stem] = "textured" if bg.startswith("textured") else "plain"
    return {s: kinds.get(s, "?") for s in stems}


def make_backend(name: str | None, config: Path | None):
    from ops.config import load_config
    from stages.matte import load_matte_backend

    cfg = load_config(config).matte if config else load_config(REPO / "config.toml").matte
    if name:
        import dataclasses

        cfg = dataclasses.replace(cfg, backend=name)
    return cfg, load_matte_backend(cfg.backend, cfg.options)


def evaluate(
    images: Path,
    masks: Path,
    backend: Any,
    plain: list[str] | None = None,
    boundary_tol: float = BOUNDARY_TOL_PX,
    only: list[str] | None = None,
    log=print,
    min_confidence: float | None = None,
    megapixels: float | None = None,
) -> list[Result]:
    """Run `backend` on every photo in `images` that has a mask in `masks`; a cut-out it trusts less
    than `min_confidence` (default: [matte] min_confidence) goes to review. `megapixels`: each
    photo (Lanczos) and its mask (bilinear) resampled to about that size first, as catalog photos
    come (1-12 MP); the boundary tolerance grows with them."""
    if min_confidence is None:
        from ops.config import MatteConfig

        min_confidence = MatteConfig().min_confidence
    kinds = background_kinds(images, plain)
    results = []
    for path in sorted(images.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if only and not _matches(path.stem, set(only)):
            continue
        mask_path = masks / f"{path.stem}.png"
        if not mask_path.is_file():
            log(f"skip {path.name}: no mask {mask_path.name} in {masks}")
            continue
        rgb = np.asarray(Image.open(path).convert("RGB"))
        mask = np.asarray(Image.open(mask_path).convert("L"))
        if mask.shape != rgb.shape[:2]:
            raise ValueError(f"{mask_path}: mask {mask.shape} does not match photo {rgb.shape[:2]}")
        tol = boundary_tol
        if megapixels:
            rgb, mask, s = scaled(rgb, mask, megapixels)
            tol = boundary_tol * s
        t0 = time.perf_counter()
        matte = backend.run(rgb)
        ms = (time.perf_counter() - t0) * 1000
        results.append(
            Result(
                name=path.stem,
                kind=kinds.get(path.stem, "?"),
                iou=iou(matte.alpha, mask),
                bf=boundary_f(matte.alpha, mask, tol),
                mae=mae(matte.alpha, mask),
                confidence=float(matte.confidence),
                review=matte.confidence < min_confidence,
                ms=ms,
                reasons=list(matte.details.get("reasons", [])),
            )
        )
    return results


def scaled(rgb: np.ndarray, mask: np.ndarray, megapixels: float) -> tuple[np.ndarray, np.ndarray, float]:
    """A photo (Lanczos) and its mask (bilinear) resampled to about `megapixels`, and the factor."""
    s = (megapixels * 1e6 / (rgb.shape[0] * rgb.shape[1])) ** 0.5
    size = (round(rgb.shape[1] * s), round(rgb.shape[0] * s))
    big = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))
    return big, cv2.resize(mask, size, interpolation=cv2.INTER_LINEAR), s


def summary(results: list[Result]) -> str:
    plain = [r for r in results if r.kind == "plain"]
    textured = [r for r in results if r.kind == "textured"]
    parts = []
    if plain:
        ious = [r.iou for r in plain]
        parts.append(f"plain_background_mean_iou={np.mean(ious):.3f} min_iou={min(ious):.3f} n={len(plain)}")
    else:
        parts.append("plain_background_mean_iou=nan min_iou=nan n=0")
    if textured:
        parts.append(
            f"textured_max_confidence={max(r.confidence for r in textured):.2f} n_textured={len(textured)}"
        )
    return " ".join(parts)


def format_table(results: list[Result], tol: float) -> str:
    head = f"{'image':48s} {'bg':8s} {'iou':>6s} {'bf@' + format(tol, 'g') + 'px':>8s} {'mae':>7s} {'conf':>5s} review {'ms':>6s}"
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r.name[:48]:48s} {r.kind:8s} {r.iou:6.3f} {r.bf:8.3f} {r.mae:7.4f} {r.confidence:5.2f} "
            f"{'yes' if r.review else 'no':6s} {r.ms:6.0f}"
        )
        if r.review and r.reasons:
            lines.append(f"{'':48s}   reasons: {'; '.join(r.reasons)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, required=True, help="folder of photos (and manifest.csv)")
    ap.add_argument("--masks", type=Path, required=True, help="folder of reference masks <stem>.png")
    ap.add_argument("--backend", default=None, help="matte backend name (default: [matte] backend of the config)")
    ap.add_argument("--config", type=Path, default=None, help="config.toml (default: the repository's)")
    ap.add_argument("--plain", nargs="*", default=None,
                    help="stems or number prefixes of the plain-background photos (default: manifest.csv)")
    ap.add_argument("--boundary-tol", type=float, default=BOUNDARY_TOL_PX, help="boundary match tolerance, px")
    ap.add_argument("--only", nargs="*", default=None, help="evaluate only these stems or number prefixes")
    ap.add_argument("--megapixels", type=float, default=None,
                    help="resample each photo and mask to about this many megapixels first (catalog sizes: 1-12)")
    args = ap.parse_args(argv)

    cfg, backend = make_backend(args.backend, args.config)
    print(f"backend={cfg.backend} images={args.images} masks={args.masks} boundary_tol={args.boundary_tol:g}px"
          + (f" (of the photo's own size) at {args.megapixels:g} MP" if args.megapixels else ""))
    results = evaluate(args.images, args.masks, backend, args.plain, args.boundary_tol, args.only,
                       min_confidence=cfg.min_confidence, megapixels=args.megapixels)
    if results:
        print(format_table(results, args.boundary_tol))
    else:
        print("no photo has a mask")
    print(summary(results))
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
