"""Prefect orchestration overhead: the nightly flow vs a bare Python loop over the same rows.

Both sides stage the same N synthetic SKUs (distinct SKUs over the demo photos) with the same
config into a fresh output folder each, so neither side hits the cache:

- flow: `flows.nightly.nightly_catalog_run` in Prefect's ephemeral mode (catalog check, the
  cache pre-pass against the ledger, one `stage-batch` task per [run] batch_size SKUs with the
  ledger appended per batch, results streamed to a file, run report, progress and run
  artifacts), its task runner sized to [run] workers like the `stage` CLI does;
- loop: the same non-Prefect work in plain Python: `read_catalog`, `process_row` over the rows
  (with `workers` > 1: the same batches on a thread pool of that size), `write_run_report`.

To keep the ratio about orchestration rather than pixels, the canvas is small (a temp copy of
config.toml with [layout] width = height = 256, --size: a 0.065 MP master) and the key pair runs
with the channel presets off ([renditions] active = []): config.toml's presets (social 1080x1350,
marketplace 1000x1000) add about 2.4 MP of work per SKU, which would dilute the overhead ~5x. The
header lists every active preset; a second loop/flow pair with the default config (presets on,
--presets-n SKUs, default 100) prints its ratio on the line before the key line. Format copies
stay as config.toml has them. The ephemeral API server's one-off start-up (and the first flow of
each config on a fresh database) is paid by 2-row warm-up flows, reported separately and
excluded. Defaults: workers = 1 and OpenCV/BLAS/OpenMP pinned to one thread, so both sides are
serial and the difference is Prefect's cost, not how well intra-op threads happen to scale on a
2-core machine that other jobs share. Wall and CPU seconds (this process plus the API server
subprocess) are both reported, with per-stage medians of each side as a noise check: a stage
that differs a lot between the sides points at machine noise.

Key figure (last line): flow wall time / loop wall time, presets off, N = 1000; target <= 1.10.

    .venv/bin/python benchmarks/orchestration.py             # N = 1000
    .venv/bin/python benchmarks/orchestration.py --quick     # N = 100, default-config pair 20 SKUs
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
    ap.add_argument("--presets-n", type=int, default=None,
                    help="SKUs of the second pair, with the default config's channel presets on "
                         "(default 100, quick 20; 0: skip)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="loop/flow pairs, alternating which goes first; medians are reported (default 1)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    return ap.parse_args()


def main() -> int:
    args = parse_args()
    n = args.n or (100 if args.quick else 1000)
    if args.presets_n is None:
        args.presets_n = 20 if args.quick else 100
    with C.bench_root("bench-orch-", keep=args.keep, threads=args.threads) as root:
        return run(args, n, root)


def run(args: argparse.Namespace, n: int, root: Path) -> int:
    base: dict = {"layout": {"width": args.size, "height": args.size}, "run": {"workers": args.workers}}
    if args.batch_size:
        base["run"]["batch_size"] = args.batch_size
    cfg_off = C.write_config(root / "config-presets-off.toml", {**base, "renditions": {"active": []}})
    cfg_on = C.write_config(root / "config-default.toml", base)
    from ops.config import load_config

    cfg, default = load_config(cfg_off), load_config(cfg_on)
    presets_n = args.presets_n if default.renditions.active else 0
    batches = -(-n // cfg.run.batch_size)

    print(C.machine_line())
    print(f"N = {n} SKUs over {len(C.demo_templates())} demo photos, canvas {args.size}x{args.size} (temp copy of "
          f"config.toml with [layout] {args.size}x{args.size}), batch_size {cfg.run.batch_size} -> {batches} "
          f"stage-batch tasks, workers {args.workers}, math threads {args.threads or 'default'}, "
          f"format copies {list(cfg.write.format_copies)}")
    print(f"config.toml's {C.presets_line(default)}")
    print("key figure: channel presets off ([renditions] active = []), so that the ratio is about orchestration; "
          + (f"then the default config (presets on) over {presets_n} SKUs" if presets_n else
             "the default config has no active preset: no second pair"))

    clock = C.CpuClock()
    import prefect  # noqa: F401  (import time is reported with the warm-up)

    flow = C.prefect_flow(args.workers)
    warm_rows = [dict(r, sku="WARMUP-" + r["sku"]) for r in C.synthetic_rows(2)]
    warm_catalog = C.write_catalog(root / "warmup.csv", warm_rows)
    for i, path in enumerate([cfg_off] + ([cfg_on] if presets_n else [])):
        warm = flow(catalog=str(warm_catalog), config=str(path), out=str(root / f"out-warmup-{i}"))
    w = clock.stop()
    print(f"warm-up (import prefect, start ephemeral API server, a first flow of 2 rows per config, build backends): "
          f"{w['wall_s']:.1f} s, statuses {C.run_statuses(warm)} -- excluded below")

    on = None
    if presets_n:
        print(f"default config, presets on: {presets_n} SKUs")
        on = compare(args, flow, default, cfg_on, C.write_catalog(root / "catalog-default.csv",
                                                                 C.synthetic_rows(presets_n)), root / "on")
    print(f"presets off: {n} SKUs")
    off = compare(args, flow, cfg, cfg_off, C.write_catalog(root / "catalog.csv", C.synthetic_rows(n)), root / "off")

    def med(runs: dict, side: str, key: str) -> float:
        return C.median([m[key] for m in runs[side]])

    loop_w, flow_w = med(off, "loop", "wall_s"), med(off, "flow", "wall_s")
    loop_c = med(off, "loop", "cpu_s") + med(off, "loop", "server_cpu_s")
    flow_c = med(off, "flow", "cpu_s") + med(off, "flow", "server_cpu_s")
    print()
    print(f"presets off, {n} SKUs:")
    body = [
        ("bare loop (process_row)", loop_w, 1000 * loop_w / n, med(off, "loop", "cpu_s"),
         med(off, "loop", "server_cpu_s")),
        ("Prefect flow", flow_w, 1000 * flow_w / n, med(off, "flow", "cpu_s"), med(off, "flow", "server_cpu_s")),
        ("flow - loop", flow_w - loop_w, 1000 * (flow_w - loop_w) / n,
         med(off, "flow", "cpu_s") - med(off, "loop", "cpu_s"),
         med(off, "flow", "server_cpu_s") - med(off, "loop", "server_cpu_s")),
    ]
    print(C.table(("run", "wall s", "ms/SKU", "cpu s", "server cpu s"), body, floatfmt="{:.2f}"))
    print(f"overhead per stage-batch task: {1000 * (flow_w - loop_w) / batches:.1f} ms wall, "
          f"{1000 * (flow_c - loop_c) / batches:.1f} ms cpu (flow process + API server)")
    print(f"cpu ratio (flow process + server) / (loop process + server): {flow_c / loop_c:.3f}")
    print()
    print("per-stage medians from each side's timings_ms (ms per SKU; a noise check, not part of the ratio)")
    stage_rows = []
    keys = list(dict.fromkeys(k for m in off["loop"] + off["flow"] for k in m["stages"]))
    for k in keys:
        lv = C.median([m["stages"][k] for m in off["loop"] if k in m["stages"]])
        fv = C.median([m["stages"][k] for m in off["flow"] if k in m["stages"]])
        stage_rows.append((k, lv, fv))
    print(C.table(("stage", "loop", "flow"), stage_rows))
    for label, runs in (("presets off", off), ("default config", on)):
        if runs and runs["flow"][0]["statuses"] != runs["loop"][0]["statuses"]:
            print(f"WARNING ({label}): the flow and the loop ended with different statuses")
    if on:
        on_loop, on_flow = med(on, "loop", "wall_s"), med(on, "flow", "wall_s")
        print(f"default config (presets {', '.join(default.renditions.active)} on), {presets_n} SKUs: loop "
              f"{1000 * on_loop / presets_n:.1f} ms/SKU, flow {1000 * on_flow / presets_n:.1f} ms/SKU, "
              f"overhead {1000 * (on_flow - on_loop) / presets_n:.1f} ms/SKU (presets off: "
              f"{1000 * (flow_w - loop_w) / n:.1f})")
        print(f"flow_to_loop_ratio_default_config={on_flow / on_loop:.3f} ({presets_n} SKUs, presets on; "
              f"not the key figure: the presets' pixels dilute the overhead)")
    print(C.key_line("flow_to_loop_ratio", flow_w / loop_w, TARGET, "{:.3f}"))
    return 0


def compare(args: argparse.Namespace, flow, cfg, cfg_path: Path, catalog: Path, out_prefix: Path) -> dict[str, list]:
    """`args.repeats` loop/flow pairs over `catalog`, alternating which goes first."""
    from ops.workbench import Workbench

    bench = Workbench.build(cfg)  # built once, untimed, like the flow's per-process cached Workbench
    runs: dict[str, list[dict]] = {"loop": [], "flow": []}
    for rep in range(args.repeats):
        order = ("loop", "flow") if rep % 2 == 0 else ("flow", "loop")
        for side in order:
            out = Path(f"{out_prefix}-{side}-{rep}")
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
                  f"server {m['server_cpu_s']:.2f} s cpu, {m['statuses']}", flush=True)
    return runs


if __name__ == "__main__":
    sys.exit(main())
