"""Review queue and quarantine: what a person decides about a SKU, and where held-back images go."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ops.atomic import write_bytes, write_json
from ops.catalog import CatalogRow
from ops.paths import IMAGE_SUFFIXES, PRODUCTS, ProductPaths, sku_slug
from ops.state import ReviewStateError, RunState, open_state
from ops.triage import grouped_reasons
from stages.errors import StagingError

if TYPE_CHECKING:
    from ops.config import Config



class ReviewError(StagingError):
    """A review command cannot be carried out (unknown SKU, nothing to approve, state unreadable)."""


def row_digest(row: CatalogRow) -> str:
    """Hash of the row's fields that shape the output (not its line number or photo path)."""
    fields = {k: v for k, v in row.to_dict().items() if k not in ("row", "image")}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _state(out_root: Path, state: RunState | None) -> RunState:
    return state if state is not None else open_state(str(out_root))


def open_review(cfg: Config, out: str | None, skus: Iterable[str] | None = None, *, records: bool = True,
                with_output: bool = False) -> tuple[Path, str, RunState]:
    """The output folder whose records a review command reads, the location's name, and its run
    state (`ops.state`), where the decisions live: for `stage review` and the review flow.

    For an object-store output the folder is this machine's scratch folder with the store's
    records copied in (`ops.store_products.mirror_records`): every product's (`skus` None, a
    listing) or those of `skus`, with the image each names when `with_output` (an approval checks
    that it exists); none without `records` (forgetting a decision reads no record)."""
    from ops.objectstore import store_for
    from ops.store_products import mirror_records

    where = cfg.output_location(out)
    state = open_state(where.name, cfg.state)
    if where.url and records:
        slugs = None if skus is None else [sku_slug(s) for s in skus]
        mirror_records(store_for(cfg.storage, where.url), where.root, slugs, with_output=with_output)
    return where.root, where.name, state


@dataclass(frozen=True)
class Decisions:
    """What a review command did: the location's name, every SKU it was about (named, then the
    group's), the entries stored (approve, reject), the SKUs refused with why, and for a reset
    the SKUs whose decision was forgotten."""

    output: str
    skus: list[str]
    stored: list[dict[str, Any]] = field(default_factory=list)
    refused: list[tuple[str, ReviewError]] = field(default_factory=list)
    forgotten: set[str] = field(default_factory=set)


def apply_decision(cfg: Config, out: str | None, command: str, skus: Iterable[str] = (), check: str = "",
                   reason: str = "", by: str | None = None) -> Decisions:
    """`approve`, `reject` or `reset` (`command`) the SKUs named and, to approve or reject, every
    SKU of the `check` group no one has decided about yet (`undecided_in_group`): what `stage
    review` and the review flow both do, all in one write of the run state."""
    if command not in ("approve", "reject", "reset"):
        raise ReviewError(f"unknown review command {command!r}")
    if check and command == "reset":
        raise ReviewError("a group is approved or rejected; name the SKUs whose decisions to forget")
    wanted = list(dict.fromkeys(skus))
    out_root, shown, state = open_review(cfg, out, None if check else wanted, records=command != "reset",
                                         with_output=command == "approve")
    if check:
        wanted = list(dict.fromkeys(wanted + undecided_in_group(out_root, check, state=state)))
    if command == "reset":
        return Decisions(shown, wanted, forgotten=set(reset_many(out_root, wanted, state=state)))
    stored, refused = decide_many(out_root, wanted, "approved" if command == "approve" else "rejected", reason, by,
                                  state)
    return Decisions(shown, wanted, stored, refused)


def load_state(out_root: Path, state: RunState | None = None) -> dict[str, Any]:
    """The decisions, keyed by SKU slug, from the run state of `out_root` (or `state`)."""
    try:
        return _state(out_root, state).review.all()
    except ReviewStateError as exc:
        raise ReviewError(str(exc)) from None


def _record(out_root: Path, sku: str) -> tuple[Path, dict[str, Any]]:
    path = ProductPaths.of(out_root, sku).record
    try:
        return path, json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReviewError(f"SKU {sku!r} has no record in {out_root / PRODUCTS} (not staged yet?)") from None
    except (OSError, ValueError) as exc:
        raise ReviewError(f"record of SKU {sku!r} ({path}) is unreadable: {exc}") from None


def decide(out_root: Path, sku: str, decision: str, reason: str = "", by: str | None = None,
           state: RunState | None = None) -> dict[str, Any]:
    """Record `approved` or `rejected` for a staged SKU in the run state (`state`, else the one of
    `out_root`); returns the stored entry."""
    done, refused = decide_many(out_root, [sku], decision, reason, by, state)
    if refused:
        raise refused[0][1]
    return done[0]


def decide_many(out_root: Path, skus: Iterable[str], decision: str, reason: str = "", by: str | None = None,
                state: RunState | None = None) -> tuple[list[dict[str, Any]], list[tuple[str, ReviewError]]]:
    """`decide` for several SKUs (a reviewer clearing a whole group of the queue): (the stored
    entries, the SKUs that could not be decided with why). Each SKU is checked on its own, so one
    without a record or without an output to approve does not hold up the others; the rest are
    stored together, in one write of the run state. A SKU named twice is decided once."""
    if decision not in ("approved", "rejected"):
        raise ReviewError(f"unknown decision {decision!r}")
    if decision == "rejected" and not reason.strip():
        raise ReviewError("a rejection needs a reason (--reason)")
    by, at = by or _user(), datetime.now(UTC).isoformat(timespec="seconds")
    entries: dict[str, dict[str, Any]] = {}
    refused: list[tuple[str, ReviewError]] = []
    for sku in dict.fromkeys(skus):
        try:
            entries[sku_slug(sku)] = _entry(out_root, sku, decision, reason.strip(), by, at)
        except ReviewError as exc:
            refused.append((sku, exc))
    try:
        _state(out_root, state).review.decide_all(entries)
    except ReviewStateError as exc:
        raise ReviewError(str(exc)) from None
    return list(entries.values()), refused


def _entry(out_root: Path, sku: str, decision: str, reason: str, by: str, at: str) -> dict[str, Any]:
    """The decision about one SKU as the run state keeps it, tied to the photo and row it was made about."""
    path, record = _record(out_root, sku)
    if decision == "approved":
        if not record.get("output") or not (path.parent / record["output"]).is_file():
            raise ReviewError(f"SKU {sku!r} has no published output to approve (verdict {record.get('verdict')!r}: "
                              + "; ".join(record.get("reasons") or []) + ")")
    return {
        "sku": sku, "decision": decision, "reason": reason, "by": by, "at": at,
        "source_sha256": record.get("source_sha256"), "row_digest": record.get("row_digest"),
        "output": record.get("output"), "verdict_then": record.get("verdict"), "reasons_then": record.get("reasons", []),
    }


def reset(out_root: Path, sku: str, state: RunState | None = None) -> bool:
    """Forget the decision about `sku`; True when there was one."""
    return bool(reset_many(out_root, [sku], state))


def reset_many(out_root: Path, skus: Iterable[str], state: RunState | None = None) -> list[str]:
    """Forget the decisions about `skus`, in one write of the run state; the SKUs that had one."""
    by_slug = {sku_slug(s): s for s in skus}
    try:
        return [by_slug[slug] for slug in _state(out_root, state).review.reset_all(by_slug)]
    except ReviewStateError as exc:
        raise ReviewError(str(exc)) from None


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return f"uid {os.getuid()}"


@dataclass(frozen=True)
class Held:
    """A reviewer's decision that still applies to this row: the run keeps it instead of staging."""

    status: str  # cached (approved output kept) | rejected
    verdict: str
    reasons: list[str]
    output: str | None  # record-relative output file kept, or None
    photo_problems: list[dict[str, Any]] = field(default_factory=list)  # of the kept output's record


def held_decision(out_root: Path, row: CatalogRow, source_sha256: str, record_path: Path,
                  state: RunState | None = None) -> Held | None:
    """The decision for this row when it still matches its photo and fields, applied; else None.

    Decisions live in the output location's run state (`ops.state`: `OUT/review/state.json`,
    written atomically under a lock, or the database), apart from the run records. A decision is tied to what
    it was made about: the source photo's sha256 and the row's fields. While both are unchanged,
    nightly runs keep the decision, even with `--force`:

    - `approved`: the published output is kept as it is (not regenerated, whatever the config);
    - `rejected`: the SKU's published files are withdrawn to `OUT/quarantine/<slug>/` and the row
      reports `rejected` with the reviewer's reason.

    A new photo or an edited row (prompt, seed, title, ...) makes the decision stale: the SKU is
    staged again and goes through the checks afresh. `stage review reset SKU` forgets a decision.
    """
    try:
        entry = _state(out_root, state).review.get(sku_slug(row.sku))
    except ReviewStateError as exc:
        raise ReviewError(str(exc)) from None
    if not entry or entry.get("sku") != row.sku:
        return None
    if entry.get("source_sha256") != source_sha256 or entry.get("row_digest") != row_digest(row):
        return None  # the photo or the row changed since: stage again
    when = f"{entry.get('by', '?')} at {entry.get('at', '?')}"
    if entry["decision"] == "approved":
        output = entry.get("output")
        if not output or not (record_path.parent / output).is_file():
            return None  # the approved file is gone: stage again
        return Held("cached", "pass", [f"review: approved by {when}"], output, _photo_problems(record_path))
    withdraw(out_root, record_path)
    return Held("rejected", "reject", [f"review: rejected by {when}: {entry.get('reason', '')}"], None)


def _photo_problems(record_path: Path) -> list[dict[str, Any]]:
    """The renditions the record says were withheld (a kept output keeps them withheld)."""
    try:
        return json.loads(record_path.read_text(encoding="utf-8")).get("photo_problems") or []
    except (OSError, ValueError, AttributeError):
        return []


def withdraw(out_root: Path, record_path: Path) -> list[str]:
    """Move a SKU's published images out of the publish folder into its quarantine folder."""
    folder = record_path.parent
    target = ProductPaths(out_root, folder.name).quarantine
    moved = []
    for f in sorted(folder.glob(f"{folder.name}*")):
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
            target.mkdir(parents=True, exist_ok=True)
            os.replace(f, target / f.name)
            moved.append(f.name)
    return moved


def quarantine(out_root: Path, slug: str, name: str, data: bytes, record: dict[str, Any],
               replaces: Path | None = None) -> str:
    """Write a held-back image and its record under OUT/quarantine/<slug>/; returns the image path
    relative to the output root. `replaces`: the published file an earlier run made for the same
    variant, removed (with its renditions) so that the publish folder never keeps it."""
    folder = ProductPaths(out_root, slug).quarantine
    write_bytes(folder / name, data)
    write_json(folder / f"{Path(name).stem}.json", record)
    if replaces is not None:
        for old in replaces.parent.glob(f"{replaces.stem}.*"):
            if old.suffix.lower() in IMAGE_SUFFIXES:
                old.unlink(missing_ok=True)
    return os.path.relpath(folder / name, out_root)


def undecided_in_group(out_root: Path, check: str, state: RunState | None = None) -> list[str]:
    """The SKUs waiting for review with a reason from `check` (a group of the queue, named as
    `stage review list` prints it) that no one has decided about yet (a decision gone stale with a
    new photo or row counts as none): what a reviewer clears at once after looking at the group."""
    return [it["sku"] for it in queue(out_root, ("review",), state)
            if check in it["checks"] and (it["decision"] is None or it["decision"].get("stale"))]


def queue(out_root: Path, verdicts: tuple[str, ...] = ("review",), state: RunState | None = None
          ) -> list[dict[str, Any]]:
    """SKUs whose latest record has one of `verdicts` (all when empty), with any decision on them,
    the checks behind their reasons (`ops.triage.reason_check`) and their photo problems."""
    decisions = load_state(out_root, state)
    items = []
    for path in sorted((out_root / PRODUCTS).glob("*/*.json")):
        if path.stem != path.parent.name:
            continue
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if verdicts and rec.get("verdict") not in verdicts:
            continue
        entry = decisions.get(path.parent.name)
        if entry is not None and (entry.get("source_sha256") != rec.get("source_sha256")
                                  or entry.get("row_digest") != rec.get("row_digest")):
            entry = {**entry, "stale": True}
        items.append({
            "sku": rec.get("sku"), "row": rec.get("row"), "verdict": rec.get("verdict"),
            "reasons": rec.get("reasons", []), "checks": list(grouped_reasons(rec.get("reasons") or [])),
            "photo_problems": rec.get("photo_problems") or [], "output": rec.get("output"),
            "record": os.path.relpath(path, out_root), "decision": entry,
        })
    return items
