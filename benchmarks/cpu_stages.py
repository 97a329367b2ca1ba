"""Per-step CPU cost of one product at catalog photo sizes (1, 4 and 12 MP), on one core.

Runs `ops.runner.process_row` (the steps of `stages.pipeline`, then signing, the format copies,
publishing, the channel renditions and the record: the default config's work) on sources of
about 1, 4 and 12 megapixels (the demo photos of catalog/demo.csv upscaled with Lanczos and saved
as JPEG quality 92: pixel count is what costs) at the configured canvas (config.toml: 1024x1024),
each call into a fresh output folder so nothing is cached, with OpenCV/BLAS/OpenMP and the NSFW
model's onnxruntime pinned to one thread, and reads each call's own `timings_ms`.

Per source size it prints each step's median and p90 over every call (photos x rounds), then:
- master: the whole `process_row` call less its scene step and the channel renditions (decode,
  matte, layout, shadow, composite, every check, PNG encode, signing, the format copies,
  publishing with its verification, the layers and the record);
- channels: each active channel preset ([renditions] active: social, marketplace) staged again at
  its own size, less its scene generator (layout, composite, checks, encode, signing,
  publishing with verification, compliance), as ms per megapixel of output.

The scene step is left out everywhere: it is the scene backend's cost (a GPU model in production).
The last two lines are the channel figure and the key figure at 4 MP sources:

    channel_ms_per_output_mp_4mp=41.0 target <= 60 PASS
    master_ms_per_product_4mp=231.4 target <= 250 PASS

    .venv/bin/python benchmarks/cpu_stages.py            # 1/4/12 MP x 5 photos x 3 rounds (~3-4 min)
    .venv/bin/python benchmarks/cpu_stages.py --quick    # 1 round over 2 photos, smoke run
    .venv/bin/python benchmarks/cpu_stages.py --clock cpu    # on a machine shared with other jobs

`--clock cpu` reads every timer (the steps', the renditions' and the whole call's) from this
process's CPU time: with every library pinned to one thread that is the cost on one core, which
other jobs inflate far less than wall time; it leaves out waits on the disk (fsync).
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

MASTER_TARGET_MS = 250.0
CHANNEL_TARGET_MS_PER_MP = 60.0
KEY_MP = 4.0
# process_row's timings_ms keys, in pipeline order (stages.pipeline, then ops.runner)
STEPS = ("load", "matte", "layout", "depth", "shadow", "scene", "composite", "check", "encode", "sign", "write",
         "channels")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one round over 2 photos, smoke run")
    ap.add_argument("--sizes", type=float, nargs="+", default=[1.0, KEY_MP, 12.0],
                    help="source sizes in megapixels (default 1 4 12; --key-mp is always measured)")
    ap.add_argument("--key-mp", type=float, default=KEY_MP,
                    help=f"the source size the last two lines are read at (default {KEY_MP:g}; one of --sizes)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds over the photos per size (default 3, quick 1)")
    ap.add_argument("--photos", type=int, default=None, help="how many demo photos (default 5, quick 2)")
    ap.add_argument("--size", type=int, default=None, help="square canvas side (default: config.toml [layout])")
    ap.add_argument("--threads", type=int, default=1, help="OpenCV/BLAS/OpenMP/onnxruntime threads (default 1: one core)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: elapsed time (default; a quiet machine); cpu: this process's CPU time, for a "
                         "machine shared with other jobs (it leaves out waits on the disk: fsync)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with C.bench_root("bench-cpu-", keep=args.keep, threads=args.threads) as root:
        return run(args, root)


def channel_costs(record_path: Path) -> list[tuple[str, float, float]]:
    """(preset, ms excluding its scene generator, megapixels) of each channel rendition in a record."""
    out: dict[str, tuple[float, float]] = {}
    for e in json.loads(record_path.read_text(encoding="utf-8")).get("renditions") or []:
        t = e.get("timings_ms") or {}
        ms, mp = out.get(e["preset"], (t.get("stage", 0.0) - t.get("scene", 0.0), e["size"][0] * e["size"][1] / 1e6))
        out[e["preset"]] = (ms + t.get("encode_sign_publish", 0.0), mp)  # stage once, each format's publish
    return [(n, ms, mp) for n, (ms, mp) in out.items()]


def run(args: argparse.Namespace, root: Path) -> int:
    from ops.catalog import read_catalog
    from ops.config import load_config
    from ops.context import RunContext
    from ops.runner import process_row
    from ops.workbench import Workbench

    if args.clock == "cpu":  # the step timers the records carry read this clock instead
        import types

        import ops.context
        import ops.renditions

        cpu_clock = types.SimpleNamespace(perf_counter=time.process_time)
        ops.context.time = ops.renditions.time = cpu_clock  # type: ignore[assignment]
    rounds = args.rounds or (1 if args.quick else 3)
    n_photos = args.photos or (2 if args.quick else 5)
    sizes = sorted(set(args.sizes) | {args.key_mp})
    sources = root / "sources"
    sources.mkdir()
    overrides: dict = {"nsfw": {"opennsfw": {"threads": args.threads}},  # onnxruntime: one thread per core otherwise
                       "load": {"local_roots": [str(sources)]}}
    if args.size:
        overrides["layout"] = {"width": args.size, "height": args.size}
    cfg = load_config(C.write_config(root / "config.toml", overrides))
    bench = Workbench.build(cfg)
    print(C.machine_line())
    print(f"clock {args.clock}, canvas {cfg.layout.width}x{cfg.layout.height}, threads {args.threads}, {n_photos} demo photos x "
          f"{rounds} round(s) per source size; backends matte={cfg.matte.backend} depth={cfg.depth.backend} "
          f"scene={cfg.scene.backend} (excluded); png_compress_level={cfg.write.png_compress_level}; format copies "
          f"{list(cfg.write.format_copies)}; channel renditions {list(cfg.renditions.active)}")
    figures: dict[float, tuple[float, float]] = {}
    for mp in sizes:
        rows_in = C.synthetic_rows(n_photos)
        shapes = C.scaled_sources(rows_in, mp, sources / f"{mp:g}mp")
        rows = read_catalog(C.write_catalog(root / f"photos-{mp:g}.csv", rows_in), cfg.run.max_variants,
                            cfg.local_roots()).rows
        process_row(bench, rows[0], RunContext(root / "warmup" / f"{mp:g}", "bench"))  # lazy imports, allocators
        figures[mp] = measure(process_row, RunContext, bench, rows, rounds, root / "out" / f"{mp:g}", mp, shapes,
                              time.process_time if args.clock == "cpu" else time.perf_counter)
    key = args.key_mp
    master, per_mp = figures[key]
    print()
    print(f"channel_ms_per_output_mp_{key:g}mp={per_mp:.1f} target <= {CHANNEL_TARGET_MS_PER_MP:.0f} "
          f"{C.verdict(per_mp, CHANNEL_TARGET_MS_PER_MP)}")
    print(f"master_ms_per_product_{key:g}mp={master:.1f} target <= {MASTER_TARGET_MS:.0f} "
          f"{C.verdict(master, MASTER_TARGET_MS)}")
    return 0


def measure(process_row, RunContext, bench, rows, rounds: int, out_root: Path, mp: float,
            shapes: list[tuple[int, int]], clock) -> tuple[float, float]:
    """Stage every row `rounds` times; print the step table; (master median ms, channel ms per output MP)."""
    step_ms: dict[str, list[float]] = {}
    master: list[float] = []
    cpu: list[float] = []  # the whole call's CPU time (this process, every thread)
    chan_ms: list[float] = []  # every rendition's ms excl. its scene
    chan_mp: list[float] = []
    per_preset: dict[str, list[float]] = {}
    statuses: dict[str, int] = {}
    for r in range(rounds):
        for row in rows:
            out = out_root / f"r{r}"
            w0, c0 = clock(), time.process_time()
            res = process_row(bench, row, RunContext(out, "bench"))
            wall = (clock() - w0) * 1000
            cpu.append((time.process_time() - c0) * 1000)
            statuses[res.status] = statuses.get(res.status, 0) + 1
            for k, v in res.timings_ms.items():
                step_ms.setdefault(k, []).append(v)
            master.append(wall - res.timings_ms.get("scene", 0.0) - res.timings_ms.get("channels", 0.0))
            for name, ms, size_mp in channel_costs(out / res.record) if res.record else ():
                chan_ms.append(ms)
                chan_mp.append(size_mp)
                per_preset.setdefault(name, []).append(ms)
    px = sorted(w * h for w, h in shapes)
    print()
    print(f"== sources of {mp:g} MP ({px[0] / 1e6:.2f}-{px[-1] / 1e6:.2f} MP, e.g. {shapes[0][0]}x{shapes[0][1]}), "
          f"{len(rows)} photos x {rounds} round(s); statuses {statuses}")
    order = [k for k in STEPS if k in step_ms] + [k for k in step_ms if k not in STEPS]
    body = [(k, C.median(step_ms[k]), C.percentile(step_ms[k], 0.9)) for k in order]
    print(C.table(("step (ms)", "median", "p90"), body))
    med = C.median(master)
    print(f"master (call less scene and channels): median {med:.1f} ms, p90 {C.percentile(master, 0.9):.1f} ms; "
          f"whole call's CPU time (scene and channels included) median {C.median(cpu):.1f} ms: on a busy machine "
          "it rises less than wall time")
    per_mp = sum(chan_ms) / sum(chan_mp) if chan_mp else float("nan")
    if per_preset:
        print("channels (each staged again at its size, less its scene): "
              + ", ".join(f"{n} median {C.median(v):.1f} ms (p90 {C.percentile(v, 0.9):.1f})"
                          for n, v in per_preset.items())
              + f"; {per_mp:.1f} ms per output megapixel")
    return med, per_mp


if __name__ == "__main__":
    sys.exit(main())
