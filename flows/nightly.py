"""Nightly catalog run: a Prefect flow over `ops.runner.process_row`.

Products go to batch tasks (one task per batch, not per SKU per stage), tasks pass rows and
paths, never pixels; the pre-pass (`ops.prepass`) skips unchanged rows before any task is
submitted, and results stream to a file (`ops.results_log`) from which the report is written.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import itertools
import json
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import State

from flows import artifacts
from flows.stopping import PUBLISH_GRACE_S, StoppableTaskRunner, ended, note_cancellation, stopping
from ops.atomic import remove_stale_temps
from ops.catalog import CatalogRow, CatalogScan, RowError, scan_catalog
from ops.config import Config, StateOptions, load_config
from ops.context import RunContext
from ops.heap import release_free_pages
from ops.objectstore import store_for
from ops.paths import PRODUCTS, ProductPaths
from ops.prepass import CHUNK_ROWS, Screen
from ops.report import ReportError, write_run_report
from ops.results_log import LogSink, ResultLog
from ops.runner import RowResult, process_row
from ops.state import open_state, state_for
from ops.store_products import RemoteOutputs, upload_tree
from ops.stop import STOP
from ops.workbench import BenchUnavailable, Workbench, shared_workbench
from stages.pipeline import PIPELINE_VERSION

# A row whose failure may pass (ops.errors.is_transient) is tried again once, after a pause. Bad
# photos, signing or model errors, a full disk and bugs are not: they would fail the same way,
# and a rerun retries every failed row anyway (done rows are cached).
TRANSIENT_RETRIES = 1
RETRY_DELAY_S = 2.0

_listeners: list[Callable[[int], None]] = []


@contextlib.contextmanager
def progress_listener(callback: Callable[[int], None]) -> Iterator[None]:
    """Call `callback(n)` each time n more rows are done, while the block runs (the CLI's progress bar)."""
    _listeners.append(callback)
    try:
        yield
    finally:
        _listeners.remove(callback)


def _advance(n: int) -> None:
    for listener in list(_listeners):
        with contextlib.suppress(Exception):  # a display problem must not cost a product
            listener(n)


_CONFIGS: dict[tuple[str | None, int, int], Config] = {}


def config_for(path: str | None) -> Config:
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


def validate_catalog(catalog: str, cfg: Config, sheet: str | None = None,
                     keep: Callable[[CatalogRow], bool] | None = None) -> CatalogScan:
    """Check the whole catalog, logging each bad row; its valid rows (those `keep` accepts) are
    read again, a chunk at a time, as the run goes (`CatalogScan.rows`).

    Called in the flow itself, not as a task: a task's return value would be kept in memory by
    the orchestrator for the rest of the run.
    """
    cat = scan_catalog(catalog, cfg.run.max_variants, cfg.local_roots(), sheet, keep)
    logger = get_run_logger()
    logger.info("catalog %s: %d valid rows, %d invalid", catalog, cat.valid, len(cat.errors))
    for w in cat.warnings:
        logger.warning("catalog %s: %s", catalog, w)
    for e in cat.errors:
        logger.error("catalog row %d (SKU %r) skipped: %s", e.row, e.sku, e.reason)
    return cat


def stage_row(bench: Workbench, row: CatalogRow, ctx: RunContext, logger: Any) -> dict[str, Any]:
    """One product, with its SKU claimed (`ops.state`; a claim a dead worker left is waited out),
    stale temp files cleared first and one retry for a transient failure."""
    with state_for(ctx).claims.hold_waiting(row.sku, lambda: STOP.requested) as mine:
        if not mine:
            return RowResult(row.row, row.sku, "failed", error=(
                "SKU is being processed by another run on this output location; it is picked up next run")
            ).to_dict() | {"attempts": 0}
        stale = remove_stale_temps(ProductPaths.of(ctx.out_root, row.sku).folder, ctx.started_ts)
        if stale:
            logger.warning("row %d SKU %r: removed %d temp file(s) left by an interrupted run", row.row, row.sku,
                           len(stale))
        attempts = 0
        while True:
            attempts += 1
            result = process_row(bench, row, ctx)
            if (result.status != "failed" or not result.transient or attempts > TRANSIENT_RETRIES
                    or STOP.requested):
                break
            logger.warning("row %d SKU %r: transient failure, trying again in %g s: %s", row.row, row.sku,
                           RETRY_DELAY_S * attempts, result.error)
            time.sleep(RETRY_DELAY_S * attempts)
        return result.to_dict() | {"attempts": attempts}


@task(name="stage-batch", cache_policy=NO_CACHE, task_run_name="stage-batch-{first_row}")
def stage_batch(rows: list[dict[str, Any]], ctx: RunContext, first_row: int,
                keys: dict[str, str] | None = None, sink: LogSink | None = None) -> list[dict[str, Any]] | None:
    """Stage a batch of products; a failing product is recorded and the batch goes on.

    Each product is appended to the output folder's ledger as soon as it is done. After a stop
    request (`ops.stop`) no further product of the batch is started.

    With `sink` (the run's result log), each product's result goes to it as soon as it is done
    and the task returns None: Prefect links every object a task returns (the list and each
    row's dict) to the task's state in the flow run's context until the run ends, so returned
    results grew the flow process with every batch. Without, the results are returned.
    """
    logger = get_run_logger()
    catalog_rows = [CatalogRow(**r) for r in rows]
    try:
        bench = shared_workbench(config_for(ctx.config), ctx.run_id)
    except Exception as exc:  # a backend that cannot load fails every product of the batch, with its reason
        error = str(exc) if isinstance(exc, BenchUnavailable) else f"{type(exc).__name__}: {exc}"
        logger.error("backends failed to load: %s", error)
        results = [RowResult(r.row, r.sku, "failed", error=error).to_dict() | {"attempts": 1} for r in catalog_rows]
        _record(ctx, results, keys, logger)
        _advance(len(results))
        if sink is not None:
            sink.append(results)
            return None
        return results
    out: list[dict[str, Any]] = []
    for row in catalog_rows:
        if STOP.requested:
            break
        with STOP.working(row.sku):
            result = stage_row(bench, row, ctx, logger)
        if result["status"] == "failed":
            logger.error("row %d SKU %r failed: %s", row.row, row.sku, result["error"])
        elif result["status"] == "rejected":
            logger.warning("row %d SKU %r rejected: %s", row.row, row.sku, "; ".join(result["reasons"]))
        else:
            logger.info("row %d SKU %r %s (%s)", row.row, row.sku, result["status"], result["verdict"])
        _record(ctx, [result], keys, logger)
        if sink is not None:
            sink.append([result])
        else:
            out.append(result)
        _advance(1)
    return None if sink is not None else out


def flow_run_id() -> str | None:
    """The Prefect flow run this code runs in (None outside one)."""
    return str(flow_run.id or "") or None


def _record(ctx: RunContext, results: list[dict[str, Any]], keys: dict[str, str] | None, logger: Any) -> None:
    try:
        state_for(ctx).ledger.append(ctx.run_id, results, keys, flow_run_id=flow_run_id(), note=ctx.note)
    except Exception as exc:  # the products are written; a ledger problem must not fail them
        logger.error("could not record %d product(s) in the ledger: %s: %s", len(results), type(exc).__name__, exc)


@flow(name="nightly-catalog-run", task_runner=StoppableTaskRunner(max_workers=2))
def nightly_catalog_run(catalog: str, config: str | None = "config.toml", out: str | None = None,
                        force: bool = False, shard: int = 0, shards: int = 1,
                        sheet: str | None = None) -> dict[str, Any] | State:
    """Stage every valid row of a catalog and write a run report.

    A stopped run (SIGTERM, Ctrl-C, a cancellation) ends as Cancelled, with the run's result as
    the state's data; its report lists the SKUs not done.

    Args:
        catalog: Path or URL (s3://, gs://, file://, ...) of the catalog: CSV, XLSX or Parquet.
        config: Path of config.toml (None: built-in defaults).
        out: Output folder; defaults to [run].output_dir of the config.
        force: Regenerate products whose inputs have not changed.
        shard: Which share of the catalog this run stages (0-based), when it is split over several runs.
        shards: How many runs the catalog is split over (1: this run stages all of it).
        sheet: Worksheet of an XLSX catalog (default: the first).
    """
    logger = get_run_logger()
    if shards < 1 or not 0 <= shard < shards:
        raise ValueError(f"shard = {shard}, shards = {shards}: need shards >= 1 and 0 <= shard < shards")
    cfg = config_for(config)
    where = cfg.output_location(out)
    out_root = where.root
    tag = f"shard-{shard}-of-{shards}" if shards > 1 else None
    # one full run per output location: a second one fails at `run_lock`, naming this one
    with stopping(flow_run_id(), cfg.run.stop_timeout_s), open_state(where.name, cfg.state).run_lock(shared=tag):
        started = datetime.now(UTC)
        keep = (lambda r: shard_of(r.sku, shards) == shard) if shards > 1 else None
        cat = validate_catalog(catalog, cfg, sheet, keep)
        errors = [e.to_dict() for e in cat.errors] if shard == 0 else []  # invalid rows are reported once, by shard 0
        if shards > 1:
            logger.info("shard %d of %d: %d of the catalog's rows", shard, shards, cat.valid)
        ctx = new_context(out_root, config, started, force, state=cfg.state, output_url=where.url)
        extra = {"shard": shard, "shards": shards} if shards > 1 else {}
        late = cat.late if shard == 0 else []
        return ended(run_rows(ctx, cfg, cat.rows(), cat.valid, errors, cat.path, extra, exclusive=shards == 1,
                              late_errors=late))


def new_context(out_root: Path, config: str | None, started: datetime, force: bool,
                note: str | None = None, state: StateOptions = StateOptions(),
                output_url: str | None = None) -> RunContext:
    run_id = started.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
    return RunContext(out_root, run_id, force, started.timestamp(), note,
                      str(Path(config).resolve()) if config else None, output_url=output_url, state=state)


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
        stale += remove_stale_temps(out_root / PRODUCTS, started_ts)
        for p in leftovers:
            with contextlib.suppress(OSError):
                p.unlink()
    if stale:
        logger.warning("removed %d temp file(s) left by an interrupted run", len(stale))


def run_rows(ctx: RunContext, cfg: Config, rows: Iterable[CatalogRow], total: int, errors: list[dict[str, Any]],
             catalog_path: str, extra_meta: dict[str, Any] | None = None, exclusive: bool = False,
             late_errors: list[RowError] | None = None) -> dict[str, Any]:
    """Stage `rows` (`total` of them) into `ctx.out_root` (lock already held): pre-pass, batch tasks,
    ledger, report, artifacts.

    `rows` is consumed as the run goes (`_Feed`: a chunk is read, pre-passed and cut into batches
    when the batch tasks need more work), so a catalog streamed from its file is never held
    whole; results go to the result log, the report is written from it. `late_errors` is filled
    while `rows` is read (rows that were valid when the catalog was checked but are not now):
    they are reported with `errors`. `exclusive`: this run holds the folder alone, so leftovers of
    other runs are a crash's. The result's `state` is `completed`, or `stopped` after a stop
    request (`ops.stop`).
    """
    logger = get_run_logger()
    _sweep_after_crash(logger, ctx.out_root, ctx.started_ts, exclusive)
    state = state_for(ctx)
    ledger = state.ledger
    ledger.start_run(ctx.run_id, flow_run_id(), ctx.note)
    if errors:
        _advance(len(errors))
    t0 = time.perf_counter()
    log = ResultLog(ctx.out_root / ".work" / f"{ctx.run_id}.jsonl", cfg.cost.currency)
    try:
        remote = RemoteOutputs(store_for(cfg.storage, ctx.output_url)) if ctx.output_url and not ctx.force else None
        feed = _Feed(rows, Screen(cfg, ctx.out_root, state, ctx.force, log.append, remote), cfg.run.batch_size)
        progress = artifacts.Progress(total, ctx.run_id)
        progress.update(log.count)
        abandoned, unfinished = _stage_all(ctx, cfg, feed, log, progress, logger)
        ending = (_account_stopped(ctx, itertools.chain(unfinished, feed.rest()), log, abandoned)
                  if STOP.requested else {})
        ending = ending if ending.get("stop", {}).get("not_done") else {"state": "completed"}
        for e in late_errors or []:
            logger.error("catalog row %d (SKU %r) skipped: %s", e.row, e.sku, e.reason)
        if late_errors:
            errors = errors + [e.to_dict() for e in late_errors]
            _advance(len(late_errors))
        logger.info("run %s: %d rows, %d unchanged (skipped), %d staged in batches of %d; %d invalid",
                    ctx.run_id, total, feed.screen.skipped, feed.handed, cfg.run.batch_size, len(errors))
        progress.update(log.count, final=True)
        timings = {"wall_s": round(time.perf_counter() - t0, 3), "prepass_s": round(feed.prepass_s, 3)}
        result = _finish(ctx, cfg, log, errors, catalog_path, {**(extra_meta or {}), **ending}, timings, logger)
        stop = ending.get("stop") or {}
        cost = result["summary"]["cost"]
        ledger.end_run(ctx.run_id, ending["state"], stop.get("reason"), len(stop.get("not_done") or []),
                       cost["total"], cost["currency"])
        return result
    finally:
        log.close()


class _Feed:
    """A run's rows as batches to stage, read a chunk (`ops.prepass.CHUNK_ROWS`) at a time when the
    batch tasks need more work: each chunk is pre-passed (unchanged rows go to the result log) and
    its to-do rows cut into batches. Between chunks the run holds at most a chunk's to-do rows and
    their cache keys, whatever the catalog's size."""

    def __init__(self, rows: Iterable[CatalogRow], screen: Screen, size: int) -> None:
        self.rows, self.screen, self.size = iter(rows), screen, size
        self.todo: deque[CatalogRow] = deque()
        self.keys: dict[str, str] = {}
        self.read = self.handed = 0  # rows read from the catalog; rows handed out in batches
        self.prepass_s = 0.0
        self.exhausted = False

    def next_batch(self) -> tuple[list[CatalogRow], dict[str, str]] | None:
        """The next batch and its rows' cache keys, or None when every row has been handed out."""
        while len(self.todo) < self.size and not self.exhausted and not STOP.requested:
            release_free_pages()  # what the last chunk (or the catalog's check) freed
            chunk = list(itertools.islice(self.rows, CHUNK_ROWS))
            if not chunk:
                self.exhausted = True
                break
            self.read += len(chunk)
            t0, skipped = time.perf_counter(), self.screen.skipped
            todo, keys = self.screen.check(chunk)
            self.prepass_s += time.perf_counter() - t0
            _advance(self.screen.skipped - skipped)
            self.todo.extend(todo)
            self.keys.update(keys)
        if not self.todo:
            return None
        batch = [self.todo.popleft() for _ in range(min(self.size, len(self.todo)))]
        self.handed += len(batch)
        return batch, {r.sku: self.keys.pop(r.sku) for r in batch if r.sku in self.keys}

    def rest(self) -> Iterator[CatalogRow]:
        """The rows not handed out (after a stop): the to-do rows of the last chunk, then those not read yet."""
        while self.todo:
            yield self.todo.popleft()
        yield from self.rows


def _account_stopped(ctx: RunContext, rows: Iterable[CatalogRow], log: ResultLog,
                     abandoned: list[str]) -> dict[str, Any]:
    """After a stop, give every row of `rows` (the run's rows not known done) without a result one,
    and say what the stop left undone.

    A row whose batch was abandoned may still have been finished before the deadline: the ledger,
    which has each product as soon as it is done, says so. Every other row is `stopped`: not
    started, or abandoned while in progress (it wrote nothing); a rerun stages exactly those.
    """
    info = STOP.request_info
    assert info is not None
    seen = log.rows_seen()
    done: dict[str, dict[str, Any]] | None = None  # this run's ledger events, read at the first row missing
    in_progress = set(abandoned)

    def result(r: CatalogRow) -> dict[str, Any]:
        nonlocal done
        if done is None:
            done = {e["sku"]: e for e in state_for(ctx).ledger.events([ctx.run_id])}
        if (e := done.get(r.sku)) is not None:
            return {"row": r.row, "sku": r.sku, "status": e["status"], "verdict": e["verdict"],
                    "reasons": json.loads(e["reasons"] or "[]"), "record": e["record"], "output": e["output"],
                    "error": e["error"], "timings_ms": json.loads(e["timings_ms"] or "{}"), "attempts": None,
                    "cost": {"currency": e["currency"], "total": e["cost"], "stages": {}}
                    if e["cost"] is not None else None}
        why = "abandoned in progress" if r.sku in in_progress else "not started"
        return RowResult(r.row, r.sku, "stopped", error=f"{why}: the run stopped ({info.reason})").to_dict() | {
            "attempts": 0}

    missing = (result(r) for r in rows if r.row not in seen)
    while chunk := list(itertools.islice(missing, CHUNK_ROWS)):
        log.append(chunk)
    not_done = [r["sku"] for r in log.rows() if r["status"] == "stopped"]
    return {"state": "stopped", "stop": {**info.to_dict(), "not_done": not_done,
                                         "abandoned": sorted(in_progress & set(not_done))}}


def _finish(ctx: RunContext, cfg: Config, log: ResultLog, errors: list[dict[str, Any]], catalog_path: str,
            extra_meta: dict[str, Any] | None, timings: dict[str, Any], logger: Any) -> dict[str, Any]:
    """The run report and the artifacts; the flow's return value."""
    run_dir = ctx.out_root / "runs" / ctx.run_id
    meta = {
        "run_id": ctx.run_id, "catalog": catalog_path, "config": ctx.config, "config_digest": cfg.digest(),
        "pipeline_version": PIPELINE_VERSION, "output_root": str(ctx.out_root), "output_url": ctx.output_url,
        "started_at": datetime.fromtimestamp(ctx.started_ts, UTC).isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"), **(extra_meta or {}),
    }
    summary = log.summary(errors)
    report_errors: list[str] = []
    try:
        paths = write_run_report(run_dir, ctx.out_root, meta, log.rows, errors, summary=summary)
    except ReportError as exc:  # e.g. disk full: the summary is still returned, and the CLI prints it
        logger.error("%s", exc)
        paths, report_errors = exc.written, exc.failures
    report_url = None
    if ctx.output_url:  # the report goes where the products are
        try:
            upload_tree(store_for(cfg.storage, ctx.output_url), run_dir, f"runs/{ctx.run_id}")
            report_url = f"{ctx.output_url}/runs/{ctx.run_id}/report.html" if paths.get("html") else None
        except Exception as exc:
            logger.error("could not upload the run report to %s: %s: %s", ctx.output_url, type(exc).__name__, exc)
            report_errors.append(f"upload to {ctx.output_url}/runs/{ctx.run_id}: {type(exc).__name__}: {exc}")
    report = paths.get("html")
    timings = {**timings, "processed_rows": log.timed_rows,
               "mean_ms": {k: round(v / log.timed_rows, 2) for k, v in sorted(log.timing_ms.items())}
               if log.timed_rows else {}}
    try:
        artifacts.publish(ctx.run_id, summary, log.attention, errors, report, ctx.out_root, timings,
                          cfg.previews.base_url, cfg.previews.presign_s, output_url=ctx.output_url,
                          storage=cfg.storage)
    except Exception as exc:  # artifacts are a convenience; the run's own report is the record
        logger.warning("could not create Prefect artifacts: %s: %s", type(exc).__name__, exc)
    return {**meta, "summary": summary, "run_dir": str(run_dir), "report": str(report) if report else None,
            "report_url": report_url,
            "report_errors": report_errors, "results": log.returned(), "results_complete": log.complete,
            "catalog_errors": errors, "timings": timings}


def _stage_all(ctx: RunContext, cfg: Config, feed: _Feed, log: ResultLog, progress: artifacts.Progress,
               logger: Any) -> tuple[list[str], list[CatalogRow]]:
    """Submit batch tasks with a bounded number in flight, taking batches from `feed` as they are
    needed; each finished batch goes to the log and its future is dropped.

    After a stop request no batch is submitted and running ones end after their current product;
    products still in progress at the request's deadline are abandoned. Returns their SKUs and
    the rows of the batches that ended or were abandoned after the request (a batch ends early
    then: `_account_stopped` finds which of its rows have no result); both empty without a stop.
    """
    in_flight: list[tuple[list[CatalogRow], Any]] = []
    after_stop: list[CatalogRow] = []
    limit, announced = 2 * cfg.run.workers, False

    sink = LogSink(log)  # the batch tasks append each product's result to the log as it is done

    def collect(batch: list[CatalogRow], fut: Any) -> None:
        try:
            fut.result()
        except Exception as exc:  # the batch task itself crashed: its rows without a result fail, the run goes on
            logger.error("batch from row %d crashed: %s: %s", batch[0].row, type(exc).__name__, exc)
            seen = log.rows_seen()
            log.append(
                RowResult(r.row, r.sku, "failed", error=f"batch task failed: {type(exc).__name__}: {exc}")
                .to_dict() | {"attempts": 1}
                for r in batch if r.row not in seen
            )
        if STOP.requested:
            after_stop.extend(batch)
        progress.update(log.count)

    while True:
        while len(in_flight) < limit and not STOP.requested and (next_batch := feed.next_batch()) is not None:
            batch, batch_keys = next_batch
            in_flight.append((batch, stage_batch.submit([r.to_dict() for r in batch], ctx, batch[0].row, batch_keys,
                                                        sink)))
        if STOP.requested and not announced:
            announced = True
            note_cancellation(flow_run_id())
            logger.warning("stop requested (%s): no new products; %d in progress get up to %.0f s to finish",
                           STOP.request_info.reason, len(STOP.in_progress()), STOP.request_info.bound_s)
        if not in_flight:
            break
        if STOP.remaining_s() <= 0:
            abandoned = STOP.close(PUBLISH_GRACE_S)
            sink.close()  # a product an abandoned batch finishes later is the ledger's, not this report's
            logger.warning("stop: abandoned %d product(s) still in progress: %s", len(abandoned), ", ".join(abandoned))
            return abandoned, after_stop + [r for batch, _ in in_flight for r in batch]
        finished, _ = concurrent.futures.wait([f.wrapped_future for _, f in in_flight],
                                              timeout=min(1.0, STOP.remaining_s()),
                                              return_when=concurrent.futures.FIRST_COMPLETED)
        for item in [x for x in in_flight if x[1].wrapped_future in finished]:
            in_flight.remove(item)
            collect(*item)
    return [], after_stop
