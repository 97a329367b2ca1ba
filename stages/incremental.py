"""Cheap pre-pass of a run: which rows are unchanged since their output was made, without decoding images.

Each row's cache key (stages.product.cache_key: the row's fields, the source photo's SHA-256,
the config digest of the output-affecting tables, which names the model ids and revisions, and
the pipeline version) is compared with the key of the SKU's current output in the ledger (or,
for outputs made before the ledger existed, the key in the product's record). The photo's
SHA-256 is remembered in the ledger by (path, size, mtime), so an unchanged photo is only
stat'ed. Unchanged rows never reach a Prefect task; everything else (changed, failed before,
a reviewer's decision to apply, a URL photo, anything unusual) goes to the batch tasks, which
decide exactly. An unchanged output waiting for review is skipped too, after the same test of
its record the batch task would make (made by the configured backends, every file still there).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stages.catalog import CatalogRow
from stages.config import Config
from stages.ledger import Ledger
from stages.naming import sku_slug
from stages.product import RowResult, cache_key, cached_record
from stages.review import ReviewError, held_decision, load_state
from stages.renditions import channel_file_name
from stages.write import format_copy_name
from stages.style import reference_for


@dataclass
class Prepass:
    todo: list[CatalogRow] = field(default_factory=list)
    cached: list[dict[str, Any]] = field(default_factory=list)  # unchanged rows not yet handed to the sink
    keys: dict[str, str] = field(default_factory=dict)  # SKU -> cache key of the to-do rows, when computed
    skipped: int = 0


def _source_sha(path: str, known: dict[str, tuple[int, int, str]], learned: list[tuple[str, int, int, str]]) -> str:
    st = os.stat(path)
    hit = known.get(path)
    if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
        return hit[2]
    with open(path, "rb") as fh:
        sha = hashlib.file_digest(fh, "sha256").hexdigest()
    learned.append((path, st.st_size, st.st_mtime_ns, sha))
    return sha


def outputs_present(out_root: Path, output: str, cfg: Config) -> bool:
    """Whether every file a passed product publishes is still there: the master, its format copies
    and each active channel rendition (names follow from the config, so nothing is read)."""
    master = out_root / output
    folder = master.parent
    names = [master.name] + [format_copy_name(master.stem, f) for f in cfg.write.renditions]
    for name in cfg.renditions.active:
        names += [channel_file_name(folder.name, name, f) for f in cfg.renditions.presets[name].formats]
    return all((folder / n).is_file() for n in names)


def _record_path(out_root: Path, slug: str) -> Path:
    return out_root / "products" / slug / f"{slug}.json"


def _hit(out_root: Path, record_path: Path, verdict: str, reasons: list[str], output: str) -> dict[str, Any]:
    """A skipped row's result, with paths relative to the output folder as the batch task gives them."""
    return {"verdict": verdict, "reasons": reasons, "record": os.path.relpath(record_path, out_root),
            "output": os.path.relpath(record_path.parent / output, out_root)}


def _from_record(out_root: Path, slug: str, key: str) -> dict[str, Any] | None:
    record_path = _record_path(out_root, slug)
    record = cached_record(record_path, key)  # the same test a batch task makes before staging
    if record is None or record.get("verdict") not in ("pass", "review"):
        return None
    return _hit(out_root, record_path, record["verdict"], record.get("reasons", []), record["output"])


def _approved(out_root: Path, row: CatalogRow, slug: str, source_sha: str) -> dict[str, Any] | None:
    """An approval that still holds, as the batch task would apply it; a rejection, or an approval
    the row has outgrown, is left to the batch task (it withdraws the files or stages again)."""
    record_path = _record_path(out_root, slug)
    held = held_decision(out_root, row, source_sha, record_path)
    if held is None or held.output is None:
        return None
    return _hit(out_root, record_path, held.verdict, held.reasons, held.output)


def prepass(rows: list[CatalogRow], cfg: Config, out_root: Path, ledger: Ledger, force: bool,
            slug: Callable[[str], str] = sku_slug,
            sink: Callable[[list[dict[str, Any]]], None] | None = None) -> Prepass:
    """Split rows into unchanged (`cached` results) and to-do, with the to-do rows' cache keys.

    Unchanged rows are handed to `sink` in chunks as they are found (a 50,000-row catalog
    would otherwise hold them all); without a sink they are in `.cached`.

    An output that passed every check is skipped on the ledger's word and a stat of its files; one
    waiting for review only after its record passes `cached_record` (one made by a fallback
    backend is staged again), and only while no reviewer has decided on it.
    """
    result = Prepass()
    known = ledger.source_digests()
    current = {} if force else ledger.current()
    try:  # slug -> a reviewer's decision, which holds while the photo and the row are unchanged
        decisions = {} if force else load_state(out_root)
    except ReviewError:  # unreadable: each row's batch task reports it
        decisions = None
    learned: list[tuple[str, int, int, str]] = []
    for row in rows:
        try:
            if "://" in row.image:
                result.todo.append(row)
                continue
            reference = reference_for(cfg, row.reference_image)
            source_sha = _source_sha(row.image, known, learned)
            key = cache_key(row, source_sha, cfg, reference.sha256 if reference else "")
            if force:
                result.todo.append(row)
                result.keys[row.sku] = key
                continue
            prev, name = current.get(row.sku), slug(row.sku)
            hit: dict[str, Any] | None = None
            if decisions is None:
                pass  # the review state is unreadable: every row's batch task reports it
            elif (decision := decisions.get(name)) is not None:
                hit = _approved(out_root, row, name, source_sha) if decision.get("decision") == "approved" else None
            elif prev is None or (prev.cache_key == key and prev.verdict == "review"):
                hit = _from_record(out_root, name, key)
            elif (prev.cache_key == key and prev.verdict == "pass" and prev.output
                    and outputs_present(out_root, prev.output, cfg)):
                hit = {"verdict": prev.verdict, "reasons": prev.reasons, "record": prev.record,
                       "output": prev.output}
        except Exception:  # anything unusual (photo gone, odd SKU): the batch task reports it properly
            result.todo.append(row)
            continue
        if hit is None:
            result.todo.append(row)
            result.keys[row.sku] = key
        else:
            result.cached.append(RowResult(row.row, row.sku, "cached", **hit).to_dict() | {"attempts": 0})
            result.skipped += 1
            if sink is not None and len(result.cached) >= 1000:
                sink(result.cached)
                result.cached = []
    if sink is not None and result.cached:
        sink(result.cached)
        result.cached = []
    ledger.remember_sources(learned)
    return result
