"""Nightly catalog run: a Prefect flow over the plain-Python stages.

Products are processed in batches (one task per batch, not per SKU per stage) so that a
50,000-SKU catalog does not drown the orchestrator; tasks pass rows and paths, never pixels.

Reliability: the flow holds an exclusive lock on the output folder (a second run on the same
folder fails at once), removes temp files that a killed run left in the product folders it
touches, retries a row once only when it failed for a transient reason (a photo URL that timed
out or answered 5xx/429, an interrupted or would-block system call), and always returns and
writes as much of the run summary as it can, even when a batch crashes or the disk is full.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from stages import PIPELINE_VERSION
from stages.atomic import remove_stale_temps
from stages.catalog import CatalogRow, read_catalog
from stages.config import Config, load_config
from stages.naming import sku_slug
from stages.product import RowResult, Workbench, process_row
from stages.report import ReportError, printable, summarize, write_run_report
from stages.runlock import hold, output_root

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


@task(name="validate-catalog", cache_policy=NO_CACHE)
def validate_catalog(catalog: str, max_variants: int) -> dict[str, Any]:
    cat = read_catalog(catalog, max_variants=max_variants)
    logger = get_run_logger()
    for w in cat.warnings:
        logger.warning("catalog %s: %s", catalog, w)
    for e in cat.errors:
        logger.error("catalog row %d (SKU %r) skipped: %s", e.row, e.sku, e.reason)
    return {
        "path": cat.path, "rows": [r.to_dict() for r in cat.rows], "errors": [e.to_dict() for e in cat.errors],
    }


def _stage_row(bench: Workbench, row: CatalogRow, out_root: Path, run_id: str, force: bool,
               started_ts: float, logger: Any) -> dict[str, Any]:
    """One product, with stale temp files cleared first and one retry for a transient failure."""
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
                force: bool, first_row: int, started_ts: float = 0.0) -> list[dict[str, Any]]:
    """Stage a batch of products; a failing product is recorded and the batch goes on.

    `started_ts` (the run's start, a time.time() value): temp files older than it in a
    product's folder were left by an interrupted run and are removed before the product runs.
    """
    logger = get_run_logger()
    cfg = load_config(config)
    catalog_rows = [CatalogRow(**r) for r in rows]
    try:
        bench = _bench(cfg, run_id)
    except Exception as exc:  # a backend that cannot load fails every product of the batch, with its reason
        error = str(exc) if isinstance(exc, _BenchUnavailable) else f"{type(exc).__name__}: {exc}"
        logger.error("backends failed to load: %s", error)
        results = [RowResult(r.row, r.sku, "failed", error=error).to_dict() for r in catalog_rows]
        for r in results:
            r["attempts"] = 1
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
    return out


@flow(name="nightly-catalog-run", task_runner=ThreadPoolTaskRunner(max_workers=2))
def nightly_catalog_run(catalog: str, config: str | None = "config.toml", out: str | None = None,
                        force: bool = False) -> dict[str, Any]:
    """Stage every valid row of a catalog CSV and write a run report.

    Args:
        catalog: Path of the catalog CSV.
        config: Path of config.toml (None: built-in defaults).
        out: Output folder; defaults to [run].output_dir of the config.
        force: Regenerate products whose inputs have not changed.
    """
    logger = get_run_logger()
    cfg = load_config(config)
    out_root = output_root(cfg, out)
    with hold(out_root):  # one run per output folder: a second one fails here, naming this one
        return _run(logger, catalog, config, cfg, out_root, force)


def _run(logger: Any, catalog: str, config: str | None, cfg: Config, out_root: Path, force: bool) -> dict[str, Any]:
    started = datetime.now(UTC)
    started_ts = time.time()
    run_id = started.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
    run_dir = out_root / "runs" / run_id
    stale = remove_stale_temps(out_root / "runs", started_ts)
    if stale:
        logger.warning("removed %d temp file(s) left in %s by an interrupted run", len(stale), out_root / "runs")
    cat = validate_catalog(catalog, cfg.run.max_variants)
    rows = cat["rows"]
    logger.info("run %s: %d valid rows, %d invalid, batch size %d", run_id, len(rows), len(cat["errors"]),
                cfg.run.batch_size)
    if cat["errors"]:
        _advance(len(cat["errors"]))
    batches = [rows[i : i + cfg.run.batch_size] for i in range(0, len(rows), cfg.run.batch_size)]
    futures = [
        stage_batch.submit(batch, config, str(out_root), run_id, force, batch[0]["row"], started_ts)
        for batch in batches
    ]
    results: list[dict[str, Any]] = []
    for batch, fut in zip(batches, futures, strict=True):
        try:
            results.extend(fut.result())
        except Exception as exc:  # the batch task itself crashed: its rows fail, the run and its report go on
            logger.error("batch from row %d crashed: %s: %s", batch[0]["row"], type(exc).__name__, exc)
            results.extend(
                RowResult(r["row"], r["sku"], "failed", error=f"batch task failed: {type(exc).__name__}: {exc}")
                .to_dict() | {"attempts": 1}
                for r in batch
            )
    meta = {
        "run_id": run_id, "catalog": cat["path"], "config": str(Path(config).resolve()) if config else None,
        "config_digest": cfg.digest(), "pipeline_version": PIPELINE_VERSION, "output_root": str(out_root),
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    report_errors: list[str] = []
    try:
        paths = write_run_report(run_dir, out_root, meta, results, cat["errors"])
    except ReportError as exc:  # e.g. disk full: the summary is still returned, and the CLI prints it
        logger.error("%s", exc)
        paths, report_errors = exc.written, exc.failures
    summary = summarize(results, cat["errors"])
    report = paths.get("html")
    try:
        _artifacts(run_id, summary, results, cat["errors"], report)
    except Exception as exc:  # artifacts are a convenience; the run's own report is the record
        logger.warning("could not create Prefect artifacts: %s: %s", type(exc).__name__, exc)
    return {**meta, "summary": summary, "run_dir": str(run_dir), "report": str(report) if report else None,
            "report_errors": report_errors, "results": results, "catalog_errors": cat["errors"]}


def _artifacts(run_id: str, summary: dict[str, Any], results: list[dict[str, Any]],
               errors: list[dict[str, Any]], report: Path | None) -> None:
    table = [{"outcome": k, "count": v} for k, v in sorted({**summary["by_status"], **{
        f"verdict:{k}": v for k, v in summary["by_verdict"].items()}}.items())]
    table.append({"outcome": "invalid rows", "count": summary["invalid_rows"]})
    create_table_artifact(table, key="staging-run-counts", description=f"Run {run_id}: products by outcome")
    bad = [f"| {e['row']} | {_md(e['sku'])} | invalid | {_md(e['reason'])} |" for e in errors]
    bad += [
        f"| {r['row']} | {_md(r['sku'])} | {r['status']} | {_md(r.get('error') or '; '.join(r.get('reasons') or []))} |"
        for r in results if r["status"] in ("failed", "rejected") or r.get("verdict") == "review"
    ]
    body = f"# Run {run_id}\n\nReport: `{report or 'not written'}`\n\n"
    body += "| row | SKU | status | reason |\n|---|---|---|---|\n" + "\n".join(bad) if bad else "All products passed."
    create_markdown_artifact(body, key="staging-run-report", description=f"Run {run_id}")


def _md(text: str) -> str:
    """Catalog text inside a Markdown table cell: escaped, so it cannot add markup, links or cells."""
    escaped = re.sub(r"([\\`*_{}\[\]<>()#+!|~])", r"\\\1", printable(text))
    return escaped.replace("\n", " ")
