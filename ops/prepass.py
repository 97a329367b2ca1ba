"""Cheap pre-pass of a run: which rows are unchanged since their output was made, without decoding images."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ops.cache import cache_key, cached_record, outputs_present
from ops.catalog import CatalogRow
from ops.config import Config
from ops.ledger import Current
from ops.paths import record_path, sku_slug
from ops.review import ReviewError, held_decision, load_state
from ops.state import RunState
from ops.runner import RowResult
from ops.sources import reference_for
from ops.stop import STOP
from ops.store_products import RemoteOutputs
from ops.triage import review_marks


CHUNK_ROWS = 1000  # rows a run reads, pre-passes and cuts into batches at a time


def _source_sha(path: str, known: dict[str, tuple[int, int, str]], learned: list[tuple[str, int, int, str]]) -> str:
    st = os.stat(path)
    hit = known.get(path)
    if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
        return hit[2]
    with open(path, "rb") as fh:
        sha = hashlib.file_digest(fh, "sha256").hexdigest()
    learned.append((path, st.st_size, st.st_mtime_ns, sha))
    return sha


def _hit(out_root: Path, record_path: Path, verdict: str, reasons: list[str], output: str,
         photo_problems: list[dict[str, Any]] | None = None, marks: dict[str, Any] | None = None) -> dict[str, Any]:
    """A skipped row's result, with paths relative to the output folder as the batch task gives them."""
    return {"verdict": verdict, "reasons": reasons, "record": os.path.relpath(record_path, out_root),
            "output": os.path.relpath(record_path.parent / output, out_root), "photo_problems": photo_problems or [],
            "marks": marks}


def _from_record(out_root: Path, slug: str, key: str, remote: RemoteOutputs | None = None) -> dict[str, Any] | None:
    path = record_path(out_root, slug)
    # the same test a batch task makes before staging
    record = cached_record(path, key) if remote is None else remote.record(slug, key)
    if record is None or record.get("verdict") not in ("pass", "review"):
        return None
    return _hit(out_root, path, record["verdict"], record.get("reasons", []), record["output"],
                record.get("photo_problems"), review_marks(record))


def _approved(out_root: Path, row: CatalogRow, slug: str, source_sha: str, state: RunState) -> dict[str, Any] | None:
    """An approval that still holds, as the batch task would apply it; a rejection, or an approval
    the row has outgrown, is left to the batch task (it withdraws the files or stages again)."""
    path = record_path(out_root, slug)
    held = held_decision(out_root, row, source_sha, path, state)
    if held is None or held.output is None:
        return None
    return _hit(out_root, path, held.verdict, held.reasons, held.output, held.photo_problems)


class Screen:
    """The pre-pass of a run over its rows as they stream in, a chunk at a time: it splits rows into
    unchanged (their `cached` results go to the sink) and to-do, with the to-do rows' cache keys.
    What it looks up in the ledger (current outputs, photo digests) is read per chunk, so a run
    holds neither the catalog nor a ledger's worth of entries.

    Each row's cache key (`ops.cache.cache_key`: the row's fields, the source photo's SHA-256,
    the config digest of the output-affecting tables, which names the model ids and revisions, and
    the pipeline version) is compared with the key of the SKU's current output in the ledger (or,
    for outputs made before the ledger existed, the key in the product's record). The photo's
    SHA-256 is remembered in the ledger by (path, size, mtime), so an unchanged photo is only
    stat'ed. Unchanged rows never reach a Prefect task; everything else (changed, failed before,
    a reviewer's decision to apply, a URL photo, anything unusual) goes to the batch tasks, which
    decide exactly.

    An output that passed every check is skipped on the ledger's word and a stat of its files (one
    with a rendition withheld for a photo problem, whose file is missing by design, after its
    record passes `cached_record`, which also gives its photo problems); one
    waiting for review only after its record passes `cached_record` (one made by a fallback
    backend is staged again), and only while no reviewer has decided on it. Unchanged rows are
    handed to `sink` a chunk at a time (a 50,000-row catalog would otherwise hold them all). A stop
    request (`ops.stop`) ends the pass: the rows not yet looked at go to the to-do list.

    For an object-store output (`remote`: one listing of its products, taken once) the files are
    looked up in that listing and records read from the store; a SKU the ledger does not know,
    or one a reviewer approved, goes to its batch task, whose cache test reads the store.
    """

    def __init__(self, cfg: Config, out_root: Path, state: RunState, force: bool,
                 sink: Callable[[list[dict[str, Any]]], None], remote: RemoteOutputs | None = None) -> None:
        self.cfg, self.out_root, self.state, self.force, self.sink, self.remote = cfg, out_root, state, force, sink, remote
        self.decisions = _decisions(out_root, state, force)
        self.skipped = 0

    def check(self, rows: list[CatalogRow]) -> tuple[list[CatalogRow], dict[str, str]]:
        """(the rows to stage, SKU -> cache key of those whose key was computed); the unchanged rows'
        results go to the sink. After a stop request (`ops.stop`) the rest are to-do, not looked at."""
        ledger = self.state.ledger
        local = [r for r in rows if "://" not in r.image]
        known = ledger.source_digests(r.image for r in local) if local else {}
        current = {} if self.force or not local else ledger.current(r.sku for r in local)
        look = _Lookup(self.cfg, self.out_root, self.state, known, current, self.force, self.remote, self.decisions)
        todo: list[CatalogRow] = []
        keys: dict[str, str] = {}
        cached: list[dict[str, Any]] = []
        for i, row in enumerate(rows):
            if STOP.requested:  # the rest is not looked at: the run reports those rows as not done
                todo.extend(rows[i:])
                break
            try:
                hit, key = (None, None) if "://" in row.image else look.row(row)
            except Exception:  # anything unusual (photo gone, odd SKU): the batch task reports it properly
                hit, key = None, None
            if hit is None:
                todo.append(row)
                if key is not None:
                    keys[row.sku] = key
                continue
            cached.append(RowResult(row.row, row.sku, "cached", **hit).to_dict() | {"attempts": 0})
        if cached:
            self.skipped += len(cached)
            self.sink(cached)
        ledger.remember_sources(look.learned)
        return todo, keys


def _decisions(out_root: Path, state: RunState, force: bool) -> dict[str, Any] | None:
    """slug -> a reviewer's decision, which holds while the photo and the row are unchanged; None when unreadable."""
    try:
        return {} if force else load_state(out_root, state)
    except ReviewError:  # unreadable: each row's batch task reports it
        return None


class _Lookup:
    """What the pre-pass knows before it looks at a row: photo digests, current outputs, decisions."""

    def __init__(self, cfg: Config, out_root: Path, state: RunState, known: dict[str, tuple[int, int, str]],
                 current: dict[str, Current], force: bool, remote: RemoteOutputs | None,
                 decisions: dict[str, Any] | None) -> None:
        self.cfg, self.out_root, self.known, self.current, self.force = cfg, out_root, known, current, force
        self.state, self.remote, self.decisions = state, remote, decisions
        self.learned: list[tuple[str, int, int, str]] = []

    def row(self, row: CatalogRow) -> tuple[dict[str, Any] | None, str]:
        """(the cached result when the row is unchanged, else None; the row's cache key)."""
        cfg = self.cfg
        reference = reference_for(cfg, row.reference_image)
        source_sha = _source_sha(row.image, self.known, self.learned)
        key = cache_key(row, source_sha, cfg.digest(), reference.sha256 if reference else "")
        if self.force or self.decisions is None:  # an unreadable review state: every row's batch task reports it
            return None, key
        prev, name = self.current.get(row.sku), sku_slug(row.sku)
        if (decision := self.decisions.get(name)) is not None:
            approved = decision.get("decision") == "approved" and self.remote is None
            return (_approved(self.out_root, row, name, source_sha, self.state) if approved else None), key
        if prev is None and self.remote is not None:
            return None, key
        if prev is None or (prev.cache_key == key and prev.verdict == "review"):
            return _from_record(self.out_root, name, key, self.remote), key
        if prev.cache_key == key and prev.verdict == "pass" and prev.output:
            exists = self.remote.exists if self.remote is not None else None
            if outputs_present(self.out_root, prev.output, cfg, exists):
                return {"verdict": prev.verdict, "reasons": prev.reasons, "record": prev.record,
                        "output": prev.output}, key
            # a rendition withheld for a photo problem has no file: the record says which are due
            return _from_record(self.out_root, name, key, self.remote), key
        return None, key
