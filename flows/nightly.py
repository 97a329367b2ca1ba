"""Nightly catalog run: a Prefect flow over the plain-Python stages.

Products are processed in batches (one task per batch, not per SKU per stage) so that a
50,000-SKU catalog does not drown the orchestrator; tasks pass rows and paths, never pixels.
Incremental: a cheap pre-pass (stages.incremental) skips unchanged rows before any task is
submitted; at most a few batch tasks are in flight, and their results go to a file (stages.
results_log), from which the report is written, so memory stays flat as catalogs grow.
Every processed SKU is recorded in the output folder's ledger (stages.ledger).

Scale-out: `shard`/`shards` select a stable share of the catalog's SKUs, so N flow runs on N
workers split one catalog; they share the output folder, and per-SKU locks keep two runs off
the same SKU. The rerun flow (flows/rerun.py) uses the same engine (`run_rows`).

Reliability: the flow holds an exclusive lock on the output folder (a second run on the same
folder fails at once; shards and reruns hold it shared, see stages.runlock), removes temp files that a killed run left in the product folders it
touches, retries a row once only when it failed for a transient reason (a photo URL that timed
out or answered 5xx/429, an interrupted or would-block system call), and always returns and
writes as much of the run summary as it can, even when a batch crashes or the disk is full.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from flows import artifacts
from stages import PIPELINE_VERSION
from stages.atomic import remove_stale_temps
from stages.catalog import Catalog, CatalogRow, read_catalog
from stages.config import Config, load_config
from stages.incremental import prepass
from stages.ledger import Ledger
from stages.naming import sku_slug
from stages.product import RowResult, Workbench, process_row
from stages.report import ReportError, write_run_report
from stages.results_log import ResultLog
from stages.runlock import SkuLocks, hold, output_root

# Per worker process: backends are loaded once and reused by every batch task.
_BENCHES: dict[str, Workbench] = {}
_BENCH_LOCK = threading.Lock()
# Backends that failed to load, per (run id, config): the run's other batches fail the same
# way without loading again (a missing model is not transient); the next run tries afresh.
_BENCH_FAILURES: dict[tuple[str, str], str] = {}
# Set by the CLI to drive its progress bar; called with the number of products just finished.
progress_hook: Callable[[int], None] | None = None

# A row is retried (once, after a pause) only when its failure is transient: trying again
# later can succeed. Bad photos, signing or model errors, a full disk and bugs are not retried:
# they would fail the same way, and a rerun retries every failed row anyway (done rows are cached).
TRANSIENT_RETRIES = 1
RETRY_DELAY_S = 2.0
_TRANSIENT_URL = re.compile(
    r": (?:timed out after |server answered HTTP (?:408|429|500|502|503|504)\b"
    r"|could not fetch \(.*(?:reset|refused|timed out|temporar|closed connection|broken pipe))",
    re.IGNORECASE,
)
_TRANSIENT_OS = re.compile(
    r"^(?:internal error: )?(?:BlockingIOError|InterruptedError|TimeoutError|ConnectionResetError"
    r"|ConnectionAbortedError|BrokenPipeError)\b|\((?:EAGAIN|EWOULDBLOCK|EINTR|EBUSY|ETIMEDOUT)\)$"
)


def is_transient(image: str, error: str | None) -> bool:
    """Whether a row's failure message names a fault that may pass if the row is tried again."""
    if not error:
        return False
    if image.startswith(("http://", "https://")) and error.startswith("InputError: ") and _TRANSIENT_URL.search(error):
        return True
    return bool(_TRANSIENT_OS.search(error))


def _advance(n: int) -> None:
    if progress_hook:
        with contextlib.suppress(Exception):  # a display problem must not cost a product
            progress_hook(n)


_CONFIGS: dict[tuple[str | None, int, int], Config] = {}


def _config(path: str | None) -> Config:
    """load_config once per process per file version (every batch task needs it)."""
    try:
        st = os.stat(path) if path else None
    except OSError:
        return load_config(path)  # let it fail with its own message
    key = (str(Path(path).resolve()) if path else None, st.st_mtime_ns if st else 0, st.st_size if st else 0)
    if key not in _CONFIGS:
        _CONFIGS[key] = load_config(path)
    return _CONFIGS[key]


def shard_of(sku: str, shards: int) -> int:
    """The shard (0..shards-1) a SKU belongs to: stable across runs, machines and catalog order."""
    return int.from_bytes(hashlib.sha256(sku.encode("utf-8", "surrogateescape")).digest()[:8], "big") % shards


def _bench(cfg: Config, run_id: str = "") -> Workbench:
    key = f"{cfg.base_dir}:{cfg.digest()}"
    with _BENCH_LOCK:
        if key not in _BENCHES:
            failed = _BENCH_FAILURES.get((run_id, key))
            if failed is not None:
                raise _BenchUnavailable(failed)
            try:
                _BENCHES[key] = Workbench.build(cfg)
            except Exception as exc:
                for old in [k for k in _BENCH_FAILURES if k[0] != run_id]:
                    del _BENCH_FAILURES[old]
                _BENCH_FAILURES[(run_id, key)] = f"{type(exc).__name__}: {exc}"
                raise
        return _BENCHES[key]


class _BenchUnavailable(Exception):
    """The backends already failed to load in this run; the message is the original error."""


def validate_catalog(catalog: str, max_variants: int) -> Catalog:
    """Read and check the whole catalog, logging each bad row.

    Called in the flow itself, not as a task: a task's return value (every row of a 50,000-row
    catalog) would be kept in memory by the orchestrator for the rest of the run.
    """
    cat = read_catalog(catalog, max_variants=max_variants)
    logger = get_run_logger()
    logger.info("catalog %s: %d valid rows, %d invalid", catalog, len(cat.rows), len(cat.errors))
    for w in cat.warnings:
        logger.warning("catalog %s: %s", catalog, w)
    for e in cat.errors:
        logger.error("catalog row %d (SKU %r) skipped: %s", e.row, e.sku, e.reason)
    return cat


def _stage_row(bench: Workbench, row: CatalogRow, out_root: Path, run_id: str, force: bool,
               started_ts: float, logger: Any) -> dict[str, Any]:
    """One product, with stale temp files cleared first and one retry for a transient failure."""
    with SkuLocks(out_root).hold(row.sku) as mine:
        if not mine:
            return RowResult(row.row, row.sku, "failed", error=(
                "SKU is being processed by another run on this output folder; it is picked up next run")
            ).to_dict() | {"attempts": 0}
        return _stage_locked(bench, row, out_root, run_id, force, started_ts, logger)


def _stage_locked(bench: Workbench, row: CatalogRow, out_root: Path, run_id: str, force: bool,
                  started_ts: float, logger: Any) -> dict[str, Any]:
    folder = out_root / "products" / sku_slug(row.sku)
    stale = remove_stale_temps(folder, started_ts)
    if stale:
        logger.warning("row %d SKU %r: removed %d temp file(s) left by an interrupted run", row.row, row.sku,
                       len(stale))
    attempts = 0
    while True:
        attempts += 1
        try:
            result = process_row(bench, row, out_root, run_id, force=force).to_dict()
        except Exception as exc:  # process_row does not raise; if it ever does, only this row fails
            result = RowResult(row.row, row.sku, "failed", error=f"internal error: {type(exc).__name__}: {exc}").to_dict()
        if result["status"] != "failed" or attempts > TRANSIENT_RETRIES or not is_transient(row.image, result["error"]):
            break
        logger.warning("row %d SKU %r: transient failure, trying again in %g s: %s", row.row, row.sku,
                       RETRY_DELAY_S * attempts, result["error"])
        time.sleep(RETRY_DELAY_S * attempts)
    result["attempts"] = attempts
    return result


@task(name="stage-batch", cache_policy=NO_CACHE, task_run_name="stage-batch-{first_row}")
def stage_batch(rows: list[dict[str, Any]], config: str | None, out_root: str, run_id: str,
                force: bool, first_row: int, started_ts: float = 0.0,
                keys: dict[str, str] | None = None, note: str | None = None) -> list[dict[str, Any]]:
    """Stage a batch of products; a failing product is recorded and the batch goes on.

    `started_ts` (the run's start, a time.time() value): temp files older than it in a
    product's folder were left by an interrupted run and are removed before the product runs.
    Every processed product is appended to the output folder's ledger when the batch ends.
    """
    logger = get_run_logger()
    cfg = _config(config)
    catalog_rows = [CatalogRow(**r) for r in rows]
    try:
        bench = _bench(cfg, run_id)
    except Exception as exc:  # a backend that cannot load fails every product of the batch, with its reason
        error = str(exc) if isinstance(exc, _BenchUnavailable) else f"{type(exc).__name__}: {exc}"
        logger.error("backends failed to load: %s", error)
        results = [RowResult(r.row, r.sku, "failed", error=error).to_dict() for r in catalog_rows]
        for r in results:
            r["attempts"] = 1
        _record(out_root, run_id, results, keys, logger, note)
        _advance(len(results))
        return results
    out: list[dict[str, Any]] = []
    for row in catalog_rows:
        result = _stage_row(bench, row, Path(out_root), run_id, force, started_ts, logger)
        if result["status"] == "failed":
            logger.error("row %d SKU %r failed: %s", row.row, row.sku, result["error"])
        elif result["status"] == "rejected":
            logger.warning("row %d SKU %r rejected: %s", row.row, row.sku, "; ".join(result["reasons"]))
        else:
            logger.info("row %d SKU %r %s (%s)", row.row, row.sku, result["status"], result["verdict"])
        out.append(result)
        _advance(1)
    _record(out_root, run_id, out, keys, logger, note)
    return out


def _record(out_root: str, run_id: str, results: list[dict[str, Any]], keys: dict[str, str] | None,
            logger: Any, note: str | None = None) -> None:
    from prefect.runtime import flow_run

    try:
        Ledger(Path(out_root)).append(run_id, results, keys, flow_run_id=str(flow_run.id or "") or None,
                                          note=note)
    except Exception as exc:  # the products are written; a ledger problem must not fail them
        logger.error("could not record %d product(s) in the ledger: %s: %s", len(results), type(exc).__name__, exc)


@flow(name="nightly-catalog-run", task_runner=ThreadPoolTaskRunner(max_workers=2))
def nightly_catalog_run(catalog: str, config: str | None = "config.toml", out: str | None = None,
                        force: bool = False, shard: int = 0, shards: int = 1) -> dict[str, Any]:
    """Stage every valid row of a catalog CSV and write a run report.

    Args:
        catalog: Path of the catalog CSV.
        config: Path of config.toml (None: built-in defaults).
        out: Output folder; defaults to [run].output_dir of the config.
        force: Regenerate products whose inputs have not changed.
        shard: Which share of the catalog this run stages (0-based), when it is split over several runs.
        shards: How many runs the catalog is split over (1: this run stages all of it).
    """
    logger = get_run_logger()
    if shards < 1 or not 0 <= shard < shards:
        raise ValueError(f"shard = {shard}, shards = {shards}: need shards >= 1 and 0 <= shard < shards")
    cfg = _config(config)
    out_root = output_root(cfg, out)
    tag = f"shard-{shard}-of-{shards}" if shards > 1 else None
    with hold(out_root, shared=tag):  # one full run per output folder: a second one fails here, naming this one
        return _nightly(logger, catalog, config, cfg, out_root, force, shard, shards)


def _nightly(logger: Any, catalog: str, config: str | None, cfg: Config, out_root: Path, force: bool,
             shard: int, shards: int) -> dict[str, Any]:
    started = datetime.now(UTC)
    cat = validate_catalog(catalog, cfg.run.max_variants)
    rows = cat.rows
    errors = [e.to_dict() for e in cat.errors]
    if shards > 1:
        rows = [r for r in rows if shard_of(r.sku, shards) == shard]
        errors = [e for e in errors if shard == 0]  # invalid rows are reported once, by shard 0
        logger.info("shard %d of %d: %d of the catalog's rows", shard, shards, len(rows))
    extra = {"shard": shard, "shards": shards} if shards > 1 else {}
    return run_rows(logger, rows, errors, cat.path, config, cfg, out_root, force, started, extra,
                    exclusive=shards == 1)


def _sweep_after_crash(logger: Any, out_root: Path, started_ts: float, exclusive: bool) -> None:
    """Remove temp files a killed run left behind, walking the whole folder only after a crash.

    A run's result log (`.work/<run id>.jsonl`) is deleted when the run ends; one still there
    when a run holds the folder alone marks a run that was killed, whose writers may have left
    temp files in any product folder (unchanged products are skipped and never visited).
    Otherwise only the folders of products being rewritten are cleaned, by their batch task.
    """
    if not exclusive:  # other runs may be writing here now; the next full run cleans up
        return
    stale = remove_stale_temps(out_root / "runs", started_ts)
    work = out_root / ".work"
    leftovers = [p for p in work.glob("*.jsonl") if p.stat().st_mtime < started_ts] if work.is_dir() else []
    if leftovers:
        stale += remove_stale_temps(out_root / "products", started_ts)
        for p in leftovers:
            with contextlib.suppress(OSError):
                p.unlink()
    if stale:
        logger.warning("removed %d temp file(s) left by an interrupted run", len(stale))


def run_rows(logger: Any, rows: list[CatalogRow], errors: list[dict[str, Any]], catalog_path: str,
             config: str | None, cfg: Config, out_root: Path, force: bool, started: datetime,
             extra_meta: dict[str, Any] | None = None, note: str | None = None,
             exclusive: bool = False) -> dict[str, Any]:
    """Stage `rows` into `out_root` (lock already held): pre-pass, batch tasks, ledger, report, artifacts.

    `exclusive`: this run holds the folder alone, so leftovers of other runs are a crash's.
    """
    started_ts = started.timestamp()
    run_id = started.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
    run_dir = out_root / "runs" / run_id
    _sweep_after_crash(logger, out_root, started_ts, exclusive)
    if errors:
        _advance(len(errors))
    t0 = time.perf_counter()
    ledger = Ledger(out_root)
    log = ResultLog(out_root / ".work" / f"{run_id}.jsonl")
    try:
        pre = prepass(rows, cfg, out_root, ledger, force, slug=lambda s: sku_slug(s), sink=log.append)
        prepass_s = time.perf_counter() - t0
        _advance(pre.skipped)
        logger.info("run %s: %d rows, %d unchanged (skipped), %d to stage in batches of %d; %d invalid",
                    run_id, len(rows), pre.skipped, len(pre.todo), cfg.run.batch_size, len(errors))
        progress = artifacts.Progress(len(rows), run_id)
        progress.update(log.count)
        _stage_all(logger, pre.todo, pre.keys, config, cfg, out_root, run_id, force, started_ts, log, progress, note)
        progress.update(log.count, final=True)
        meta = {
            "run_id": run_id, "catalog": catalog_path, "config": str(Path(config).resolve()) if config else None,
            "config_digest": cfg.digest(), "pipeline_version": PIPELINE_VERSION, "output_root": str(out_root),
            "started_at": started.isoformat(timespec="seconds"),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"), **(extra_meta or {}),
        }
        summary = log.summary(errors)
        report_errors: list[str] = []
        try:
            paths = write_run_report(run_dir, out_root, meta, log.rows, errors, summary=summary)
        except ReportError as exc:  # e.g. disk full: the summary is still returned, and the CLI prints it
            logger.error("%s", exc)
            paths, report_errors = exc.written, exc.failures
        report = paths.get("html")
        timings = {"wall_s": round(time.perf_counter() - t0, 3), "prepass_s": round(prepass_s, 3),
                   "processed_rows": log.timed_rows,
                   "mean_ms": {k: round(v / log.timed_rows, 2) for k, v in sorted(log.timing_ms.items())}
                   if log.timed_rows else {}}
        try:
            artifacts.publish(run_id, summary, log.attention, errors, report, out_root, timings)
        except Exception as exc:  # artifacts are a convenience; the run's own report is the record
            logger.warning("could not create Prefect artifacts: %s: %s", type(exc).__name__, exc)
        return {**meta, "summary": summary, "run_dir": str(run_dir), "report": str(report) if report else None,
                "report_errors": report_errors, "results": log.returned(), "results_complete": log.complete,
                "catalog_errors": errors, "timings": timings}
    finally:
        log.close()


def _stage_all(logger: Any, rows: list[CatalogRow], keys: dict[str, str], config: str | None, cfg: Config,
               out_root: Path, run_id: str, force: bool, started_ts: float, log: ResultLog,
               progress: artifacts.Progress, note: str | None = None) -> None:
    """Submit batch tasks with a bounded number in flight; each finished batch goes to the log."""
    size = cfg.run.batch_size
    batches = [rows[i : i + size] for i in range(0, len(rows), size)]
    in_flight: list[tuple[list[CatalogRow], Any]] = []
    limit = 2 * cfg.run.workers

    def collect(batch: list[CatalogRow], fut: Any) -> None:
        try:
            log.append(fut.result())
        except Exception as exc:  # the batch task itself crashed: its rows fail, the run and its report go on
            logger.error("batch from row %d crashed: %s: %s", batch[0].row, type(exc).__name__, exc)
            log.append(
                RowResult(r.row, r.sku, "failed", error=f"batch task failed: {type(exc).__name__}: {exc}")
                .to_dict() | {"attempts": 1}
                for r in batch
            )
        progress.update(log.count)

    for batch in batches:
        if len(in_flight) >= limit:
            collect(*in_flight.pop(0))
        batch_keys = {r.sku: keys[r.sku] for r in batch if r.sku in keys}
        fut = stage_batch.submit([r.to_dict() for r in batch], config, str(out_root), run_id, force, batch[0].row,
                                 started_ts, batch_keys, note)
        in_flight.append((batch, fut))
    while in_flight:
        collect(*in_flight.pop(0))
