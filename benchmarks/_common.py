"""Shared helpers for the benchmark scripts: isolated environment, synthetic catalogs, temp configs.

Every benchmark writes only under a temp folder: outputs, Prefect's database, the development
signing keys and the configs it runs with. Call `isolated_env` before anything imports prefect.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEMO_CSV = REPO / "catalog" / "demo.csv"
REPO_CONFIG = REPO / "config.toml"

# Production signing material or a remote Prefect API would change what is measured.
_UNSET = ("STAGE_SIGN_CERT_CHAIN", "STAGE_SIGN_PRIVATE_KEY", "STAGE_TRUST_ANCHORS", "PREFECT_API_URL",
          "PREFECT_API_KEY", "PREFECT_PROFILES_PATH")


def isolated_env(tmp: Path, *, threads: int | None = None) -> None:
    """Point Prefect, the signing keys and the HF hub at `tmp`; optionally pin math libraries to N threads.

    Must run before prefect, numpy or cv2 are imported for the thread settings to take effect.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["STAGE_KEYS_DIR"] = str(tmp / "keys")
    os.environ["PREFECT_HOME"] = str(tmp / "prefect")
    os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "300"  # a busy machine; excluded from every figure
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    os.environ["U2NET_HOME"] = str(tmp / "u2net")
    for var in _UNSET:
        os.environ.pop(var, None)
    if threads is not None:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS"):
            os.environ[var] = str(threads)


def pin_threads(threads: int) -> None:
    """Limit OpenCV (and torch, when something imported it) to `threads` threads."""
    import cv2

    cv2.setNumThreads(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def init_keys() -> None:
    from provenance.keys import init_dev_keys

    init_dev_keys()


@contextmanager
def temp_root(prefix: str, keep: bool = False):
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield root
    finally:
        if keep:
            print(f"(kept {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def bench_root(prefix: str, *, keep: bool, threads: int | None):
    """A temp root with an isolated environment, threads pinned (when given) and dev keys made."""
    with temp_root(prefix, keep=keep) as root:
        isolated_env(root, threads=threads or None)
        if threads:
            pin_threads(threads)
        init_keys()
        yield root


# ---------------------------------------------------------------------------------------------
# Configs

def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _toml_tables(data: dict[str, Any], prefix: str, out: list[str]) -> None:
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    if prefix and (scalars or not tables):
        out.append(f"[{prefix}]")
    out.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
    if scalars:
        out.append("")
    for k, v in tables.items():
        _toml_tables(v, f"{prefix}.{k}" if prefix else k, out)


def write_config(path: Path, overrides: dict[str, Any]) -> Path:
    """The repo's config.toml with `overrides` (nested tables) merged on top, written to `path`."""
    from ops.tables import merge_tables  # imported late: isolated_env must run before numpy is loaded

    data = tomllib.loads(REPO_CONFIG.read_text(encoding="utf-8"))
    merge_tables(data, {"load": {"local_roots": [str(REPO / "catalog")]}})  # the demo photos the catalogs name
    merge_tables(data, overrides)
    lines: list[str] = ["# benchmark config: repo config.toml plus overrides", ""]
    _toml_tables(data, "", lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    from ops.config import load_config

    load_config(path)  # fail here, not inside a flow, if the file does not validate
    return path


# ---------------------------------------------------------------------------------------------
# Catalogs

def demo_templates() -> list[dict[str, str]]:
    """The rows of catalog/demo.csv with absolute image paths: the photos every benchmark cycles over."""
    with DEMO_CSV.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["image"] = str((DEMO_CSV.parent / r["image"]).resolve())
    return rows


FIELDS = ("sku", "image", "title", "category", "scene_prompt", "negative_prompt", "seed", "variants")


def synthetic_rows(n: int, *, prompt_overrides: dict[int, str] | None = None) -> list[dict[str, str]]:
    """`n` rows with distinct SKUs cycling over the demo photos, one variant each.

    Each row keeps its template's title, category, prompt and seed; `prompt_overrides` maps a
    row index to a different scene_prompt (an edit that changes that row's cache key only).
    """
    templates = demo_templates()
    rows = []
    for i in range(n):
        t = templates[i % len(templates)]
        rows.append({
            "sku": f"BENCH-{i:06d}-{t['sku']}", "image": t["image"], "title": t["title"],
            "category": t["category"], "scene_prompt": t["scene_prompt"], "negative_prompt": "",
            "seed": t["seed"], "variants": "",
        })
        if prompt_overrides and i in prompt_overrides:
            rows[-1]["scene_prompt"] = prompt_overrides[i]
    return rows


def write_catalog(path: Path, rows: Sequence[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    return path


# ---------------------------------------------------------------------------------------------
# Prefect

def prefect_flow(workers: int | None = None):
    """The nightly flow, with the task runner sized like the `stage` CLI does it."""
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows import nightly

    flow = nightly.nightly_catalog_run
    if workers is not None:
        flow = flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=workers))
    return flow


def bare_run(bench, cfg_path: Path, catalog: Path, out: Path, workers: int) -> dict:
    """What the flow does, without Prefect: validate, stage every row, write the run report."""
    import secrets
    from concurrent.futures import ThreadPoolExecutor

    from ops.catalog import read_catalog
    from ops.config import load_config
    from ops.context import RunContext
    from ops.report import write_run_report
    from ops.runner import process_row

    cfg = load_config(cfg_path)
    cat = read_catalog(catalog, cfg.run.max_variants, cfg.local_roots())
    rows, run_id = cat.rows, "loop-" + secrets.token_hex(3)
    out_root = out.resolve()

    def batch(chunk):
        return [process_row(bench, r, RunContext(out_root, run_id)).to_dict() for r in chunk]

    if workers <= 1:
        results = batch(rows)
    else:
        chunks = [rows[i : i + cfg.run.batch_size] for i in range(0, len(rows), cfg.run.batch_size)]
        with ThreadPoolExecutor(workers) as pool:
            results = [r for part in pool.map(batch, chunks) for r in part]
    meta = {"run_id": run_id, "catalog": str(catalog), "config": str(cfg_path), "config_digest": cfg.digest(),
            "output_root": str(out_root), "started_at": "", "finished_at": ""}
    write_run_report(out_root / "runs" / run_id, out_root, meta, results, [e.to_dict() for e in cat.errors])
    return {"results": results}


def run_statuses(res: dict) -> dict[str, int]:
    """Rows by status of a flow result (its summary counts every row; `results` may hold only some)."""
    if "summary" in res:
        return dict(sorted(res["summary"]["by_status"].items()))
    return statuses(res["results"])


def all_results(res: dict) -> list[dict]:
    """Every row's result of a run: on a large run a flow returns only some rows (`results_complete`
    false, rows needing attention first); the run's summary.json holds them all."""
    if res.get("results_complete", True):
        return res["results"]
    return json.loads((Path(res["run_dir"]) / "summary.json").read_text(encoding="utf-8"))["results"]


def statuses(results: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        out[r["status"]] = out.get(r["status"], 0) + 1
    return dict(sorted(out.items()))


def stage_medians(results: list[dict]) -> dict[str, float]:
    per: dict[str, list[float]] = {}
    for r in results:
        for k, v in (r.get("timings_ms") or {}).items():
            per.setdefault(k, []).append(v)
    return {k: median(v) for k, v in per.items()}


def server_processes() -> list[Any]:
    """Child processes of this one (Prefect's ephemeral API server runs as one)."""
    import psutil

    return psutil.Process().children(recursive=True)


class CpuClock:
    """Wall time plus CPU seconds of this process and of its children (the ephemeral server)."""

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _read() -> tuple[float, float, dict[int, float]]:
        kids: dict[int, float] = {}
        for p in server_processes():
            try:
                t = p.cpu_times()
                kids[p.pid] = t.user + t.system
            except Exception:
                continue
        return time.perf_counter(), time.process_time(), kids

    def stop(self) -> dict[str, float]:
        wall1, cpu1, kids1 = self._read()
        wall0, cpu0, kids0 = self._start
        server = sum(v - kids0.get(pid, 0.0) for pid, v in kids1.items())
        return {"wall_s": wall1 - wall0, "cpu_s": cpu1 - cpu0, "server_cpu_s": server}


# ---------------------------------------------------------------------------------------------
# Reporting

def code_version() -> str:
    """The commit measured, and whether the pipeline's code or config differ from it."""
    import subprocess

    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "stages", "provenance", "ops",
                                "flows", "config.toml"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "code: unknown (no git)"
    return f"code: {head or 'unknown'}" + (" + uncommitted changes in the pipeline's code or config" if dirty else "")


def machine_line() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    busy = "" if load[0] < 0.75 else " (other jobs are running: expect noisy wall times)"
    return (f"machine: {platform.machine()} {os.cpu_count()} cpu, python {platform.python_version()}, "
            f"load avg {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}{busy}; {code_version()}")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], floatfmt: str = "{:.1f}") -> str:
    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and v != v):
            return "-"
        if isinstance(v, float):
            return floatfmt.format(v)
        return str(v)

    body = [[cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    out.append("  ".join("-" * w for w in widths))
    for r in body:
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(out)


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def percentile(xs: Sequence[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def verdict(value: float, limit: float) -> str:
    return "PASS" if value <= limit else "FAIL"


def resampled_photo(src: Path, megapixels: float, folder: Path) -> Path:
    """`src` resampled (Lanczos) to about `megapixels`, saved as JPEG quality 92 in `folder` (made
    once): a catalog-size copy of a small photo. Pixel count is what costs, and what the checks'
    pixel measures scale with; an upscaled photo is smoother than one shot at that size."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out = folder / (src.stem + ".jpg")
    if not out.exists():
        with Image.open(src) as im:
            rgb = im.convert("RGB")
        s = (megapixels * 1e6 / (rgb.width * rgb.height)) ** 0.5
        rgb.resize((round(rgb.width * s), round(rgb.height * s)), Image.Resampling.LANCZOS).save(out, quality=92)
    return out


def scaled_sources(rows: list[dict[str, str]], megapixels: float, folder: Path) -> list[tuple[int, int]]:
    """Point each row at its demo photo resampled to about `megapixels` (`resampled_photo`);
    returns each row's source size. Catalog photos are 1-12 MP: what a step costs follows the
    pixel count, the demo photos are about 0.2 MP."""
    from PIL import Image

    shapes = []
    for r in rows:
        out = resampled_photo(Path(r["image"]), megapixels, folder)
        with Image.open(out) as im:
            shapes.append(im.size)
        r["image"] = str(out)
    return shapes


def key_line(name: str, value: float, limit: float, fmt: str = "{:.3f}", unit: str = "") -> str:
    """A key figure line, `name=value target<=limit PASS|FAIL` (lower is better)."""
    return f"{name}={fmt.format(value)}{unit} target<={fmt.format(limit)}{unit} {verdict(value, limit)}"


def presets_line(cfg: Any) -> str:
    """Every active channel preset of a config with its canvas and formats, and the megapixels they add per SKU."""
    active = list(cfg.renditions.active)
    if not active:
        return "channel presets: off ([renditions] active = [])"
    parts, mp = [], 0.0
    for name in active:
        p = cfg.renditions.presets[name]
        mp += p.width * p.height / 1e6
        bg = f", background {p.background}" if getattr(p, "background", "") else ""
        parts.append(f"{name} {p.width}x{p.height} {'+'.join(p.formats)}{bg}")
    master = cfg.layout.width * cfg.layout.height / 1e6
    return (f"channel presets: {'; '.join(parts)} -- {mp:.2f} MP per SKU beside the {master:.3f} MP master "
            f"({cfg.layout.width}x{cfg.layout.height})")
