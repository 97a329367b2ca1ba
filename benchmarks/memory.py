"""Memory of a flow run as the catalog grows 10x (5,000 vs 50,000 SKUs): growth per SKU and peak.

Each run is a fresh Python process that imports the flow, notes its RSS (the post-import
baseline), runs `nightly_catalog_run` once over the catalog in Prefect's ephemeral mode with
config.toml's [run] batch_size and workers, and reports its peak RSS (getrusage ru_maxrss). The
ephemeral API server is a separate subprocess: its peak RSS is sampled and reported beside, not
in the key figures.

Every row reaches a batch task and goes through `process_row` (`--rows`):
- `url` (default): the catalog names its photos by http URL, one per SKU, served from this
  machine (127.0.0.1, named in [load] allow_hosts) by a server in the parent process, as when a
  retailer's catalog points at its image CDN. The pre-pass cannot stat a URL, so it sends every
  row to the batch tasks, where `stage_row` locks the SKU, clears stale temp files, and
  `process_row` downloads the photo, hashes it, computes the cache key, checks review
  decisions, prompt safety and the record; the result is appended to the ledger and the result
  log. 99% of the rows were staged before (records primed, see below) and end `cached` there;
  every 100th row has a new scene_prompt and is staged again in full (matte, layout, depth,
  scene, shadow, checks with the NSFW model, encode, C2PA sign, publish over the old files,
  layers, record).
- `force`: local photos and `force = true` over the primed outputs: every row is staged again
  in full. Costs ~0.1 s per SKU on one core: use it with smaller --small/--large.
Per-row work is made cheap where it does not change what the flow keeps per row: a 128x128
canvas (--size), channel presets off ([renditions] active = []), format copies on (config.toml).

Priming (untimed): the real pipeline (`process_row`) stages one SKU per demo photo; every other
SKU gets a copy of its template's product folder (image files hard-linked, names switched to
the SKU's own folder name) and its record rewritten with the SKU, row and its own cache key
(`ops.cache.cache_key`), which is what a cached row is checked against. Each run has its own
primed output folder.

Key figures (the last two lines): KiB of RSS growth per SKU (growth = peak RSS - post-import
baseline of each run; (growth at 50,000 - growth at 5,000) / 45,000), target <= 0.2; before it,
peak RSS of the large run / of the small run, target <= 1.2. `--trace` also diffs tracemalloc
snapshots (taken when every batch is done, before the report) of the two runs: what grows.

    .venv/bin/python benchmarks/memory.py             # 5,000 vs 50,000 SKUs
    .venv/bin/python benchmarks/memory.py --quick     # 500 vs 5,000 SKUs
    .venv/bin/python benchmarks/memory.py --quick --trace   # plus the allocation sites that grow
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.dont_write_bytecode = True  # run from a checkout: leave no __pycache__ behind
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TARGET_RATIO = 1.2
TARGET_KIB = 0.2
CHANGE_EVERY = 100  # 1% of the rows have a new scene_prompt: staged again in full


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="500 vs 5,000 SKUs")
    ap.add_argument("--small", type=int, default=None, help="SKUs in the small run (default 5000, quick 500)")
    ap.add_argument("--large", type=int, default=None, help="SKUs in the large run (default 50000, quick 5000)")
    ap.add_argument("--rows", choices=("url", "force"), default="url",
                    help="how rows reach the batch tasks (default url; see above)")
    ap.add_argument("--size", type=int, default=128, help="square canvas side (default 128)")
    ap.add_argument("--trace", action="store_true", help="diff tracemalloc snapshots of the two runs (slower)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    ap.add_argument("--child", metavar="SPEC_JSON", help=argparse.SUPPRESS)
    return ap.parse_args()


def main() -> int:
    args = parse_args()
    if args.child:
        return child(json.loads(Path(args.child).read_text(encoding="utf-8")))
    small = args.small or (500 if args.quick else 5_000)
    large = args.large or (5_000 if args.quick else 50_000)
    if not 0 < small < large:
        raise SystemExit("need 0 < --small < --large")
    with C.temp_root("bench-mem-", keep=args.keep) as root:
        C.isolated_env(root / "parent")
        C.init_keys()
        return run(args, small, large, root)


# ---------------------------------------------------------------------------------------------
# Child: one flow run in a fresh process

def child(spec: dict) -> int:
    import resource

    import psutil

    me = psutil.Process()
    server_peak = {"rss": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            for p in me.children(recursive=True):
                try:
                    server_peak["rss"] = max(server_peak["rss"], p.memory_info().rss)
                except psutil.Error:
                    continue

    flow = C.prefect_flow()  # imports prefect and the stages
    if spec["trace"]:
        trace_at_finish(spec["trace"])
    baseline = me.memory_info().rss
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    result = flow(catalog=spec["catalog"], config=spec["config"], out=spec["out"], force=spec["force"])
    wall = time.perf_counter() - t0
    after = me.memory_info().rss
    stop.set()
    sampler.join()
    report = {
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # KiB on Linux
        "baseline_rss": baseline, "after_rss": after, "server_peak_rss": server_peak["rss"],
        "wall_s": wall, "statuses": C.run_statuses(result), "rows": result["summary"]["processed"],
        "prepass_s": result["timings"].get("prepass_s"),
    }
    Path(spec["result"]).write_text(json.dumps(report), encoding="utf-8")
    return 0


def trace_at_finish(dump_path: str) -> None:
    """Trace allocations from the end of the first batches on (the backends are built by then: tracing their
    loading would take minutes); when every batch is done (the flow's `_finish`), dump a snapshot and a
    count of the objects the garbage collector tracks, by type."""
    import gc
    import tracemalloc
    from collections import Counter

    from flows import nightly
    from ops.results_log import ResultLog

    append = ResultLog.append

    def counted(self, results):
        append(self, results)
        if self.count >= 4 * 32 and not tracemalloc.is_tracing():
            tracemalloc.start(6)

    def traced(*a, **kw):
        if tracemalloc.is_tracing():
            tracemalloc.take_snapshot().dump(dump_path)
            tracemalloc.stop()
        gc.collect()
        kinds = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())
        Path(dump_path + ".types.json").write_text(json.dumps(kinds.most_common(400)), encoding="utf-8")
        return finish(*a, **kw)

    ResultLog.append = counted
    finish, nightly._finish = nightly._finish, traced


def measure(root: Path, tag: str, catalog: Path, config: Path, out: Path, force: bool, trace: bool) -> dict:
    env = dict(os.environ)
    home = root / f"child-{tag}"
    env["PREFECT_HOME"] = str(home / "prefect")  # a fresh Prefect database for each run
    home.mkdir(parents=True, exist_ok=True)
    spec = {"catalog": str(catalog), "config": str(config), "out": str(out), "force": force,
            "result": str(home / "result.json"), "trace": str(home / "trace.snap") if trace else None}
    (home / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(home / "spec.json")],
                          env=env, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"the {tag} run failed (exit {proc.returncode})")
    return json.loads(Path(spec["result"]).read_text(encoding="utf-8")) | {"trace": spec["trace"]}


def print_growth(small_snap: str, large_snap: str, top: int = 15) -> None:
    """The allocation sites (file:line, innermost frame in the pipeline's or Prefect's code) that hold more
    in the large run than in the small one, when every batch is done."""
    import tracemalloc

    s, g = tracemalloc.Snapshot.load(small_snap), tracemalloc.Snapshot.load(large_snap)
    stats = g.compare_to(s, "traceback")
    ks, kg = (dict(json.loads(Path(p + ".types.json").read_text(encoding="utf-8"))) for p in (small_snap, large_snap))
    more = sorted(((kg[k] - ks.get(k, 0), k) for k in kg), reverse=True)[:top]
    print("objects tracked by the garbage collector, large run minus small run: "
          + ", ".join(f"{k} {d:+d}" for d, k in more if d > 0))
    print(f"tracemalloc: held when every batch was done, large run minus small run (top {top}):")
    for st in stats[:top]:
        frames = [f for f in reversed(st.traceback) if "/tracemalloc.py" not in f.filename]  # innermost first
        where = " <- ".join(f"{_short(f.filename)}:{f.lineno}" for f in frames[:4])
        print(f"  {st.size_diff / 2**20:+8.2f} MiB {st.count_diff:+9d} blocks  {where}")


def _short(filename: str) -> str:
    for mark in ("/site-packages/", str(C.REPO) + "/", "/lib/python3"):
        if mark in filename:
            return filename.split(mark, 1)[1]
    return filename


# ---------------------------------------------------------------------------------------------
# Photos over http, and priming: records that make the unchanged rows cache hits

class PhotoServer:
    """Serves the demo photos at http://127.0.0.1:PORT/<anything>/<photo name> (the name picks the file)."""

    def __init__(self) -> None:
        folder = str(C.DEMO_CSV.parent / "images")

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=folder, **kw)

            def translate_path(self, path: str) -> str:
                return os.path.join(folder, os.path.basename(path.split("?", 1)[0]))

            def log_message(self, *a) -> None:  # one line per request would drown the output
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url_rows(self, rows: list[dict[str, str]]) -> list[dict[str, str]]:
        return [dict(r, image=f"{self.base}/{r['sku']}/{Path(r['image']).name}") for r in rows]

    def close(self) -> None:
        self.server.shutdown()


def prime(cfg_path: Path, catalog: Path, out: Path) -> dict[str, float]:
    import shutil

    from ops.cache import cache_key
    from ops.catalog import read_catalog
    from ops.config import load_config
    from ops.context import RunContext
    from ops.paths import sku_slug
    from ops.runner import process_row
    from ops.sources import read_source
    from ops.workbench import Workbench

    cfg = load_config(cfg_path)
    rows = read_catalog(catalog, cfg.run.max_variants, cfg.local_roots()).rows
    bench = Workbench.build(cfg)
    n_templates = len(C.demo_templates())
    t0 = time.perf_counter()
    for row in rows[:n_templates]:
        res = process_row(bench, row, RunContext(out, "prime"))
        if res.status != "ok":
            raise SystemExit(f"priming: row {row.row} ({row.sku}) ended {res.status}: {res.error or res.reasons}")
    t_real = time.perf_counter() - t0
    t0 = time.perf_counter()
    products = out / "products"
    digests: dict[str, str] = {}
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
        photo = Path(row.image).name
        if photo not in digests:
            import hashlib

            digests[photo] = hashlib.sha256(read_source(row.image, cfg.load)).hexdigest()
        record["source_sha256"] = digests[photo]
        record["cache_key"] = cache_key(row, digests[photo], cfg.digest())
        record["run_id"] = "prime-clone"
        (dst_dir / f"{slug}.json").write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
    return {"real_s": t_real, "clone_s": time.perf_counter() - t0, "rows": len(rows)}


# ---------------------------------------------------------------------------------------------

def run(args: argparse.Namespace, small: int, large: int, root: Path) -> int:
    server = PhotoServer() if args.rows == "url" else None
    try:
        return _run(args, small, large, root, server)
    finally:
        if server is not None:
            server.close()


def _run(args: argparse.Namespace, small: int, large: int, root: Path, server: PhotoServer | None) -> int:
    overrides = {"layout": {"width": args.size, "height": args.size}, "renditions": {"active": []},
                 "load": {"allow_hosts": ["127.0.0.1"]}}
    cfg_path = C.write_config(root / "config.toml", overrides)
    from ops.config import load_config

    cfg = load_config(cfg_path)
    templates = C.demo_templates()
    edits = {i: (templates[i % len(templates)]["scene_prompt"] or "clean studio backdrop") + ", edited"
             for i in range(0, large, CHANGE_EVERY)} if args.rows == "url" else {}
    v1, v2 = C.synthetic_rows(large), C.synthetic_rows(large, prompt_overrides=edits)
    if server is not None:
        v1, v2 = server.url_rows(v1), server.url_rows(v2)
    print(C.machine_line())
    if args.rows == "url":
        how = (f"photos by http URL (127.0.0.1), every row through a batch task and process_row: 99% end cached "
               f"there, every {CHANGE_EVERY}th (new scene_prompt) is staged again in full")
    else:
        how = "local photos, force = true over the primed outputs: every row staged again in full"
    print(f"flow runs over {small} and {large} SKUs; {how}")
    print(f"canvas {args.size}x{args.size}, channel presets {list(cfg.renditions.active) or 'off'}, format copies "
          f"{list(cfg.write.format_copies)}; batch_size {cfg.run.batch_size} ({-(-small // cfg.run.batch_size)} and "
          f"{-(-large // cfg.run.batch_size)} batch tasks), workers {cfg.run.workers}; Prefect logging level "
          f"{os.environ.get('PREFECT_LOGGING_LEVEL')}")

    results = {}
    for tag, n in (("small", small), ("large", large)):
        out = root / f"out-{tag}"
        print(f"priming records for {n} SKUs ...", flush=True)
        p = prime(cfg_path, C.write_catalog(root / f"prime-{n}.csv", v1[:n]), out)
        print(f"  process_row on {len(templates)} rows: {p['real_s']:.1f} s; cloned {p['rows'] - len(templates)} "
              f"product folders: {p['clone_s']:.1f} s")
        catalog = C.write_catalog(root / f"catalog-{n}.csv", v2[:n])
        print(f"flow run over {n} SKUs in a fresh process ...", flush=True)
        results[tag] = r = measure(root, tag, catalog, cfg_path, out, args.rows == "force", args.trace)
        print(f"  {r['wall_s']:.1f} s ({r['prepass_s']:.1f} s pre-pass), {r['statuses']}")
        want = {"ok": len([i for i in edits if i < n]), "cached": n - len([i for i in edits if i < n])}
        if args.rows == "force":
            want = {"ok": n}
        if {k: v for k, v in r["statuses"].items() if v} != {k: v for k, v in want.items() if v}:
            print(f"WARNING: expected {want}, got {r['statuses']}")

    mib = 1 / 2**20
    s, g = results["small"], results["large"]
    print()
    body = []
    for label, key in (("flow process peak RSS", "peak_rss"), ("  after imports (baseline)", "baseline_rss"),
                       ("  growth (peak - baseline)", None), ("  RSS when the flow returned", "after_rss"),
                       ("API server subprocess peak RSS", "server_peak_rss")):
        if key is None:
            sv, gv = (s["peak_rss"] - s["baseline_rss"]) * mib, (g["peak_rss"] - g["baseline_rss"]) * mib
        else:
            sv, gv = s[key] * mib, g[key] * mib
        body.append((label, sv, gv, f"{gv / sv:.2f}" if sv else "-"))
    body.append(("flow wall s", s["wall_s"], g["wall_s"], f"{g['wall_s'] / s['wall_s']:.2f}"))
    print(C.table(("MiB", f"{small} SKUs", f"{large} SKUs", "ratio"), body))
    if args.trace:
        print()
        print_growth(s["trace"], g["trace"])
    growth = ((g["peak_rss"] - g["baseline_rss"]) - (s["peak_rss"] - s["baseline_rss"])) / (large - small) / 1024
    ratio = g["peak_rss"] / s["peak_rss"]
    print(f"(growth per SKU between {small} and {large} SKUs, above each run's post-import baseline)")
    print(C.key_line("peak_rss_ratio", ratio, TARGET_RATIO, "{:.3f}"))
    print(C.key_line("rss_growth_kib_per_sku", growth, TARGET_KIB, "{:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
