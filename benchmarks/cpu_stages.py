"""Per-step CPU cost of one product image on one core, with the embedded backends.

Runs `ops.runner.process_row` (the steps in `stages.pipeline`, then signing, publishing and the
record) on the demo photos of catalog/demo.csv at the configured canvas (config.toml: 1024x1024),
each time into a fresh output folder so nothing is cached, with OpenCV/BLAS/OpenMP and the NSFW
model's onnxruntime pinned to one thread, and reads each call's own `timings_ms`.

The demo photos are small (400x534): layout upscales each product onto the canvas (up to
[layout] max_scale = 2.0), so every step after layout works on canvas-sized arrays.

Key figure (last line): process_row's whole call per staged image, less its scene step and the
channel renditions, in ms: the fastest of the rounds for each photo, median over the photos (other
jobs on a shared 2-core machine inflate single samples; the plain medians are printed beside it).
The channel renditions are whole images at their own sizes: the line above it gives each one's
cost without its scene, and that cost per megapixel.

    .venv/bin/python benchmarks/cpu_stages.py            # 5 rounds over the 10 demo photos (~1 min)
    .venv/bin/python benchmarks/cpu_stages.py --quick    # 1 round over 4 photos, smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # run from a checkout: leave no __pycache__ behind
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TARGET_MS = 250.0
# process_row's timings_ms keys, in pipeline order (stages.pipeline, then ops.runner)
STEPS = ("load", "matte", "layout", "depth", "shadow", "scene", "composite", "check", "encode", "sign", "write",
         "channels")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one round over 4 photos, smoke run (< 60 s)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds over the photos (default 5, quick 1)")
    ap.add_argument("--photos", type=int, default=None, help="how many demo photos (default all 10, quick 4)")
    ap.add_argument("--size", type=int, default=None, help="square canvas side (default: config.toml [layout])")
    ap.add_argument("--threads", type=int, default=1, help="OpenCV/BLAS/OpenMP/onnxruntime threads (default 1: one core)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    return ap.parse_args()


def main() -> int:
    args = parse_args()
    rounds = args.rounds or (1 if args.quick else 5)
    with C.bench_root("bench-cpu-", keep=args.keep, threads=args.threads) as root:
        return run(args, rounds, root)


def channel_costs(record_path: Path) -> list[tuple[str, float, float]]:
    """(preset, ms excluding its scene generator, megapixels) of each channel rendition in a record."""
    out: dict[str, tuple[float, float]] = {}
    for e in json.loads(record_path.read_text(encoding="utf-8")).get("renditions") or []:
        t = e.get("timings_ms") or {}
        ms, mp = out.get(e["preset"], (t.get("stage", 0.0) - t.get("scene", 0.0), e["size"][0] * e["size"][1] / 1e6))
        out[e["preset"]] = (ms + t.get("encode_sign_publish", 0.0), mp)  # stage once, each format's publish
    return [(n, ms, mp) for n, (ms, mp) in out.items()]


def run(args: argparse.Namespace, rounds: int, root: Path) -> int:
    from ops.catalog import read_catalog
    from ops.config import load_config
    from ops.context import RunContext
    from ops.runner import process_row
    from ops.workbench import Workbench

    overrides: dict = {"nsfw": {"opennsfw": {"threads": args.threads}}}  # onnxruntime: one thread per core otherwise
    if args.size:
        overrides["layout"] = {"width": args.size, "height": args.size}
    cfg = load_config(C.write_config(root / "config.toml", overrides))
    n_photos = args.photos or (4 if args.quick else len(C.demo_templates()))
    rows = read_catalog(C.write_catalog(root / "photos.csv", C.synthetic_rows(n_photos)), cfg.run.max_variants,
                       cfg.local_roots()).rows
    bench = Workbench.build(cfg)
    print(C.machine_line())
    print(f"canvas {cfg.layout.width}x{cfg.layout.height}, threads {args.threads}, {len(rows)} demo photos x "
          f"{rounds} round(s); backends matte={cfg.matte.backend} depth={cfg.depth.backend} "
          f"scene={cfg.scene.backend}; png_compress_level={cfg.write.png_compress_level}; format copies "
          f"{list(cfg.write.format_copies)}; channel renditions {list(cfg.renditions.active)}")
    process_row(bench, rows[0], RunContext(root / "warmup", "bench"))  # lazy imports, SDK contexts, allocators

    step_ms: dict[str, list[float]] = {}
    best_step: dict[str, dict[int, float]] = {}  # step -> photo -> fastest round
    walls: list[float] = []
    master: dict[int, float] = {}  # photo -> fastest call less its scene and channel renditions
    master_all: list[float] = []
    chan: dict[str, dict[int, float]] = {}  # preset -> photo -> fastest ms excl. its scene
    chan_mp: dict[str, float] = {}
    statuses: dict[str, int] = {}
    for r in range(rounds):
        for p, row in enumerate(rows):
            out = root / "out" / f"r{r}"
            w0 = time.perf_counter()
            res = process_row(bench, row, RunContext(out, "bench"))
            walls.append((time.perf_counter() - w0) * 1000)
            statuses[res.status] = statuses.get(res.status, 0) + 1
            for k, v in res.timings_ms.items():
                step_ms.setdefault(k, []).append(v)
                best = best_step.setdefault(k, {})
                best[p] = min(best.get(p, float("inf")), v)
            call = walls[-1] - res.timings_ms.get("scene", 0.0) - res.timings_ms.get("channels", 0.0)
            master_all.append(call)
            master[p] = min(master.get(p, float("inf")), call)
            for name, ms, mp in channel_costs(out / res.record) if res.record else ():
                chan.setdefault(name, {})[p] = min(chan.get(name, {}).get(p, float("inf")), ms)
                chan_mp[name] = mp

    order = [k for k in STEPS if k in step_ms] + [k for k in step_ms if k not in STEPS]
    print()
    print(f"process_row's timings_ms per step, ms per image, {len(rows)} photos x {rounds} round(s): 'best' = "
          "fastest round per photo, median over photos; 'med'/'p90' over every sample.\ncheck = content checks "
          "(NSFW, expansion, halo) + decoding and verifying every published file; write encloses the published "
          "files' checks; channels = the channel renditions, each staged again at its own size")
    body = [(k, C.median(list(best_step[k].values())), C.median(step_ms[k]), C.percentile(step_ms[k], 0.9))
            for k in order]
    print(C.table(("step", "best", "med", "p90"), body))
    print(f"whole call: median {C.median(walls):.1f} ms (p90 {C.percentile(walls, 0.9):.1f}); statuses {statuses}")
    if chan:  # each one is a staged image of its own, at its own size
        per = {n: C.median(list(v.values())) for n, v in chan.items()}
        per_mp = sum(per.values()) / sum(chan_mp[n] for n in per)
        print("channel renditions ([renditions] active), each staged again at its size, excl. its scene: "
              + ", ".join(f"{n} {chan_mp[n]:.2f} MP {per[n]:.1f} ms" for n in per)
              + f"; {per_mp:.1f} ms per megapixel = {per_mp * 1024 * 1024 / 1e6:.1f} ms per 1024² image")
    key = C.median(list(master.values()))
    print(f"process_row per staged image excl. scene and channel renditions: best {key:.1f} ms, "
          f"median {C.median(master_all):.1f} ms (p90 {C.percentile(master_all, 0.9):.1f})")
    print(f"total_ms_per_image_excl_scene={key:.1f} target<={TARGET_MS:.0f} {C.verdict(key, TARGET_MS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
