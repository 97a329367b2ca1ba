"""Peak memory of a flow run over a small vs a 10x larger catalog (5,000 vs 50,000 SKUs).

What is measured: the peak RSS (getrusage ru_maxrss) of a fresh Python process that imports
the flow and runs `nightly_catalog_run` once over the catalog, in Prefect's ephemeral mode with
config.toml's [run] batch_size and workers (canvas: a temp copy with [layout] 256x256). Every
row of that run is a cache hit, so per-SKU work is cheap (read the photo, hash it, read the
record) while the orchestration and result-collection path runs in full: the validate task
returning every row, one stage-batch task per batch, every result collected, the run report
(JSON, CSV, HTML) and the artifacts. The ephemeral API server is a separate subprocess: its
peak RSS is sampled with psutil and reported beside the flow process's, not in the key figure.

How the records that make every row a cache hit are made (`--prime`):
- `clone` (default): the real pipeline (`process_row`) stages one SKU per demo photo; every
  other SKU gets a copy of its template's product folder (image files hard-linked, names
  switched to the SKU's own folder name) and its record JSON rewritten with the SKU, row and
  the SKU's own cache key (`ops.cache.cache_key`). A cached rerun checks exactly these:
  the record's cache_key and that its output file exists.
- `full`: the real pipeline stages every SKU (hours for 50,000 on 2 cores).

Key figure (last line): peak RSS of the large run / peak RSS of the small run.

    .venv/bin/python benchmarks/memory.py             # 5,000 vs 50,000 SKUs
    .venv/bin/python benchmarks/memory.py --quick     # 500 vs 5,000 SKUs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # run from a checkout: leave no __pycache__ behind
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TARGET = 1.2


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="500 vs 5,000 SKUs")
    ap.add_argument("--small", type=int, default=None, help="SKUs in the small run (default 5000, quick 500)")
    ap.add_argument("--large", type=int, default=None, help="SKUs in the large run (default 50000, quick 5000)")
    ap.add_argument("--prime", choices=("clone", "full"), default="clone", help="how records are made (default clone)")
    ap.add_argument("--size", type=int, default=256, help="square canvas side (default 256)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    ap.add_argument("--child", nargs=4, metavar=("CATALOG", "CONFIG", "OUT", "RESULT_JSON"), help=argparse.SUPPRESS)
    return ap.parse_args()


def main() -> int:
    args = parse_args()
    if args.child:
        return child(*args.child)
    small = args.small or (500 if args.quick else 5_000)
    large = args.large or (5_000 if args.quick else 50_000)
    with C.temp_root("bench-mem-", keep=args.keep) as root:
        C.isolated_env(root / "parent")
        C.init_keys()
        return run(args, small, large, root)


# ---------------------------------------------------------------------------------------------
# Child: one flow run in a fresh process

def child(catalog: str, config: str, out: str, result_json: str) -> int:
    import resource
    import threading

    import psutil

    me = psutil.Process()
    server_peak = {"rss": 0, "pids": set()}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            for p in me.children(recursive=True):
                try:
                    server_peak["rss"] = max(server_peak["rss"], p.memory_info().rss)
                    server_peak["pids"].add(p.pid)
                except psutil.Error:
                    continue

    flow = C.prefect_flow()  # imports prefect and the stages
    baseline = me.memory_info().rss
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    result = flow(catalog=catalog, config=config, out=out)
    wall = time.perf_counter() - t0
    after = me.memory_info().rss
    stop.set()
    sampler.join()
    report = {
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # KiB on Linux
        "baseline_rss": baseline, "after_rss": after, "server_peak_rss": server_peak["rss"],
        "wall_s": wall, "statuses": C.run_statuses(result), "rows": result["summary"]["processed"],
    }
    Path(result_json).write_text(json.dumps(report), encoding="utf-8")
    return 0


def measure(root: Path, tag: str, catalog: Path, config: Path, out: Path) -> dict:
    env = dict(os.environ)
    home = root / f"child-{tag}"
    env["PREFECT_HOME"] = str(home / "prefect")  # a fresh Prefect database for each run
    result_json = home / "result.json"
    home.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(catalog), str(config),
                           str(out), str(result_json)], env=env, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"the {tag} run failed (exit {proc.returncode})")
    return json.loads(result_json.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# Priming: records that make every row a cache hit

def prime(mode: str, cfg_path: Path, catalog: Path, out: Path) -> dict[str, float]:
    import shutil

    from ops.catalog import read_catalog
    from ops.config import load_config
    from ops.paths import sku_slug
    from ops.cache import cache_key
    from ops.context import RunContext
    from ops.runner import process_row
    from ops.workbench import Workbench

    cfg = load_config(cfg_path)
    rows = read_catalog(catalog, cfg.run.max_variants, cfg.local_roots()).rows
    bench = Workbench.build(cfg)
    n_templates = len(C.demo_templates())
    t0 = time.perf_counter()
    real = rows if mode == "full" else rows[:n_templates]
    for row in real:
        res = process_row(bench, row, RunContext(out, "prime"))
        if res.status != "ok":
            raise SystemExit(f"priming: row {row.row} ({row.sku}) ended {res.status}: {res.error or res.reasons}")
    t_real = time.perf_counter() - t0
    t0 = time.perf_counter()
    if mode == "clone":
        products = out / "products"
        for i, row in enumerate(rows[n_templates:], start=n_templates):
            seed = rows[i % n_templates]
            seed_slug, slug = sku_slug(seed.sku), sku_slug(row.sku)
            src_dir, dst_dir = products / seed_slug, products / slug
            record = json.loads((src_dir / f"{seed_slug}.json").read_text(encoding="utf-8"))
            for src in src_dir.rglob("*"):
                if src.is_dir() or src.name == f"{seed_slug}.json":
                    continue
                dst = dst_dir / str(src.relative_to(src_dir)).replace(seed_slug, slug)
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
            text = json.dumps(record).replace(seed_slug, slug).replace(json.dumps(seed.sku)[1:-1],
                                                                       json.dumps(row.sku)[1:-1])
            record = json.loads(text)
            record["row"] = row.row
            record["cache_key"] = cache_key(row, record["source_sha256"], cfg.digest())
            record["run_id"] = "prime-clone"
            (dst_dir / f"{slug}.json").write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
    return {"real_s": t_real, "real_rows": len(real), "clone_s": time.perf_counter() - t0,
            "clone_rows": len(rows) - len(real)}


def run(args: argparse.Namespace, small: int, large: int, root: Path) -> int:
    cfg_path = C.write_config(root / "config.toml", {"layout": {"width": args.size, "height": args.size}})
    from ops.config import load_config

    cfg = load_config(cfg_path)
    rows = C.synthetic_rows(large)
    cat_large = C.write_catalog(root / f"catalog-{large}.csv", rows)
    cat_small = C.write_catalog(root / f"catalog-{small}.csv", rows[:small])
    out = root / "out"
    print(C.machine_line())
    print(f"flow runs over {small} and {large} SKUs, every row a cache hit; canvas {args.size}x{args.size}; "
          f"batch_size {cfg.run.batch_size} ({-(-small // cfg.run.batch_size)} and "
          f"{-(-large // cfg.run.batch_size)} tasks), workers {cfg.run.workers}")
    print(f"priming records for {large} SKUs ({args.prime}) ...", flush=True)
    p = prime(args.prime, cfg_path, cat_large, out)
    print(f"  process_row on {p['real_rows']} rows: {p['real_s']:.1f} s; cloned {p['clone_rows']} product folders: "
          f"{p['clone_s']:.1f} s")

    results = {}
    for tag, catalog, n in (("small", cat_small, small), ("large", cat_large, large)):
        print(f"flow run over {n} SKUs in a fresh process ...", flush=True)
        results[tag] = measure(root, tag, catalog, cfg_path, out)
        r = results[tag]
        print(f"  {r['wall_s']:.1f} s, {r['statuses']}")
        if r["statuses"].get("cached", 0) != n:
            print(f"WARNING: expected {n} cached rows, got {r['statuses']}")

    mib = 1 / 2**20
    s, g = results["small"], results["large"]
    print()
    body = []
    for label, key in (("flow process peak RSS", "peak_rss"), ("  after imports (before the flow)", "baseline_rss"),
                       ("  growth during the run (peak - after imports)", None),
                       ("  RSS when the flow returned", "after_rss"),
                       ("API server subprocess peak RSS", "server_peak_rss")):
        if key is None:
            sv, gv = (s["peak_rss"] - s["baseline_rss"]) * mib, (g["peak_rss"] - g["baseline_rss"]) * mib
        else:
            sv, gv = s[key] * mib, g[key] * mib
        body.append((label, sv, gv, f"{gv / sv:.2f}" if sv else "-"))
    body.append(("flow wall s", s["wall_s"], g["wall_s"], f"{g['wall_s'] / s['wall_s']:.2f}"))
    print(C.table(("MiB", f"{small} SKUs", f"{large} SKUs", "ratio"), body))
    per_sku = (g["peak_rss"] - s["peak_rss"]) / max(1, large - small)
    print(f"marginal peak memory: {per_sku / 1024:.1f} KiB per SKU")
    ratio = g["peak_rss"] / s["peak_rss"]
    print(f"peak_rss_ratio={ratio:.3f} ({large} vs {small} SKUs) target<={TARGET:.1f} {C.verdict(ratio, TARGET)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
