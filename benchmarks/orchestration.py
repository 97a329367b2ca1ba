"""Prefect orchestration overhead: the nightly flow vs a bare Python loop over the same rows.

Both sides stage the same N synthetic SKUs (distinct SKUs over the demo photos) with the same
config into a fresh output folder each, so neither side hits the cache:

- flow: `flows.nightly.nightly_catalog_run` in Prefect's ephemeral mode (catalog check, the
  cache pre-pass against the ledger, one `stage-batch` task per [run] batch_size SKUs with the
  ledger appended per batch, results streamed to a file, run report, progress and run
  artifacts), its task runner sized to [run] workers like the `stage` CLI does;
- loop: the same non-Prefect work in plain Python: `read_catalog`, `process_row` over the rows
  (with `workers` > 1: the same batches on a thread pool of that size), `write_run_report`.

To keep the ratio about orchestration rather than pixels, the canvas is small: a temp copy of
config.toml with [layout] width = height = 256 (--size). The ephemeral API server's one-off
start-up (and the first flow on a fresh database) is paid by a 2-row warm-up flow that is
reported separately and excluded. Defaults: workers = 1 and OpenCV/BLAS/OpenMP pinned to one
thread, so both sides are serial and the difference is Prefect's cost, not how well intra-op
threads happen to scale on a 2-core machine that other jobs share. Wall and CPU seconds (this
process plus the API server subprocess) are both reported, with per-stage medians of each side
as a noise check: a stage that differs a lot between the sides points at machine noise.

Key figure (last line): flow wall time / loop wall time.

    .venv/bin/python benchmarks/orchestration.py             # N = 1000
    .venv/bin/python benchmarks/orchestration.py --quick     # N = 100
    .venv/bin/python benchmarks/orchestration.py -n 500 --repeats 2   # steadier on a busy machine
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # run from a checkout: leave no __pycache__ behind
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TARGET = 1.10


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="N = 100, smoke run (< 60 s)")
    ap.add_argument("-n", type=int, default=None, help="SKUs per run (default 1000, quick 100)")
    ap.add_argument("--size", type=int, default=256, help="square canvas side (default 256)")
    ap.add_argument("--workers", type=int, default=1, help="[run] workers for both sides (default 1)")
    ap.add_argument("--threads", type=int, default=1, help="OpenCV/BLAS/OpenMP threads (default 1; 0: library default)")
    ap.add_argument("--batch-size", type=int, default=None, help="[run] batch_size (default: config.toml)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="loop/flow pairs, alternating which goes first; medians are reported (default 1)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    return ap.parse_args()


def main() -> int:
    args = parse_args()
    n = args.n or (100 if args.quick else 1000)
    with C.bench_root("bench-orch-", keep=args.keep, threads=args.threads) as root:
        return run(args, n, root)


def run(args: argparse.Namespace, n: int, root: Path) -> int:
    overrides: dict = {"layout": {"width": args.size, "height": args.size}, "run": {"workers": args.workers}}
    if args.batch_size:
        overrides["run"]["batch_size"] = args.batch_size
    cfg_path = C.write_config(root / "config.toml", overrides)
    from ops.config import load_config

    cfg = load_config(cfg_path)
    catalog = C.write_catalog(root / "catalog.csv", C.synthetic_rows(n))
    warm_rows = [dict(r, sku="WARMUP-" + r["sku"]) for r in C.synthetic_rows(2)]
    warm_catalog = C.write_catalog(root / "warmup.csv", warm_rows)
    batches = -(-n // cfg.run.batch_size)

    print(C.machine_line())
    print(f"N = {n} SKUs over {len(C.demo_templates())} demo photos, canvas {args.size}x{args.size} (temp copy of "
          f"config.toml with [layout] {args.size}x{args.size}), batch_size {cfg.run.batch_size} -> {batches} "
          f"stage-batch tasks, workers {args.workers}, math threads {args.threads or 'default'}, "
          f"format copies {list(cfg.write.format_copies)}")

    clock = C.CpuClock()
    import prefect  # noqa: F401  (import time is reported with the warm-up)

    flow = C.prefect_flow(args.workers)
    warm = flow(catalog=str(warm_catalog), config=str(cfg_path), out=str(root / "out-warmup"))
    w = clock.stop()
    print(f"warm-up (import prefect, start ephemeral API server, first flow of 2 rows, build backends): "
          f"{w['wall_s']:.1f} s, statuses {C.run_statuses(warm)} -- excluded below")

    from ops.workbench import Workbench

    bench = Workbench.build(cfg)  # built once, untimed, like the flow's per-process cached Workbench
    runs: dict[str, list[dict]] = {"loop": [], "flow": []}
    for rep in range(args.repeats):
        order = ("loop", "flow") if rep % 2 == 0 else ("flow", "loop")
        for side in order:
            out = root / f"out-{side}-{rep}"
            clock = C.CpuClock()
            if side == "flow":
                res = flow(catalog=str(catalog), config=str(cfg_path), out=str(out))
            else:
                res = C.bare_run(bench, cfg_path, catalog, out, args.workers)
            m = clock.stop()
            m["statuses"] = C.run_statuses(res)
            m["stages"] = C.stage_medians(C.all_results(res))
            runs[side].append(m)
            print(f"  repeat {rep + 1} {side}: {m['wall_s']:.2f} s wall, {m['cpu_s']:.2f} s cpu, "
                  f"server {m['server_cpu_s']:.2f} s cpu, {m['statuses']}")

    def med(side: str, key: str) -> float:
        return C.median([m[key] for m in runs[side]])

    loop_w, flow_w = med("loop", "wall_s"), med("flow", "wall_s")
    loop_c = med("loop", "cpu_s") + med("loop", "server_cpu_s")
    flow_c = med("flow", "cpu_s") + med("flow", "server_cpu_s")
    print()
    body = [
        ("bare loop (process_row)", loop_w, 1000 * loop_w / n, med("loop", "cpu_s"), med("loop", "server_cpu_s")),
        ("Prefect flow", flow_w, 1000 * flow_w / n, med("flow", "cpu_s"), med("flow", "server_cpu_s")),
        ("flow - loop", flow_w - loop_w, 1000 * (flow_w - loop_w) / n, med("flow", "cpu_s") - med("loop", "cpu_s"),
         med("flow", "server_cpu_s") - med("loop", "server_cpu_s")),
    ]
    print(C.table(("run", "wall s", "ms/SKU", "cpu s", "server cpu s"), body, floatfmt="{:.2f}"))
    print(f"overhead per stage-batch task: {1000 * (flow_w - loop_w) / batches:.1f} ms wall, "
          f"{1000 * (flow_c - loop_c) / batches:.1f} ms cpu (flow process + API server)")
    print(f"cpu ratio (flow process + server) / (loop process + server): {flow_c / loop_c:.3f}")
    print()
    print("per-stage medians from each side's timings_ms (ms per SKU; a noise check, not part of the ratio)")
    stage_rows = []
    keys = list(dict.fromkeys(k for m in runs["loop"] + runs["flow"] for k in m["stages"]))
    for k in keys:
        lv = C.median([m["stages"][k] for m in runs["loop"] if k in m["stages"]])
        fv = C.median([m["stages"][k] for m in runs["flow"] if k in m["stages"]])
        stage_rows.append((k, lv, fv))
    print(C.table(("stage", "loop", "flow"), stage_rows))
    if runs["flow"][0]["statuses"] != runs["loop"][0]["statuses"]:
        print("WARNING: the flow and the loop ended with different statuses")
    ratio = flow_w / loop_w
    print(f"flow_to_loop_ratio={ratio:.3f} target<={TARGET:.2f} {C.verdict(ratio, TARGET)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
