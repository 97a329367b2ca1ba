"""Run-state test helpers: a state per backend (the PostgreSQL cluster is `postgres_url`, tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ops.config import StateOptions
from ops.state import RunState, open_state

REPO = Path(__file__).resolve().parents[3]
LEASE_S = 1.0  # short, so that a lapsed claim is seen within the test


def backend_env(backend: str, request) -> dict[str, str]:
    """The environment that chooses `backend` (postgres: the session's cluster)."""
    if backend == "files":
        return {}
    return {"STAGE_DATABASE_URL": request.getfixturevalue("postgres_url")}


BACKENDS = ["files", pytest.param("postgres", marks=pytest.mark.server)]


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def env(backend, request) -> dict[str, str]:
    return backend_env(backend, request)


@pytest.fixture
def state(backend, env, tmp_path) -> RunState:
    """A fresh output location's state (each test its own location, so one database serves them all)."""
    opened = open_state(str((tmp_path / "out").resolve()), StateOptions(claim_lease_s=LEASE_S), env)
    assert opened.backend == backend
    return opened


def start_holder(location: str, env: dict[str, str], code: str) -> subprocess.Popen:
    """A second process that opens `location`'s state as `state` and runs `code`; it prints
    `ready` once `code` has run up to its first print."""
    script = textwrap.dedent(f"""
        import sys, time
        from ops.config import StateOptions
        from ops.state import open_state
        state = open_state(sys.argv[1], StateOptions(claim_lease_s={LEASE_S}))
    """) + textwrap.dedent(code)
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **env}
    if not env:
        full_env.pop("STAGE_DATABASE_URL", None)
    return subprocess.Popen([sys.executable, "-c", script, location], env=full_env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_ready(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        raise AssertionError(f"holder did not start: {line!r} {proc.stderr.read()[-2000:]}")
