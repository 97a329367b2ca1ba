"""Run state of an output location (ledger, run lock, SKU claims, review decisions), in files or PostgreSQL."""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ops.config import StateOptions
from ops.state.base import Claims, LedgerStore, ReviewDecisions, ReviewStateError, RunLockedError, RunState
from stages.errors import StagingError

if TYPE_CHECKING:
    from ops.context import RunContext

__all__ = ["BACKENDS", "Claims", "LedgerStore", "ReviewDecisions", "ReviewStateError", "RunLockedError",
            "RunState", "backend_name",
           "open_state", "state_for"]

# backend name -> "module:class"; imported on first use (psycopg only when PostgreSQL is chosen)
BACKENDS = {
    "files": "ops.state.files:FilesState",
    "postgres": "ops.state.postgres:PostgresState",
}

_OPEN: dict[tuple[str, str, str, float, int], RunState] = {}
_GUARD = threading.Lock()


def backend_name(options: StateOptions, environ: Mapping[str, str] | None = None) -> str:
    """`postgres` when the variable `options.database_url_env` names holds a URL, else `files`."""
    env = os.environ if environ is None else environ
    return "postgres" if env.get(options.database_url_env, "").strip() else "files"


def open_state(location: str | os.PathLike[str], options: StateOptions = StateOptions(),
               environ: Mapping[str, str] | None = None) -> RunState:
    """The run state of `location` (a resolved local folder path or an output URL), one per process
    per backend and location (and per database URL and lease), shared by the run's threads.

    PostgreSQL when the environment variable `[state] database_url_env` names (default
    STAGE_DATABASE_URL) is set: the URL holds a password, so it is read from the environment only,
    never from config.toml. Unset: the files beside a local output folder (SQLite ledger, flock
    locks, review JSON). An output URL (s3://, gs://) needs the database: several machines write
    it, and files beside it cannot be locked.
    """
    env = os.environ if environ is None else environ
    where = str(location)
    name = backend_name(options, env)
    if name == "files" and "://" in where:
        raise StagingError(f"output {where} is not a local folder: its run state needs PostgreSQL; set "
                           f"{options.database_url_env} to the database URL (postgresql://user:password@host/db)")
    url = env.get(options.database_url_env, "").strip() if name == "postgres" else ""
    key = (name, where, url, options.claim_lease_s, os.getpid())
    with _GUARD:
        state = _OPEN.get(key)
        if state is None:
            module, cls = BACKENDS[name].split(":")
            kind = getattr(importlib.import_module(module), cls)
            state = kind(where, url, options.claim_lease_s) if name == "postgres" else kind(where)
            _OPEN[key] = state
    return state


def state_for(ctx: RunContext) -> RunState:
    """The run state of a run's context: its output location under its `[state]` options."""
    return open_state(ctx.output_url or str(ctx.out_root), ctx.state)
