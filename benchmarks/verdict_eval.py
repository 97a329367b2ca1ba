"""How far the pipeline's verdicts can be trusted: pass precision and review recall per photo set.

Every photo of each `--images` folder is staged by the per-product runner with the default
config (channel presets, format copies, checks, signing: what `stage run` does), once per matte
backend asked for (`plain-backdrop+rembg`: the embedded backend escalating what it is unsure of
to rembg, `[matte] escalate_to`), and the published cut-out (`layers/matte.png`) is judged
against a reference cut-out made by IS-Net through rembg (`--models`: the folder holding
isnet-general-use.onnx; the references are cached by photo hash under `--cache`).

A cut-out is
    good  IoU >= 0.95 with the reference, and no stray part;
    bad   IoU < 0.90, or a stray part: a connected piece of the cut-out lying more than 6 px
          outside the reference, larger than 0.2% of the reference's area (a leftover floor,
          a hand, a door frame, backdrop paper);
and in between neither. Figures per photo set and backend:
    pass rate       share of photos whose verdict is `pass`
    pass precision  share of `pass` outputs whose cut-out is good
    review recall   share of bad cut-outs whose verdict is not `pass` (review, reject or a
                    failed row)
Photos whose SKU failed (e.g. an empty cut-out) count as not `pass`.

The reference is itself a model: where IS-Net is wrong the figures are too, and for the rembg
backend (the same network) IoU says little; `--sheet` writes a contact sheet per set and backend
(source, cut-out against the reference: white agree, red extra, blue missing; the staged image;
verdict and reasons), which a person must look at before trusting the numbers.

After the sets, a table per backend and set sets the matte's confidence (in bins) against the
cut-out's quality: how far a given confidence can be trusted. `--megapixels 4` also stages every
photo resampled (Lanczos, JPEG 92) to about that size, as catalog photos are 1-12 MP while the
photo sets are small, and prints how many verdicts stay the same and each that does not (with its
own reference cut-out at that size; an upscaled photo is smoother than one shot at that size).

The judge misses what lies on the product itself (a fringe, a torn collar, backdrop kept between
a shirt's panels), so the figures count what a person saw too: `--seen FILE` (CSV `photo, matte,
product_layer, defect`) lists the `pass` outputs a person has looked at, each with the defect seen
on its staged image or an empty `defect` for none. An entry holds for the product layer it names
(the first 16 hex digits of `layers/product.png`'s SHA-256), so one looked at before a change that
alters the output counts as not looked at; the run prints a line ready for the file for every
pass no one has looked at yet. A seen defect makes the output bad.

Targets (issue #17), on photos nothing was tuned on: embedded default pass precision >= 0.98 and
review recall >= 0.95; rembg pass rate >= 0.80 at pass precision >= 0.98. Each precision is
printed with its 95% lower bound (Clopper-Pearson, one-sided) and the number of passes without
a defect it takes to show the target at all: a set of 60 photos cannot show 0.98 even if every
photo passed clean. The last line is the embedded backend's pass precision on the last
`--images` set (judge and eye where every pass has been looked at, judge alone otherwise).

    .venv/bin/python benchmarks/verdict_eval.py --images catalog/images \\
        --images ../shared/data/products-eval/images --models ../shared/models --sheet /tmp/sheets \\
        [--seen seen.csv] [--megapixels 4]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import itertools
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

sys.dont_write_bytecode = True  # run from a checkout: leave no __pycache__ behind
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

# the matte configurations judged: a backend, or a backend and the one it escalates to ([matte] escalate_to)
BACKENDS = ("plain-backdrop", "rembg", "plain-backdrop+rembg")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
GOOD_IOU, BAD_IOU = 0.95, 0.90
STRAY_PX, STRAY_SHARE = 6.0, 0.002
REFERENCE_MODEL = "isnet-general-use"


@dataclass
class Judged:
    photo: str
    status: str  # the row's status: ok, failed, ...
    verdict: str  # pass, review, reject, or the status when the row did not stage
    reasons: list[str]
    iou: float | None = None
    stray_px: int = 0  # the largest stray part's area
    stray_share: float = 0.0  # ... as a share of the reference's area
    output: str | None = None
    matte: str | None = None
    extra: dict = field(default_factory=dict)
    product_layer: str = ""  # first 16 hex digits of the SHA-256 of layers/product.png
    seen: str | None = None  # what a person saw on the staged image: None not looked at, "" nothing wrong

    @property
    def good(self) -> bool:
        return self.iou is not None and self.iou >= GOOD_IOU and self.stray_share <= STRAY_SHARE and not self.seen

    @property
    def bad(self) -> bool:
        return self.iou is None or self.iou < BAD_IOU or self.stray_share > STRAY_SHARE or bool(self.seen)


def stray_parts(cut: np.ndarray, reference: np.ndarray, px: float = STRAY_PX) -> list[int]:
    """Areas of the connected pieces of `cut` lying more than `px` outside `reference` (both bool)."""
    outside = cv2.distanceTransform((~reference).view(np.uint8), cv2.DIST_L2, 5) > px
    extra = (cut & outside).view(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(extra, connectivity=8)
    return sorted((int(a) for a in stats[1:, cv2.CC_STAT_AREA]), reverse=True)


def judge_cut(cut: np.ndarray, reference: np.ndarray) -> tuple[float, int, float]:
    """(IoU, largest stray part in px, its share of the reference's area)."""
    union = int((cut | reference).sum())
    iou = float((cut & reference).sum() / union) if union else 1.0
    parts = stray_parts(cut, reference)
    largest = parts[0] if parts else 0
    return iou, largest, largest / max(1, int(reference.sum()))


# ---------------------------------------------------------------- reference cut-outs


def _decode(path: Path) -> np.ndarray:
    """The photo as the pipeline sees it (orientation, colour) through the project's own loader."""
    from stages.load import LoadOptions, decode_image

    return decode_image(path.read_bytes(), LoadOptions(), path.name).rgb


def references(photos: list[Path], models: Path, cache: Path) -> dict[str, np.ndarray]:
    """IS-Net's cut-out (bool) of every photo, cached by the photo's SHA-256."""
    import os

    cache.mkdir(parents=True, exist_ok=True)
    out, todo = {}, []
    for p in photos:
        key = cache / f"{hashlib.sha256(p.read_bytes()).hexdigest()}-{REFERENCE_MODEL}.png"
        if key.is_file():
            out[p.name] = np.asarray(Image.open(key)) > 127
        else:
            todo.append((p, key))
    if todo:
        os.environ["U2NET_HOME"] = str(models)
        from stages.matte.rembg import RembgMatte, RembgOptions

        isnet = RembgMatte.load(RembgOptions(model=REFERENCE_MODEL))
        for p, key in todo:
            alpha = isnet.run(_decode(p)).alpha
            Image.fromarray(alpha).save(key)
            out[p.name] = alpha > 127
    return out


# ---------------------------------------------------------------- staging


def category_of(name: str) -> str:
    """A photo's category from its file name: the word after the leading number
    (`31_apparel_shorts.jpg` -> apparel, `e01_dress.jpg` -> dress), "product" when there is none.
    Checks gated by category (the hanger check: garments only) then apply as in a catalog run."""
    parts = Path(name).stem.split("_")
    if len(parts) >= 2 and any(c.isdigit() for c in parts[0]) and parts[1].strip():
        return parts[1].strip().lower()
    return "product"


def stage_set(photos: list[Path], folder: Path, backend: str, models: Path, root: Path) -> list[Judged]:
    """Every photo through the per-product runner with the default config and `backend`."""
    import os

    from ops.catalog import read_catalog
    from ops.config import load_config
    from ops.context import RunContext
    from ops.runner import process_row
    from ops.workbench import Workbench

    os.environ["U2NET_HOME"] = str(models)
    first, _, second = backend.partition("+")
    cfg = load_config(C.REPO_CONFIG, {"matte": {"backend": first, "escalate_to": second},
                                      "load": {"local_roots": [str(folder)]}})
    rows = [{"sku": f"EVAL-{i:03d}", "image": str(p), "title": p.stem, "category": category_of(p.name)}
            for i, p in enumerate(photos)]
    catalog = read_catalog(C.write_catalog(root / f"{backend}.csv", rows), cfg.run.max_variants, cfg.local_roots())
    assert not catalog.errors, catalog.errors
    bench = Workbench.build(cfg)
    out = root / f"out-{backend}"
    judged = []
    for row, photo in zip(catalog.rows, photos, strict=True):
        r = process_row(bench, row, RunContext(out, f"eval-{backend}"))
        if r.status != "ok" or not r.record:
            judged.append(Judged(photo.name, r.status, r.status, [r.error or ""]))
            continue
        record_path = out / r.record
        record = json.loads(record_path.read_text())
        layer = hashlib.sha256((record_path.parent / record["product_layer"]).read_bytes()).hexdigest()[:16]
        judged.append(Judged(photo.name, r.status, record["verdict"], record["reasons"],
                             output=str(out / r.output), matte=str(record_path.parent / record["matte"]),
                             extra={"matte_confidence": record.get("matte_confidence")}, product_layer=layer))
    return judged


SEEN_FIELDS = ("photo", "matte", "product_layer", "defect")


def read_seen(path: Path) -> dict[tuple[str, str, str], str]:
    """A person's look at staged images: {(photo, matte, product layer): the defect seen, "" for none}."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = set(SEEN_FIELDS) - set(reader.fieldnames or ())
        if missing:
            raise SystemExit(f"{path}: the header lacks {', '.join(sorted(missing))} "
                             f"(columns: {', '.join(SEEN_FIELDS)})")
        return {(r["photo"].strip(), r["matte"].strip(), r["product_layer"].strip()): (r["defect"] or "").strip()
                for r in reader}


def apply_seen(judged: list[Judged], backend: str, seen: dict[tuple[str, str, str], str]) -> list[str]:
    """Give each judged output what a person saw on it (an entry for its photo, matte and product
    layer); return a CSV line, defect left empty, for each `pass` no one has looked at."""
    todo = io.StringIO()
    lines = csv.writer(todo, lineterminator="\n")
    for j in judged:
        j.seen = seen.get((j.photo, backend, j.product_layer))
        if j.verdict == "pass" and j.seen is None:
            lines.writerow([j.photo, backend, j.product_layer, ""])
    return todo.getvalue().splitlines()


# ---------------------------------------------------------------- figures


def figures(judged: list[Judged]) -> dict[str, float | int]:
    passed = [j for j in judged if j.verdict == "pass"]
    bad = [j for j in judged if j.bad]
    return {
        "n": len(judged),
        "pass": len(passed),
        "pass_rate": len(passed) / max(1, len(judged)),
        "pass_good": sum(j.good for j in passed),
        "pass_precision": sum(j.good for j in passed) / len(passed) if passed else float("nan"),
        "bad": len(bad),
        "bad_not_pass": sum(j.verdict != "pass" for j in bad),
        "review_recall": sum(j.verdict != "pass" for j in bad) / len(bad) if bad else float("nan"),
        "failed": sum(j.status != "ok" for j in judged),
        "pass_unseen": sum(j.seen is None for j in passed),
    }


def lower_bound(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson lower bound of a share seen as `k` of `n`: the smallest p under
    which `k` or more of `n` would happen with probability at least 1 - `confidence`."""
    if n == 0 or k == 0:
        return 0.0

    def tail(p: float) -> float:  # P(X >= k), X ~ Binomial(n, p)
        return sum(math.comb(n, i) * p ** i * (1.0 - p) ** (n - i) for i in range(k, n + 1))

    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if tail(mid) < 1.0 - confidence else (lo, mid)
    return lo


def passes_needed(target: float, confidence: float = 0.95) -> int:
    """How many outputs, all good, it takes for the lower bound of their share to reach `target`."""
    return math.ceil(math.log(1.0 - confidence) / math.log(target))


def precision_line(f: dict[str, float | int], target: float = 0.98) -> str:
    """The pass precision with its 95% lower bound, and whether this many passes can show `target`."""
    k, n = int(f["pass_good"]), int(f["pass"])
    need = passes_needed(target)
    return (f"    pass precision {k}/{n}: 95% lower bound {lower_bound(k, n):.3f}; showing >= {target} takes at "
            f"least {need} passes without a defect ({'enough passes' if n >= need else 'too few passes to show it'})")


def _tint(photo_rgb: np.ndarray, cut: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """The cut-out against the reference: white both, red cut only, blue reference only."""
    out = (photo_rgb * 0.25).astype(np.uint8)
    out[cut & ref] = (255, 255, 255)
    out[cut & ~ref] = (255, 40, 40)
    out[~cut & ref] = (40, 90, 255)
    return out


def contact_sheet(judged: list[Judged], photos: dict[str, Path], refs: dict[str, np.ndarray], path: Path,
                  cell: int = 220) -> None:
    """One row per photo: source, cut-out vs reference, staged image, then verdict and figures."""
    rows = []
    for j in judged:
        rgb = _decode(photos[j.photo])
        ref = refs[j.photo]
        cut = (np.asarray(Image.open(j.matte)) > 127) if j.matte else np.zeros_like(ref)
        tiles = [rgb, _tint(rgb, cut, ref)]
        tiles.append(np.asarray(Image.open(j.output).convert("RGB")) if j.output else np.zeros_like(rgb))
        row = Image.new("RGB", (cell * 3 + 420, cell), "white")
        for k, t in enumerate(tiles):
            im = Image.fromarray(t)
            im.thumbnail((cell, cell))
            row.paste(im, (k * cell, 0))
        d = ImageDraw.Draw(row)
        iou = "-" if j.iou is None else f"{j.iou:.3f}"
        lines = [f"{j.photo}: {j.verdict.upper()}  cut-out {quality(j)} (IoU {iou}, stray {j.stray_share:.2%})"]
        for said in ([f"seen: {j.seen}"] if j.seen else []) + j.reasons[:6]:
            lines += [said[i:i + 62] for i in range(0, min(len(said), 124), 62)]
        d.multiline_text((cell * 3 + 8, 6), "\n".join(lines), fill="black")
        rows.append(row)
    sheet = Image.new("RGB", (cell * 3 + 420, cell * max(1, len(rows))), "white")
    for i, r in enumerate(rows):
        sheet.paste(r, (0, i * cell))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def judge_set(photos: list[Path], folder: Path, backend: str, models: Path, root: Path,
              refs: dict[str, np.ndarray]) -> list[Judged]:
    """Stage `photos` with `backend` and judge each published cut-out against its reference."""
    judged = stage_set(photos, folder, backend, models, root)
    for j in judged:
        if j.matte:
            cut = np.asarray(Image.open(j.matte)) > 127
            j.iou, j.stray_px, j.stray_share = judge_cut(cut, refs[j.photo])
    return judged


def quality(j: Judged) -> str:
    return "good" if j.good else ("BAD" if j.bad else "fair")


def summary_line(backend: str, label: str, f: dict[str, float | int]) -> str:
    return (f"  {backend} on {label}: pass {f['pass']}/{f['n']} (rate {f['pass_rate']:.2f}), "
            f"pass precision {f['pass_good']}/{f['pass']} = {f['pass_precision']:.3f}, "
            f"review recall {f['bad_not_pass']}/{f['bad']} = {f['review_recall']:.3f}, failed rows {f['failed']}"
            + (f"; {f['pass_unseen']} pass(es) not looked at by a person: the judge alone" if f["pass_unseen"] else
               "; every pass looked at by a person"))


CONFIDENCE_BINS = (0.0, 0.3, 0.5, 0.7, 0.9, 1.0001)


def calibration(judged: list[Judged]) -> list[list[str]]:
    """Rows of the confidence table: per matte confidence bin, the photos in it, how many of
    their cut-outs are good / fair / bad against the reference, and how many passed."""
    rows = []
    for lo, hi in [*itertools.pairwise(CONFIDENCE_BINS), (None, None)]:
        if lo is None:
            group, name = [j for j in judged if j.extra.get("matte_confidence") is None], "no cut-out"
        else:
            group = [j for j in judged if j.extra.get("matte_confidence") is not None
                     and lo <= j.extra["matte_confidence"] < hi]
            name = f"{lo:.1f}-{min(hi, 1.0):.1f}"
        if group:
            counts = [sum(quality(j) == q for j in group) for q in ("good", "fair", "BAD")]
            rows.append([name, str(len(group)), *map(str, counts), str(sum(j.verdict == "pass" for j in group))])
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path, action="append", required=True, help="a folder of photos (repeatable)")
    ap.add_argument("--models", type=Path, required=True, help="folder holding isnet-general-use.onnx")
    ap.add_argument("--backend", action="append", choices=list(BACKENDS),
                    help=f"matte backend(s) to judge (default: {', '.join(BACKENDS)})")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/verdict-eval-references"),
                    help="where IS-Net's reference cut-outs are kept between runs")
    ap.add_argument("--sheet", type=Path, help="write contact sheets into this folder")
    ap.add_argument("--limit", type=int, help="only the first N photos of each set")
    ap.add_argument("--megapixels", type=float,
                    help="also stage every photo resampled to about this many megapixels (catalog sizes: 1-12) "
                         "and compare the verdicts with the photo's own size")
    ap.add_argument("--keep", action="store_true", help="keep the staged outputs")
    ap.add_argument("--seen", type=Path, metavar="FILE",
                    help="what a person saw on the staged passes (CSV: photo, matte, product_layer, defect)")
    args = ap.parse_args(argv)
    seen = read_seen(args.seen) if args.seen else {}
    backends = args.backend or list(BACKENDS)
    key, by = None, ""
    everything: dict[str, list[tuple[str, Judged]]] = {b: [] for b in backends}  # (set, judged) per backend
    print(C.machine_line())
    with C.bench_root("verdict-eval-", keep=args.keep, threads=None) as root:
        for folder in args.images:
            folder = folder.resolve()
            label = f"{folder.parent.name}-{folder.name}"  # two sets' folders are often both named images
            photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[: args.limit]
            by_name = {p.name: p for p in photos}
            t0 = time.perf_counter()
            refs = references(photos, args.models, args.cache)
            print(f"\n{folder} ({len(photos)} photos; references in {time.perf_counter() - t0:.0f} s)")
            if args.megapixels:
                big_folder = root / label / f"photos-{args.megapixels:g}mp"
                big = [C.resampled_photo(p, args.megapixels, big_folder) for p in photos]
                big_refs = references(big, args.models, args.cache)
            for backend in backends:
                t0 = time.perf_counter()
                judged = judge_set(photos, folder, backend, args.models, root / label, refs)
                todo = apply_seen(judged, backend, seen)
                f = figures(judged)
                print(f"  {backend}: staged in {time.perf_counter() - t0:.0f} s")
                print(C.table(["photo", "verdict", "cut-out", "IoU", "stray", "first reason"],
                              [[j.photo, j.verdict, quality(j), "-" if j.iou is None else f"{j.iou:.3f}",
                                f"{j.stray_share:.2%}", (j.reasons[0] if j.reasons else "")[:70]] for j in judged]))
                print(summary_line(backend, label, f))
                print(precision_line(f))
                if todo:
                    print("    passes to look at (lines for --seen; put the defect seen last, or leave it empty):")
                    print("\n".join(f"      {line}" for line in todo))
                everything[backend] += [(label, j) for j in judged]
                if args.sheet:
                    contact_sheet(judged, by_name, refs, args.sheet / f"{label}-{backend}.png")
                if backend == "plain-backdrop":
                    key, by = f["pass_precision"], ("the judge alone" if f["pass_unseen"] else "judge and eye")
                if args.megapixels:
                    compare_sizes(judged, big, big_folder, big_refs, backend, args.models, args.megapixels,
                                  root / label / f"{args.megapixels:g}mp", label)
        for backend, rows in everything.items():
            print(f"\n{backend}: matte confidence against the cut-out's quality (good IoU >= {GOOD_IOU}, "
                  f"bad < {BAD_IOU} or a stray part), photos at their own size")
            for label in dict.fromkeys(lbl for lbl, _ in rows):
                print(f"  {label}")
                print(C.table(["confidence", "photos", "good", "fair", "bad", "passed"],
                              calibration([j for lbl, j in rows if lbl == label])))
    if key is None:
        return 0
    print(f"(the key figure below: {by})")
    print(f"embedded_pass_precision={key:.3f} target >= 0.98 {'PASS' if key >= 0.98 else 'FAIL'}")
    return 0


def compare_sizes(native: list[Judged], big: list[Path], folder: Path, refs: dict[str, np.ndarray], backend: str,
                  models: Path, megapixels: float, root: Path, label: str) -> None:
    """Stage the resampled photos `big` (in `folder`, with their references `refs`) and print how
    many verdicts match those at the photos' own size (`native`), and each that does not."""
    t0 = time.perf_counter()
    judged = judge_set(big, folder, backend, models, root, refs)
    same = sum(a.verdict == b.verdict for a, b in zip(native, judged, strict=True))
    print(f"  {backend} at {megapixels:g} MP (staged in {time.perf_counter() - t0:.0f} s): verdicts the same as "
          f"at the photo's own size {same}/{len(judged)}")
    for a, b in zip(native, judged, strict=True):
        if a.verdict != b.verdict:
            why = (f"at {megapixels:g} MP: {b.reasons[0]}" if b.reasons else
                   f"at its own size: {a.reasons[0]}" if a.reasons else "")[:100]
            print(f"    {a.photo}: {a.verdict} ({quality(a)}) -> {b.verdict} ({quality(b)}); {why}")
    print(summary_line(backend, f"{label} at {megapixels:g} MP", figures(judged)))


if __name__ == "__main__":
    sys.exit(main())
