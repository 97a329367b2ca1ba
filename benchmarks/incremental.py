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
a 2-row warm-up flow per config, reported separately and excluded.

The key pair runs with the channel presets off ([renditions] active = []): config.toml's presets
(social 1080x1350, marketplace 1000x1000) add about 2.4 MP of work per SKU to the 0.065 MP
master, which makes the full run ~3x longer and hides the rerun's own cost. The header lists
every active preset; a second full run + rerun with the default config (presets on,
--presets-n SKUs, default 1,000) prints its ratio on the line before the key line.

Key figure (last line): rerun wall time / full-run wall time, presets off, N = 10,000; target <= 3%.

    .venv/bin/python benchmarks/incremental.py              # N = 10,000, then 1,000 with presets (tens of minutes on 2 cores)
    .venv/bin/python benchmarks/incremental.py --quick      # N = 500, then 100 with presets
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
    ap.add_argument("--presets-n", type=int, default=None,
                    help="SKUs of the second full run + rerun, with the default config's channel presets on "
                         "(default 1000, quick 100; 0: skip)")
    ap.add_argument("--threads", type=int, default=1, help="OpenCV/BLAS/OpenMP threads (default 1; 0: library default)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    return ap.parse_args()


def main() -> int:
    args = parse_args()
    n = args.n or (500 if args.quick else 10_000)
    if args.presets_n is None:
        args.presets_n = 100 if args.quick else 1000
    with C.bench_root("bench-incr-", keep=args.keep, threads=args.threads) as root:
        return run(args, n, root)


def run(args: argparse.Namespace, n: int, root: Path) -> int:
    base: dict = {"layout": {"width": args.size, "height": args.size}, "run": {}}
    if args.workers:
        base["run"]["workers"] = args.workers
    if args.batch_size:
        base["run"]["batch_size"] = args.batch_size
    cfg_off = C.write_config(root / "config-presets-off.toml", {**base, "renditions": {"active": []}})
    cfg_on = C.write_config(root / "config-default.toml", base)
    from ops.config import load_config

    cfg, default = load_config(cfg_off), load_config(cfg_on)
    presets_n = args.presets_n if default.renditions.active else 0
    print(C.machine_line())
    print(f"engine {args.engine}; N = {n} SKUs over {len(C.demo_templates())} demo photos; every "
          f"{CHANGE_EVERY}th row (1%) gets a new scene_prompt for the rerun; canvas {args.size}x{args.size} "
          f"(temp copy of config.toml); workers {cfg.run.workers}, batch_size {cfg.run.batch_size}, "
          f"math threads {args.threads or 'default'}; format copies {list(cfg.write.format_copies)}")
    print(f"config.toml's {C.presets_line(default)}")
    print("key figure: channel presets off ([renditions] active = []), so that the ratio is about the pre-pass and "
          "orchestration; " + (f"then the default config (presets on) over {presets_n} SKUs" if presets_n else
                               "the default config has no active preset: no second pair"))

    if args.engine == "flow":
        clock = C.CpuClock()
        flow = C.prefect_flow(cfg.run.workers)
        warm_rows = [dict(r, sku="WARMUP-" + r["sku"]) for r in C.synthetic_rows(2)]
        warm_catalog = C.write_catalog(root / "warmup.csv", warm_rows)
        for i, path in enumerate([cfg_off] + ([cfg_on] if presets_n else [])):
            warm = flow(catalog=str(warm_catalog), config=str(path), out=str(root / f"out-warmup-{i}"))
        w = clock.stop()
        print(f"warm-up (import prefect, start ephemeral API server, a 2-row flow per config, build backends): "
              f"{w['wall_s']:.1f} s, {C.run_statuses(warm)} -- excluded")

        def engine(cfg_path: Path, out: Path):
            return lambda catalog: flow(catalog=str(catalog), config=str(cfg_path), out=str(out))
    else:
        from ops.workbench import Workbench

        def engine(cfg_path: Path, out: Path):
            c = load_config(cfg_path)
            bench = Workbench.build(c)
            return lambda catalog: C.bare_run(bench, cfg_path, catalog, out, c.run.workers)

    on = None
    if presets_n:
        print(f"default config, presets on: {presets_n} SKUs")
        on = full_and_rerun(engine(cfg_on, root / "out-default"), presets_n, root / "default")
    print(f"presets off: {n} SKUs")
    off = full_and_rerun(engine(cfg_off, root / "out"), n, root / "off")

    m_full, m_re = off["full"], off["rerun"]
    per_sku_full = m_full["wall_s"] / n
    regenerated, expected = off["regenerated"], off["expected"]
    cached_rows = m_re["statuses"].get("cached", 0)
    rest = m_re["wall_s"] - len(regenerated) * per_sku_full
    print()
    print(f"presets off, {n} SKUs:")
    body = [
        ("full run", m_full["wall_s"], 1000 * per_sku_full, m_full["cpu_s"], m_full["server_cpu_s"]),
        ("rerun, 1% changed", m_re["wall_s"], 1000 * m_re["wall_s"] / n, m_re["cpu_s"], m_re["server_cpu_s"]),
    ]
    print(C.table(("run", "wall s", "ms/SKU", "cpu s", "server cpu s"), body, floatfmt="{:.2f}"))
    for label, pair in (("presets off", off), ("default config", on)):
        if pair and pair["regenerated"] ^ pair["expected"]:
            print(f"WARNING ({label}): the rerun regenerated {len(pair['regenerated'])} rows, expected the "
                  f"{len(pair['expected'])} edited ones; {len(pair['regenerated'] ^ pair['expected'])} differ")
    print(f"rerun regenerated {len(regenerated)} rows (expected the {len(expected)} edited ones), {cached_rows} cached")
    if cached_rows:
        print(f"rerun minus the regenerated rows at the full run's per-SKU cost: {rest:.2f} s, i.e. "
              f"{1000 * rest / cached_rows:.2f} ms per cached SKU (budget for the target: "
              f"{1000 * max(0.0, TARGET * m_full['wall_s'] - len(regenerated) * per_sku_full) / cached_rows:.2f} ms)")
    if on:
        f_on, r_on = on["full"]["wall_s"], on["rerun"]["wall_s"]
        print(f"default config (presets {', '.join(default.renditions.active)} on), {presets_n} SKUs: full run "
              f"{f_on:.1f} s ({1000 * f_on / presets_n:.1f} ms/SKU), rerun {r_on:.1f} s, "
              f"{on['rerun']['statuses']}")
        print(f"rerun_to_full_ratio_default_config={r_on / f_on:.4f} ({100 * r_on / f_on:.2f}%, {presets_n} SKUs, "
              f"presets on; not the key figure: the presets' pixels dilute the rerun's fixed costs)")
    ratio = m_re["wall_s"] / m_full["wall_s"]
    print(C.key_line("rerun_to_full_ratio", 100 * ratio, 100 * TARGET, "{:.2f}", "%"))
    return 0


def full_and_rerun(go, n: int, tag: Path) -> dict:
    """A full run of `n` SKUs into an empty folder, then a rerun with every CHANGE_EVERY-th row's prompt edited."""
    templates = C.demo_templates()
    changed = set(range(0, n, CHANGE_EVERY))
    edits = {i: (templates[i % len(templates)]["scene_prompt"] or "clean studio backdrop") + ", edited"
             for i in changed}
    full_catalog = C.write_catalog(Path(f"{tag}-catalog-v1.csv"), C.synthetic_rows(n))
    edited_catalog = C.write_catalog(Path(f"{tag}-catalog-v2.csv"), C.synthetic_rows(n, prompt_overrides=edits))
    print(f"  full run of {n} SKUs ...", flush=True)
    clock = C.CpuClock()
    full = go(full_catalog)
    m_full = clock.stop() | {"statuses": C.run_statuses(full)}
    print(f"    {m_full['wall_s']:.1f} s wall, {m_full['cpu_s']:.1f} s cpu, {m_full['statuses']}")
    print("  rerun with 1% of the rows changed ...", flush=True)
    clock = C.CpuClock()
    again = go(edited_catalog)
    m_re = clock.stop() | {"statuses": C.run_statuses(again)}
    print(f"    {m_re['wall_s']:.1f} s wall, {m_re['cpu_s']:.1f} s cpu, {m_re['statuses']}")
    regenerated = {r["sku"] for r in C.all_results(again) if r["status"] != "cached"}
    rows = C.synthetic_rows(n)
    return {"full": m_full, "rerun": m_re, "regenerated": regenerated, "expected": {rows[i]["sku"] for i in changed}}


if __name__ == "__main__":
    sys.exit(main())
