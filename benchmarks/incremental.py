"""Incremental rerun: after a full run, change 1% of the catalog and run again.

The first run stages N synthetic SKUs (distinct SKUs over the demo photos) into an empty output
folder. Then 1% of the rows (every 100th) get a different scene_prompt, which changes their
cache key only, and the same catalog runs again into the same folder: those rows are
regenerated (status "ok") and every other row must come back "cached" without touching a pixel.
With the flow, unchanged rows are found by the pre-pass (ops.prepass: a stat of the
photo and a ledger lookup per row) and never reach a Prefect task.

Engine: the Prefect flow (`nightly_catalog_run`, ephemeral mode, task runner sized to [run]
workers = 2 like the `stage` CLI) by default; `--engine loop` runs `process_row` over the rows
in plain Python instead. Canvas: a temp copy of config.toml with [layout] 256x256 (--size);
OpenCV/BLAS/OpenMP pinned to one thread per worker. The ephemeral server's start-up is paid by
a 2-row warm-up flow, reported separately and excluded.

Key figure (last line): rerun wall time / full-run wall time.

    .venv/bin/python benchmarks/incremental.py              # N = 10,000 (tens of minutes on 2 cores)
    .venv/bin/python benchmarks/incremental.py --quick      # N = 500
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # run from a checkout: leave no __pycache__ behind
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TARGET = 0.03
CHANGE_EVERY = 100  # 1% of the rows


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="N = 500, smoke run")
    ap.add_argument("-n", type=int, default=None, help="SKUs (default 10000, quick 500)")
    ap.add_argument("--engine", choices=("flow", "loop"), default="flow", help="default flow")
    ap.add_argument("--size", type=int, default=256, help="square canvas side (default 256)")
    ap.add_argument("--workers", type=int, default=None, help="[run] workers (default: config.toml)")
    ap.add_argument("--batch-size", type=int, default=None, help="[run] batch_size (default: config.toml)")
    ap.add_argument("--threads", type=int, default=1, help="OpenCV/BLAS/OpenMP threads (default 1; 0: library default)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    return ap.parse_args()


def main() -> int:
    args = parse_args()
    n = args.n or (500 if args.quick else 10_000)
    with C.bench_root("bench-incr-", keep=args.keep, threads=args.threads) as root:
        return run(args, n, root)


def run(args: argparse.Namespace, n: int, root: Path) -> int:
    overrides: dict = {"layout": {"width": args.size, "height": args.size}, "run": {}}
    if args.workers:
        overrides["run"]["workers"] = args.workers
    if args.batch_size:
        overrides["run"]["batch_size"] = args.batch_size
    cfg_path = C.write_config(root / "config.toml", overrides)
    from ops.config import load_config

    cfg = load_config(cfg_path)
    templates = C.demo_templates()
    changed = set(range(0, n, CHANGE_EVERY))
    edits = {i: (templates[i % len(templates)]["scene_prompt"] or "clean studio backdrop") + ", edited"
             for i in changed}
    full_catalog = C.write_catalog(root / "catalog-v1.csv", C.synthetic_rows(n))
    edited_catalog = C.write_catalog(root / "catalog-v2.csv", C.synthetic_rows(n, prompt_overrides=edits))
    out = root / "out"
    print(C.machine_line())
    print(f"engine {args.engine}; N = {n} SKUs over {len(templates)} demo photos; {len(changed)} rows "
          f"({100 * len(changed) / n:.1f}%) get a new scene_prompt for the rerun; canvas {args.size}x{args.size} "
          f"(temp copy of config.toml); workers {cfg.run.workers}, batch_size {cfg.run.batch_size}, "
          f"math threads {args.threads or 'default'}; format copies {list(cfg.write.format_copies)}")

    if args.engine == "flow":
        clock = C.CpuClock()
        flow = C.prefect_flow(cfg.run.workers)
        warm_rows = [dict(r, sku="WARMUP-" + r["sku"]) for r in C.synthetic_rows(2)]
        warm = flow(catalog=str(C.write_catalog(root / "warmup.csv", warm_rows)), config=str(cfg_path),
                    out=str(root / "out-warmup"))
        w = clock.stop()
        print(f"warm-up (import prefect, start ephemeral API server, 2-row flow, build backends): "
              f"{w['wall_s']:.1f} s, {C.run_statuses(warm)} -- excluded")

        def go(catalog: Path) -> dict:
            return flow(catalog=str(catalog), config=str(cfg_path), out=str(out))
    else:
        from ops.workbench import Workbench

        bench = Workbench.build(cfg)

        def go(catalog: Path) -> dict:
            return C.bare_run(bench, cfg_path, catalog, out, cfg.run.workers)

    print(f"full run of {n} SKUs ...", flush=True)
    clock = C.CpuClock()
    full = go(full_catalog)
    m_full = clock.stop()
    s_full = C.run_statuses(full)
    print(f"  {m_full['wall_s']:.1f} s wall, {m_full['cpu_s']:.1f} s cpu, {s_full}")
    print("rerun with 1% of the rows changed ...", flush=True)
    clock = C.CpuClock()
    again = go(edited_catalog)
    m_re = clock.stop()
    s_re = C.run_statuses(again)
    print(f"  {m_re['wall_s']:.1f} s wall, {m_re['cpu_s']:.1f} s cpu, {s_re}")

    regenerated = {r["sku"] for r in C.all_results(again) if r["status"] != "cached"}
    expected = {C.synthetic_rows(n)[i]["sku"] for i in changed}
    wrong = (regenerated ^ expected)
    per_sku_full = m_full["wall_s"] / n
    cached_rows = s_re.get("cached", 0)
    rest = m_re["wall_s"] - len(regenerated) * per_sku_full
    print()
    body = [
        ("full run", m_full["wall_s"], 1000 * per_sku_full, m_full["cpu_s"], m_full["server_cpu_s"]),
        ("rerun, 1% changed", m_re["wall_s"], 1000 * m_re["wall_s"] / n, m_re["cpu_s"], m_re["server_cpu_s"]),
    ]
    print(C.table(("run", "wall s", "ms/SKU", "cpu s", "server cpu s"), body, floatfmt="{:.2f}"))
    print(f"rerun regenerated {len(regenerated)} rows (expected the {len(expected)} edited ones"
          + (f"; {len(wrong)} differ!" if wrong else "") + f"), {cached_rows} cached")
    if cached_rows:
        print(f"rerun minus the regenerated rows at the full run's per-SKU cost: {rest:.2f} s, i.e. "
              f"{1000 * rest / cached_rows:.2f} ms per cached SKU (budget for the target: "
              f"{1000 * max(0.0, TARGET * m_full['wall_s'] - len(regenerated) * per_sku_full) / cached_rows:.2f} ms)")
    ratio = m_re["wall_s"] / m_full["wall_s"]
    print(f"rerun_to_full_ratio={ratio:.4f} ({100 * ratio:.2f}%) target<={100 * TARGET:.0f}% "
          f"{C.verdict(ratio, TARGET)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
