"""Merchandiser reruns: regenerate a few SKUs of a catalog, optionally with another prompt, seed or variants."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import State

from flows.nightly import flow_run_id, config_for, new_context, run_rows, validate_catalog
from flows.stopping import StoppableTaskRunner, ended, stopping
from ops.catalog import MAX_SEED, MAX_TEXT_LEN, CatalogRow, shown_sku
from ops.state import open_state


def apply_overrides(rows: list[CatalogRow], prompt: str | None, seed: int | None, variants: int | None,
                    max_variants: int) -> list[CatalogRow]:
    """The rows with the rerun's overrides; a bad override fails the rerun before anything runs, naming it."""
    changes: dict[str, Any] = {}
    if prompt is not None:
        text = prompt.strip()
        if not text or len(text) > MAX_TEXT_LEN:
            raise ValueError(f"prompt: must be 1..{MAX_TEXT_LEN} characters, got {len(text)}")
        changes["scene_prompt"] = text
    if seed is not None:
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed = {seed}: must be 0..{MAX_SEED}")
        changes["seed"] = seed
    if variants is not None:
        if not 1 <= variants <= max_variants:
            raise ValueError(f"variants = {variants}: must be 1..{max_variants} ([run].max_variants)")
        changes["variants"] = variants
    return [dataclasses.replace(r, **changes) for r in rows]


@flow(name="merchandiser-rerun", task_runner=StoppableTaskRunner(max_workers=2))
def rerun_skus(skus: list[str], reason: str, catalog: str, config: str | None = "config.toml",
               out: str | None = None, prompt: str | None = None, seed: int | None = None,
               variants: int | None = None, sheet: str | None = None) -> dict[str, Any] | State:
    """Regenerate the given SKUs of a catalog, with optional overrides, and report them.

    Started from the Prefect UI (the `rerun` deployment: its typed parameters render as a form)
    or with `stage rerun`. The SKUs' rows are read from the catalog, the overrides are applied to
    those rows only, and they are regenerated even when unchanged. It runs beside other reruns'
    and shards' SKUs (per-SKU locks), never beside a full nightly run of the same folder. Unknown
    SKUs are reported as failed rows of the run, with the reason. Stopped, it ends as Cancelled
    (the run's result is the state's data).

    Args:
        skus: SKUs to regenerate, exactly as in the catalog.
        reason: Why they are rerun (kept in the run report and the ledger), e.g. "buyer asked for a warmer backdrop".
        catalog: Path or URL of the catalog (CSV, XLSX or Parquet) that holds the SKUs.
        config: Path of config.toml (None: built-in defaults).
        out: Output folder; defaults to [run].output_dir of the config.
        prompt: Scene prompt to use instead of the catalog's, for these SKUs.
        seed: Seed to use instead of the catalog's (variant i uses seed + i).
        variants: Number of variants to make instead of the catalog's.
        sheet: Worksheet of an XLSX catalog (default: the first).
    """
    logger = get_run_logger()
    if not skus:
        raise ValueError("skus: name at least one SKU to rerun")
    if not reason.strip():
        raise ValueError("reason: say why the SKUs are rerun (it is kept with the run)")
    cfg = config_for(config)
    apply_overrides([], prompt, seed, variants, cfg.run.max_variants)  # bad overrides fail before anything runs
    where = cfg.output_location(out)
    out_root = where.root
    started = datetime.now(UTC)
    with stopping(flow_run_id(), cfg.run.stop_timeout_s), open_state(where.name, cfg.state).run_lock(shared="rerun"):
        cat = validate_catalog(catalog, cfg, sheet)
        wanted = list(dict.fromkeys(skus))
        wanted_set = set(wanted)
        by_sku = {r.sku: r for r in cat.rows() if r.sku in wanted_set}
        invalid = {e.sku: e.to_dict() for e in [*cat.errors, *cat.late]}  # late: invalid when read again
        errors: list[dict[str, Any]] = []
        for sku in wanted:
            if sku in by_sku:
                continue
            if sku in invalid:
                errors.append({**invalid[sku], "reason": f"invalid catalog row: {invalid[sku]['reason']}"})
            else:
                errors.append({"row": 0, "sku": sku, "reason": f"SKU not in catalog {cat.path}"})
            logger.error("SKU %r cannot be rerun: %s", shown_sku(sku), errors[-1]["reason"])
        rows_overridden = apply_overrides([by_sku[s] for s in wanted if s in by_sku], prompt, seed, variants,
                                          cfg.run.max_variants)
        logger.info("rerun of %d SKU(s) (%d unknown or invalid): %s", len(rows_overridden), len(errors), reason)
        overrides = {k: v for k, v in (("prompt", prompt), ("seed", seed), ("variants", variants)) if v is not None}
        ctx = new_context(out_root, config, started, force=True, note=f"rerun: {reason}", state=cfg.state,
                          output_url=where.url)
        return ended(run_rows(ctx, cfg, rows_overridden, len(rows_overridden), errors, cat.path,
                              {"rerun": {"skus": wanted, "reason": reason, "overrides": overrides}}))
