"""Run state in PostgreSQL (psycopg 3): `stage_*` tables keyed by output location, advisory run locks."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ops.ledger import EVENT_COLUMNS, RUN_COLUMNS, RUN_STATES, Current, event_rows, now_text, worker_label
from ops.runlock import RunLockedError
from ops.state.base import Claims, ReviewDecisions, RunState
from stages.errors import StagingError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS stage_events (
    id BIGSERIAL PRIMARY KEY, location TEXT NOT NULL, at TEXT NOT NULL, run_id TEXT NOT NULL, flow_run_id TEXT,
    worker TEXT, host TEXT NOT NULL, pid INTEGER NOT NULL, sku TEXT NOT NULL, row INTEGER, cache_key TEXT,
    status TEXT NOT NULL, verdict TEXT, reasons TEXT, record TEXT, output TEXT, error TEXT, note TEXT,
    timings_ms TEXT, cost DOUBLE PRECISION, currency TEXT);
CREATE INDEX IF NOT EXISTS stage_events_sku ON stage_events (location, sku, id);
CREATE INDEX IF NOT EXISTS stage_events_run ON stage_events (location, run_id);
CREATE TABLE IF NOT EXISTS stage_runs (
    location TEXT NOT NULL, run_id TEXT NOT NULL, flow_run_id TEXT, worker TEXT, host TEXT NOT NULL,
    pid INTEGER NOT NULL, started_at TEXT NOT NULL, ended_at TEXT, state TEXT NOT NULL, reason TEXT,
    not_done INTEGER, note TEXT, cost DOUBLE PRECISION, currency TEXT, PRIMARY KEY (location, run_id));
CREATE TABLE IF NOT EXISTS stage_sources (
    location TEXT NOT NULL, path TEXT NOT NULL, size BIGINT NOT NULL, mtime_ns BIGINT NOT NULL,
    sha256 TEXT NOT NULL, PRIMARY KEY (location, path));
CREATE TABLE IF NOT EXISTS stage_claims (
    location TEXT NOT NULL, sku TEXT NOT NULL, holder TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    worker TEXT, claimed_at TIMESTAMPTZ NOT NULL, expires_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (location, sku));
CREATE TABLE IF NOT EXISTS stage_review (
    location TEXT NOT NULL, slug TEXT NOT NULL, entry JSONB NOT NULL, PRIMARY KEY (location, slug));
"""
_SCHEMA_LOCK = 0x5354414745  # advisory lock taken while the tables are created ("STAGE")
_SINCE = "%Y%m%dT%H%M%SZ"  # a run lock holder's start, compact: application_name holds 63 bytes
POOL_SIZE = 4  # idle connections kept per database, shared by a run's threads
CONNECT_TIMEOUT_S = 10
# TCP keepalives: a held run lock is released soon after its holder's machine vanishes
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


def redact(url: str) -> str:
    """The URL without its password (for messages)."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(an unparsable database URL)"
    host, db = info.get("host") or "localhost", info.get("dbname") or ""
    port = f":{info['port']}" if info.get("port") else ""
    user = f"{info['user']}@" if info.get("user") else ""
    return f"postgresql://{user}{host}{port}/{db}"


def _lock_key(*parts: str) -> int:
    """A signed 64-bit advisory lock key for a location (and a shared run's name)."""
    digest = hashlib.sha256("\0".join(("stage-run-lock", *parts)).encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class _Pool:
    """A few autocommit connections to one database, handed to one thread at a time."""

    _ready: set[str] = set()  # URLs whose tables exist (created once per process)

    def __init__(self, url: str) -> None:
        self.url = url
        self.idle: list[psycopg.Connection] = []
        self.guard = threading.Lock()

    def connect(self, **extra: Any) -> psycopg.Connection:
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, **KEEPALIVE,
                                   **extra)
        except psycopg.Error as exc:
            raise StagingError(f"cannot reach the run-state database {redact(self.url)}: "
                               f"{str(exc).strip() or type(exc).__name__}") from None

    @contextlib.contextmanager
    def conn(self) -> Iterator[psycopg.Connection]:
        with self.guard:
            db = self.idle.pop() if self.idle else None
        if db is None or db.closed:
            db = self.connect()
        if self.url not in self._ready:
            with db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))  # one creator at a time
                db.execute(_SCHEMA)
            self._ready.add(self.url)
        try:
            yield db
        except BaseException:
            db.close()  # it may be mid-statement: never reuse it
            raise
        with self.guard:
            keep = not db.closed and len(self.idle) < POOL_SIZE and db.info.transaction_status == 0
            if keep:
                self.idle.append(db)
        if not keep:
            db.close()


class PgLedger:
    """The ledger of one location in `stage_events`, `stage_runs` and `stage_sources`; the same
    methods, columns and dicts as `ops.ledger.Ledger`."""

    def __init__(self, pool: _Pool, location: str) -> None:
        self.pool, self.location = pool, location

    def append(self, run_id: str, results: Iterable[dict[str, Any]], keys: dict[str, str] | None = None,
               flow_run_id: str | None = None, note: str | None = None) -> int:
        rows = [(self.location, *r) for r in event_rows(run_id, results, keys, flow_run_id, note)]
        if not rows:
            return 0
        cols = ", ".join(EVENT_COLUMNS)
        with self.pool.conn() as db, db.transaction(), db.cursor() as cur:
            cur.executemany(f"INSERT INTO stage_events (location, {cols}) VALUES (%s{', %s' * len(EVENT_COLUMNS)})",
                            rows)
        return len(rows)

    def start_run(self, run_id: str, flow_run_id: str | None = None, note: str | None = None) -> None:
        with self.pool.conn() as db:
            db.execute(
                "INSERT INTO stage_runs (location, run_id, flow_run_id, worker, host, pid, started_at, state, note)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, 'running', %s) ON CONFLICT (location, run_id) DO UPDATE SET"
                " flow_run_id = EXCLUDED.flow_run_id, worker = EXCLUDED.worker, host = EXCLUDED.host,"
                " pid = EXCLUDED.pid, started_at = EXCLUDED.started_at, ended_at = NULL, state = 'running',"
                " reason = NULL, not_done = NULL, note = EXCLUDED.note, cost = NULL, currency = NULL",
                (self.location, run_id, flow_run_id, worker_label(), socket.gethostname(), os.getpid(), now_text(),
                 note))

    def end_run(self, run_id: str, state: str, reason: str | None = None, not_done: int = 0,
                cost: float | None = None, currency: str | None = None) -> None:
        if state not in RUN_STATES[1:]:
            raise ValueError(f"run state {state!r}: must be one of {RUN_STATES[1:]}")
        with self.pool.conn() as db:
            db.execute("UPDATE stage_runs SET ended_at = %s, state = %s, reason = %s, not_done = %s, cost = %s,"
                       " currency = %s WHERE location = %s AND run_id = %s",
                       (now_text(), state, reason, not_done, cost, currency, self.location, run_id))

    def _dicts(self, query: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        with self.pool.conn() as db, db.cursor(row_factory=psycopg.rows.dict_row) as cur:
            return list(cur.execute(query, params))

    def runs(self) -> list[dict[str, Any]]:
        return self._dicts(f"SELECT {', '.join(RUN_COLUMNS)} FROM stage_runs WHERE location = %s"
                           " ORDER BY started_at", (self.location,))

    def current(self, skus: Iterable[str] | None = None) -> dict[str, Current]:
        out: dict[str, Current] = {}
        wanted, params = ("", (self.location,)) if skus is None else (" AND sku = ANY(%s)", (self.location, list(skus)))
        with self.pool.conn() as db:
            rows = db.execute(
                "SELECT DISTINCT ON (sku) sku, cache_key, status, verdict, reasons, record, output, run_id"
                f" FROM stage_events WHERE location = %s AND status = 'ok'{wanted} ORDER BY sku, id DESC", params)
            for sku, key, status, verdict, reasons, record, output, run_id in rows:
                out[sku] = Current(sku, key, status, verdict, json.loads(reasons or "[]"), record, output, run_id)
        return out

    def events(self, run_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        cols = f"id, {', '.join(EVENT_COLUMNS)}"
        if run_ids is None:
            return self._dicts(f"SELECT {cols} FROM stage_events WHERE location = %s ORDER BY id", (self.location,))
        return self._dicts(f"SELECT {cols} FROM stage_events WHERE location = %s AND run_id = ANY(%s) ORDER BY id",
                           (self.location, list(run_ids)))

    def source_digests(self, paths: Iterable[str] | None = None) -> dict[str, tuple[int, int, str]]:
        wanted, params = ("", (self.location,)) if paths is None else (" AND path = ANY(%s)", (self.location, list(paths)))
        with self.pool.conn() as db:
            rows = db.execute(f"SELECT path, size, mtime_ns, sha256 FROM stage_sources WHERE location = %s{wanted}",
                              params)
            return {p: (s, m, h) for p, s, m, h in rows}

    def remember_sources(self, entries: Iterable[tuple[str, int, int, str]]) -> None:
        rows = [(self.location, *e) for e in entries]
        if not rows:
            return
        with self.pool.conn() as db, db.transaction(), db.cursor() as cur:
            cur.executemany("INSERT INTO stage_sources (location, path, size, mtime_ns, sha256)"
                            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (location, path) DO UPDATE SET"
                            " size = EXCLUDED.size, mtime_ns = EXCLUDED.mtime_ns, sha256 = EXCLUDED.sha256", rows)


class PgClaims(Claims):
    """A row per claimed SKU in `stage_claims` with a lease: a heartbeat thread renews it every third
    of the lease while the worker works, and removes it when the work ends. A worker that dies (or
    loses the database) stops renewing; once its lease has lapsed another worker may take the SKU."""

    def __init__(self, pool: _Pool, location: str, lease_s: float) -> None:
        self.pool, self.location, self.lease_s = pool, location, lease_s

    @property
    def lapse_s(self) -> float:  # a dead holder's claim lapses with its lease
        return self.lease_s

    @contextlib.contextmanager
    def hold(self, sku: str) -> Iterator[bool]:
        token = uuid.uuid4().hex
        with self.pool.conn() as db:
            got = db.execute(
                "INSERT INTO stage_claims (location, sku, holder, host, pid, worker, claimed_at, expires_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, now(), now() + make_interval(secs => %s))"
                " ON CONFLICT (location, sku) DO UPDATE SET holder = EXCLUDED.holder, host = EXCLUDED.host,"
                " pid = EXCLUDED.pid, worker = EXCLUDED.worker, claimed_at = EXCLUDED.claimed_at,"
                " expires_at = EXCLUDED.expires_at WHERE stage_claims.expires_at < now() RETURNING holder",
                (self.location, sku, token, socket.gethostname(), os.getpid(), worker_label(), self.lease_s),
            ).fetchone()
        if got is None:
            yield False
            return
        stop = threading.Event()
        beat = threading.Thread(target=self._renew, args=(sku, token, stop), name=f"claim-{sku[:40]}", daemon=True)
        beat.start()
        try:
            yield True
        finally:
            stop.set()
            beat.join()
            with self.pool.conn() as db:
                db.execute("DELETE FROM stage_claims WHERE location = %s AND sku = %s AND holder = %s",
                           (self.location, sku, token))

    def _renew(self, sku: str, token: str, stop: threading.Event) -> None:
        """Extend the lease every third of it until `stop`; a failed renewal is logged and tried again."""
        while not stop.wait(self.lease_s / 3):
            try:
                with self.pool.conn() as db:
                    kept = db.execute(
                        "UPDATE stage_claims SET expires_at = now() + make_interval(secs => %s)"
                        " WHERE location = %s AND sku = %s AND holder = %s",
                        (self.lease_s, self.location, sku, token)).rowcount
                if not kept:
                    log.warning("claim on SKU %r lapsed and was taken by another worker", sku)
                    return
            except Exception as exc:  # the database is away for a moment: the lease still runs
                log.warning("could not renew the claim on SKU %r: %s", sku, exc)


class PgDecisions(ReviewDecisions):
    """Decisions in `stage_review` (one JSONB entry per location and slug)."""

    def __init__(self, pool: _Pool, location: str) -> None:
        self.pool, self.location = pool, location

    def all(self) -> dict[str, dict[str, Any]]:
        with self.pool.conn() as db:
            return dict(db.execute("SELECT slug, entry FROM stage_review WHERE location = %s", (self.location,)))

    def get(self, slug: str) -> dict[str, Any] | None:
        with self.pool.conn() as db:
            row = db.execute("SELECT entry FROM stage_review WHERE location = %s AND slug = %s",
                             (self.location, slug)).fetchone()
        return row[0] if row else None

    def decide_all(self, entries: Mapping[str, dict[str, Any]]) -> None:
        if not entries:
            return
        with self.pool.conn() as db, db.transaction(), db.cursor() as cur:
            cur.executemany("INSERT INTO stage_review (location, slug, entry) VALUES (%s, %s, %s)"
                            " ON CONFLICT (location, slug) DO UPDATE SET entry = EXCLUDED.entry",
                            [(self.location, slug, Jsonb(entry)) for slug, entry in entries.items()])

    def reset_all(self, slugs: Iterable[str]) -> list[str]:
        wanted = list(dict.fromkeys(slugs))
        with self.pool.conn() as db:
            gone = {r[0] for r in db.execute("DELETE FROM stage_review WHERE location = %s AND slug = ANY(%s)"
                                              " RETURNING slug", (self.location, wanted))}
        return [s for s in wanted if s in gone]


class PostgresState(RunState):
    """The state of one location in a PostgreSQL database shared by every worker."""

    backend = "postgres"
    _pools: dict[str, _Pool] = {}
    _guard = threading.Lock()

    def __init__(self, location: str, url: str, lease_s: float) -> None:
        super().__init__(location)
        with self._guard:  # per process: a forked child must not share its parent's sockets
            self.pool = self._pools.setdefault(f"{os.getpid()} {url}", _Pool(url))
        self._ledger = PgLedger(self.pool, location)
        self._claims = PgClaims(self.pool, location, lease_s)
        self._review = PgDecisions(self.pool, location)

    @property
    def ledger(self) -> PgLedger:
        return self._ledger

    @property
    def claims(self) -> PgClaims:
        return self._claims

    @property
    def review(self) -> PgDecisions:
        return self._review

    @contextlib.contextmanager
    def run_lock(self, shared: str | None = None) -> Iterator[None]:
        """Advisory locks on a connection of its own, held for the block: the server releases them
        when the connection ends, so a killed holder (or one whose machine vanished, after the TCP
        keepalive gives up) leaves no stale lock. The holder names itself in `application_name`
        (pid, host, start), which a refused run reads back to say who holds the location."""
        since = datetime.now(UTC).strftime(_SINCE)
        label = f"stage pid={os.getpid()} since={since} host={socket.gethostname()}"[:63]  # PostgreSQL's limit
        db = self.pool.connect(application_name=label)
        try:
            key = _lock_key(self.location)
            if not self._try(db, key, shared=shared is not None):
                raise RunLockedError(f"output location {self.location} is in use by another run "
                                     f"({self._holder(db, key)}); wait for it to finish or choose another --out")
            if shared is not None:
                own = _lock_key(self.location, shared)
                if not self._try(db, own, shared=False):
                    raise RunLockedError(f"{shared} of output location {self.location} is already running "
                                         f"({self._holder(db, own)})")
            yield
        finally:
            # released at once: a closed connection's locks go only when its server process has
            # ended, a moment later, and a run started right after this one would find them held
            with contextlib.suppress(psycopg.Error):
                db.execute("SELECT pg_advisory_unlock_all()")
            db.close()

    @staticmethod
    def _try(db: psycopg.Connection, key: int, shared: bool) -> bool:
        fn = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        return bool(db.execute(f"SELECT {fn}(%s)", (key,)).fetchone()[0])

    @staticmethod
    def _holder(db: psycopg.Connection, key: int) -> str:
        """Who holds advisory lock `key`, from the holder's application_name."""
        unsigned = key & 0xFFFFFFFFFFFFFFFF
        row = db.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::bigint::oid"
            " AND l.objid = %s::bigint::oid AND l.objsubid = 1 AND l.pid <> pg_backend_pid() LIMIT 1",
            (unsigned >> 32, unsigned & 0xFFFFFFFF)).fetchone()
        fields = dict(p.split("=", 1) for p in (row[0] if row else "").split() if "=" in p)
        if "pid" not in fields:
            return "a process that has not named itself"
        where = f" on host {fields['host']}" if fields.get("host") else ""
        try:
            since = datetime.strptime(fields.get("since", ""), _SINCE).replace(tzinfo=UTC).isoformat()
        except ValueError:
            since = "?"
        return f"pid {fields['pid']}{where}, running since {since}"

    def has_ledger(self) -> bool:
        with self.pool.conn() as db:
            return db.execute("SELECT EXISTS (SELECT 1 FROM stage_runs WHERE location = %s)",
                              (self.location,)).fetchone()[0]

    def describe(self) -> str:
        return f"PostgreSQL {redact(self.pool.url)} (location {self.location})"

    def check(self) -> None:
        with self.pool.conn() as db:
            db.execute("SELECT 1")
