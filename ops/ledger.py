"""The output folder's ledger: who processed which SKU, when, with which cache key, and the result."""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LEDGER_NAME = "ledger.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    run_id TEXT NOT NULL,
    flow_run_id TEXT,
    worker TEXT,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    sku TEXT NOT NULL,
    row INTEGER,
    cache_key TEXT,
    status TEXT NOT NULL,
    verdict TEXT,
    reasons TEXT,
    record TEXT,
    output TEXT,
    error TEXT,
    note TEXT,
    timings_ms TEXT,
    cost REAL,
    currency TEXT
);
CREATE INDEX IF NOT EXISTS events_sku ON events (sku, id);
CREATE INDEX IF NOT EXISTS events_run ON events (run_id);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    flow_run_id TEXT,
    worker TEXT,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    state TEXT NOT NULL,
    reason TEXT,
    not_done INTEGER,
    note TEXT,
    cost REAL,
    currency TEXT
);
CREATE TABLE IF NOT EXISTS sources (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
"""

# Columns added after the first release: a ledger made before them gets them on first open.
_ADDED_COLUMNS = {
    "events": (("timings_ms", "TEXT"), ("cost", "REAL"), ("currency", "TEXT")),
    "runs": (("cost", "REAL"), ("currency", "TEXT")),
}


def _add_columns(db: sqlite3.Connection) -> None:
    """Bring an older ledger's tables up to the current columns (ALTER TABLE ADD COLUMN: the
    existing rows get NULL, which every reader takes as "not recorded"). Done in one write
    transaction, so two processes opening the same old ledger do not both add a column."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for table, columns in _ADDED_COLUMNS.items():
            have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns:
                if name not in have:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


# A run's state in the `runs` table: `running` until it ends; one still `running` whose process
# is gone was killed (its finished products are in `events`, the rest are redone next run).
RUN_STATES = ("running", "completed", "stopped")


@dataclass(frozen=True)
class Current:
    """A SKU's latest published output, as the ledger knows it."""

    sku: str
    cache_key: str | None
    status: str
    verdict: str | None
    reasons: list[str]
    record: str | None
    output: str | None
    run_id: str


def worker_label() -> str | None:
    """The worker's name when the deployment or the worker's environment sets STAGE_WORKER."""
    return os.environ.get("STAGE_WORKER") or None


EVENT_COLUMNS = ("at", "run_id", "flow_run_id", "worker", "host", "pid", "sku", "row", "cache_key", "status",
                 "verdict", "reasons", "record", "output", "error", "note", "timings_ms", "cost", "currency")
RUN_COLUMNS = ("run_id", "flow_run_id", "worker", "host", "pid", "started_at", "ended_at", "state", "reason",
               "not_done", "note", "cost", "currency")


def now_text() -> str:
    """The time stamp kept in events and runs (UTC, ISO 8601, milliseconds): sorts as text."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def event_rows(run_id: str, results: Iterable[dict[str, Any]], keys: dict[str, str] | None,
               flow_run_id: str | None, note: str | None) -> list[tuple[Any, ...]]:
    """The events of processed rows, as tuples in `EVENT_COLUMNS` order (every ledger backend stores
    these). `cached` rows (nothing was done to them) and `stopped` ones (the run stopped before they
    were done, nothing was written) have none."""
    now = now_text()
    host, pid, worker = socket.gethostname(), os.getpid(), worker_label()
    return [
        (now, run_id, flow_run_id, worker, host, pid, r["sku"], r.get("row"),
         r.get("cache_key") or (keys or {}).get(r["sku"]), r["status"], r.get("verdict"),
         json.dumps(r.get("reasons") or []), r.get("record"), r.get("output"), r.get("error"), note,
         json.dumps(r["timings_ms"]) if r.get("timings_ms") else None,
         (r.get("cost") or {}).get("total"), (r.get("cost") or {}).get("currency"))
        for r in results if r["status"] not in ("cached", "stopped")
    ]


class Ledger:
    """One output folder's ledger; cheap to create (a connection per call, safe across threads).

    An append-only SQLite table (`<out>/ledger.sqlite`, WAL mode) so that several runs on one
    folder (shards on different workers, a rerun beside them) can write it at once. Each SKU
    that a run actually processed (not one skipped as unchanged) gets one event; the SKU's
    current output is its latest event that published one. A second table remembers the SHA-256
    of source photos by (path, size, mtime) so that an unchanged catalog can be checked against
    the ledger without reading every photo again.
    """

    _ready: set[tuple[str, int]] = set()  # (path, inode) of ledger files whose tables exist

    def __init__(self, out_root: Path) -> None:
        """Open (and on first use in this process, create the tables of) the folder's ledger;
        a run opens it once per product, so the tables are not re-created each time."""
        self.path = Path(out_root) / LEDGER_NAME
        try:
            key = (str(self.path), self.path.stat().st_ino)
        except FileNotFoundError:
            key = None
        if key in self._ready:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if key is None:
            self._create()
        with self._connect() as db:
            db.executescript(_SCHEMA)
            _add_columns(db)
        self._ready.add((str(self.path), self.path.stat().st_ino))

    def _create(self) -> None:
        """Make the ledger file with its tables in a temp file and link it into place, so that a
        reader (a `stage report`, a monitor) never finds the file without its tables; when another
        process made it first, its file stays. A file system without hard links: created in place."""
        tmp = self.path.with_name(f".{LEDGER_NAME}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            with closing(sqlite3.connect(tmp, isolation_level=None)) as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
            os.link(tmp, self.path)
        except OSError:  # made by another process first (kept), or no hard links here: made in place
            pass
        finally:
            tmp.unlink(missing_ok=True)
            for extra in ("-wal", "-shm"):
                Path(f"{tmp}{extra}").unlink(missing_ok=True)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=60.0, isolation_level=None)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=60000")
            yield db

    def append(self, run_id: str, results: Iterable[dict[str, Any]], keys: dict[str, str] | None = None,
               flow_run_id: str | None = None, note: str | None = None) -> int:
        """Record processed rows; returns the count. `cached` rows (nothing was done to them) and
        `stopped` ones (the run stopped before they were done, nothing was written) are skipped."""
        rows = event_rows(run_id, results, keys, flow_run_id, note)
        if not rows:
            return 0
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO events (at, run_id, flow_run_id, worker, host, pid, sku, row, cache_key, status, verdict,"
                " reasons, record, output, error, note, timings_ms, cost, currency)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            db.execute("COMMIT")
        return len(rows)

    def start_run(self, run_id: str, flow_run_id: str | None = None, note: str | None = None) -> None:
        """Record a run as `running` (it becomes `completed` or `stopped` in `end_run`)."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO runs (run_id, flow_run_id, worker, host, pid, started_at, state, note)"
                       " VALUES (?, ?, ?, ?, ?, ?, 'running', ?)",
                       (run_id, flow_run_id, worker_label(), socket.gethostname(), os.getpid(), now, note))

    def end_run(self, run_id: str, state: str, reason: str | None = None, not_done: int = 0,
                cost: float | None = None, currency: str | None = None) -> None:
        """Record how a run ended and, when known, what its staged products cost (ops.cost)."""
        if state not in RUN_STATES[1:]:
            raise ValueError(f"run state {state!r}: must be one of {RUN_STATES[1:]}")
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        with self._connect() as db:
            db.execute("UPDATE runs SET ended_at = ?, state = ?, reason = ?, not_done = ?, cost = ?, currency = ?"
                       " WHERE run_id = ?", (now, state, reason, not_done, cost, currency, run_id))

    def runs(self) -> list[dict[str, Any]]:
        """Every run that used this folder, oldest first."""
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM runs ORDER BY started_at")]

    def current(self, skus: Iterable[str] | None = None) -> dict[str, Current]:
        """Each SKU's latest event that published an output (status ok); of `skus` only, when given
        (looked up by the index, a chunk at a time: a run asks per chunk of its catalog)."""
        query = ("SELECT sku, cache_key, status, verdict, reasons, record, output, run_id FROM events"
                 " WHERE id IN (SELECT MAX(id) FROM events WHERE status = 'ok'{} GROUP BY sku)")
        out: dict[str, Current] = {}
        with self._connect() as db:
            for where, params in _chunked("sku", skus):
                for sku, key, status, verdict, reasons, record, output, run_id in db.execute(
                        query.format(f" AND {where}" if where else ""), params):
                    out[sku] = Current(sku, key, status, verdict, json.loads(reasons or "[]"), record, output, run_id)
        return out

    def events(self, run_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Every event (of the given runs), oldest first: the audit trail."""
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            if run_ids is None:
                cur = db.execute("SELECT * FROM events ORDER BY id")
            else:
                ids = list(run_ids)
                cur = db.execute(f"SELECT * FROM events WHERE run_id IN ({','.join('?' * len(ids))}) ORDER BY id",
                                 ids)
            return [dict(r) for r in cur]

    def source_digests(self, paths: Iterable[str] | None = None) -> dict[str, tuple[int, int, str]]:
        """Photo path -> (size, mtime_ns, SHA-256) remembered; of `paths` only, when given."""
        out: dict[str, tuple[int, int, str]] = {}
        with self._connect() as db:
            for where, params in _chunked("path", paths):
                query = "SELECT path, size, mtime_ns, sha256 FROM sources" + (f" WHERE {where}" if where else "")
                out.update({p: (s, m, h) for p, s, m, h in db.execute(query, params)})
        return out

    def remember_sources(self, entries: Iterable[tuple[str, int, int, str]]) -> None:
        entries = list(entries)
        if not entries:
            return
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR REPLACE INTO sources (path, size, mtime_ns, sha256) VALUES (?, ?, ?, ?)",
                           entries)
            db.execute("COMMIT")


def _chunked(column: str, values: Iterable[str] | None, size: int = 500) -> Iterator[tuple[str, list[str]]]:
    """("column IN (?, ...)", values) per `size` values (SQLite limits a statement's parameters);
    ("", []) once when `values` is None (no filter)."""
    if values is None:
        yield "", []
        return
    values = list(dict.fromkeys(values))
    for i in range(0, len(values), size):
        part = values[i:i + size]
        yield f"{column} IN ({','.join('?' * len(part))})", part
