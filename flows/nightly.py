"""Nightly catalog run: a Prefect flow over the plain-Python stages.

Products are processed in batches (one task per batch, not per SKU per stage) so that a
50,000-SKU catalog does not drown the orchestrator; tasks pass rows and paths, never pixels.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from stages import PIPELINE_VERSION
from stages.catalog import CatalogRow, read_catalog
from stages.config import Config, load_config
from stages.product import RowResult, Workbench, process_row
from stages.report import summarize, write_run_report

# Per worker process: backends are loaded once and reused by every batch task.
_BENCHES: dict[str, Workbench] = {}
_BENCH_LOCK = threading.Lock()
# Set by the CLI to drive its progress bar; called with the number of products just finished.
progress_hook: Callable[[int], None] | None = None


def _bench(cfg: Config) -> Workbench:
    key = f"{cfg.base_dir}:{cfg.digest()}"
    with _BENCH_LOCK:
        if key not in _BENCHES:
            _BENCHES[key] = Workbench.build(cfg)
        return _BENCHES[key]


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


@task(name="stage-batch", cache_policy=NO_CACHE, task_run_name="stage-batch-{first_row}")
def stage_batch(rows: list[dict[str, Any]], config: str | None, out_root: str, run_id: str,
                force: bool, first_row: int) -> list[dict[str, Any]]:
    """Stage a batch of products; a failing product is recorded and the batch goes on."""
    logger = get_run_logger()
    cfg = load_config(config)
    catalog_rows = [CatalogRow(**r) for r in rows]
    try:
        bench = _bench(cfg)
    except Exception as exc:  # a backend that cannot load fails every product of the batch, with its reason
        logger.error("backends failed to load: %s", exc)
        results = [RowResult(r.row, r.sku, "failed", error=f"{type(exc).__name__}: {exc}") for r in catalog_rows]
        if progress_hook:
            progress_hook(len(results))
        return [r.to_dict() for r in results]
    out: list[dict[str, Any]] = []
    for row in catalog_rows:
        result = process_row(bench, row, Path(out_root), run_id, force=force)
        if result.status == "failed":
            logger.error("row %d SKU %r failed: %s", row.row, row.sku, result.error)
        elif result.status == "rejected":
            logger.warning("row %d SKU %r rejected: %s", row.row, row.sku, "; ".join(result.reasons))
        else:
            logger.info("row %d SKU %r %s (%s)", row.row, row.sku, result.status, result.verdict)
        out.append(result.to_dict())
        if progress_hook:
            progress_hook(1)
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
    out_root = Path(out).resolve() if out else cfg.resolve(cfg.run.output_dir).resolve()
    started = datetime.now(UTC)
    run_id = started.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
    run_dir = out_root / "runs" / run_id
    cat = validate_catalog(catalog, cfg.run.max_variants)
    rows = cat["rows"]
    logger.info("run %s: %d valid rows, %d invalid, batch size %d", run_id, len(rows), len(cat["errors"]),
                cfg.run.batch_size)
    if progress_hook and cat["errors"]:
        progress_hook(len(cat["errors"]))
    futures = [
        stage_batch.submit(rows[i : i + cfg.run.batch_size], config, str(out_root), run_id, force, rows[i]["row"])
        for i in range(0, len(rows), cfg.run.batch_size)
    ]
    results: list[dict[str, Any]] = []
    for fut in futures:
        results.extend(fut.result())
    meta = {
        "run_id": run_id, "catalog": cat["path"], "config": str(Path(config).resolve()) if config else None,
        "config_digest": cfg.digest(), "pipeline_version": PIPELINE_VERSION, "output_root": str(out_root),
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    paths = write_run_report(run_dir, out_root, meta, results, cat["errors"])
    summary = summarize(results, cat["errors"])
    _artifacts(run_id, summary, results, cat["errors"], paths["html"])
    return {**meta, "summary": summary, "run_dir": str(run_dir), "report": str(paths["html"]),
            "results": results, "catalog_errors": cat["errors"]}


def _artifacts(run_id: str, summary: dict[str, Any], results: list[dict[str, Any]],
               errors: list[dict[str, Any]], report: Path) -> None:
    table = [{"outcome": k, "count": v} for k, v in sorted({**summary["by_status"], **{
        f"verdict:{k}": v for k, v in summary["by_verdict"].items()}}.items())]
    table.append({"outcome": "invalid rows", "count": summary["invalid_rows"]})
    create_table_artifact(table, key="staging-run-counts", description=f"Run {run_id}: products by outcome")
    bad = [f"| {e['row']} | `{e['sku']}` | invalid | {e['reason']} |" for e in errors]
    bad += [
        f"| {r['row']} | `{r['sku']}` | {r['status']} | {r.get('error') or '; '.join(r.get('reasons') or [])} |"
        for r in results if r["status"] in ("failed", "rejected") or r.get("verdict") == "review"
    ]
    body = f"# Run {run_id}\n\nReport: `{report}`\n\n"
    body += "| row | SKU | status | reason |\n|---|---|---|---|\n" + "\n".join(bad) if bad else "All products passed."
    create_markdown_artifact(body, key="staging-run-report", description=f"Run {run_id}")
