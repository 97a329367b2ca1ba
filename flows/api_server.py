"""The local Prefect API server of a command-line run, tied to the run's process.

Without PREFECT_API_URL, Prefect starts a temporary API server the first time a flow runs and
stops it at interpreter exit. A run ended by a signal or killed never gets there, and its server
(about 230 MB) keeps running. `local_api()` starts the same server itself, tied to the run:
the kernel sends it SIGTERM when the run's process dies for any reason (Linux's parent-death
signal), it runs in its own session (Ctrl-C in the terminal reaches the run, which still needs
its API to report), and a record of it lets the next run stop one whose run is gone (other
systems, or a run killed in the instant before the parent-death signal was armed).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from ops.libc import libc

APP = "prefect.server.api.server:create_app"
RECORDS = "stage-api-servers"  # under PREFECT_HOME: one JSON file per server started here
_PR_SET_PDEATHSIG = 1


class ApiServerError(RuntimeError):
    """The local API server did not start."""


def _die_with(parent: int, lib: Any) -> Any:
    """preexec_fn: SIGTERM this child when `parent` dies (no Python objects made after the fork);
    `lib` is the C library (`ops.libc.libc()`), None where there is none to ask."""

    def arm() -> None:
        if lib is not None:
            lib.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_api_server(pid: int) -> bool:
    """Whether `pid` runs Prefect's API server app (never signal a recycled pid of something else)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        try:
            cmdline = subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True,
                                     timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return False
    return APP in cmdline


def _stop(proc_pid: int, wait_s: float = 5.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc_pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and _alive(proc_pid):
        time.sleep(0.1)
    if _alive(proc_pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc_pid, signal.SIGKILL)


def sweep_stale(records: Path) -> list[int]:
    """Stop the API servers recorded in `records` whose run is gone; returns their pids."""
    stopped: list[int] = []
    for path in sorted(records.glob("*.json")) if records.is_dir() else []:
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            pid, parent = int(info["pid"]), int(info["parent"])
        except (OSError, ValueError, KeyError, TypeError):
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        if _alive(parent) and parent != os.getpid():
            continue  # its run is still going
        if _alive(pid) and _is_api_server(pid):
            _stop(pid)
            stopped.append(pid)
        with contextlib.suppress(OSError):
            path.unlink()
    return stopped


class LocalApi:
    """One API server process for this run (`start`, `url`, `stop`)."""

    def __init__(self, records: Path, startup_s: float) -> None:
        self.records = records
        self.startup_s = startup_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        import prefect
        from prefect.settings import get_current_settings

        env = {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True),
               "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        env.pop("PREFECT_API_URL", None)
        argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory", APP,
                "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"]
        return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=_die_with(os.getpid(), libc()))

    def start(self) -> str:
        sweep_stale(self.records)
        for _attempt in range(3):  # a port taken between choosing and binding: choose again
            port = _free_port()
            self.proc = self._spawn(port)
            self._remember(port)
            self.url = f"http://127.0.0.1:{port}/api"
            if self._wait_healthy():
                return self.url
            if self.proc.poll() is None:
                break
            self.stop()
        code = self.proc.poll() if self.proc else None
        self.stop()
        raise ApiServerError(f"the local Prefect API server did not answer within {self.startup_s:g} s"
                             + (f" (it exited with code {code})" if code is not None else "")
                             + ": raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or run a server "
                             "(`prefect server start`) and set PREFECT_API_URL")

    def _wait_healthy(self) -> bool:
        deadline = time.monotonic() + self.startup_s
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < deadline:
                if self.proc is None or self.proc.poll() is not None:
                    return False
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.url}/health").status_code == 200:
                        return True
                time.sleep(0.1)
        return False

    def _remember(self, port: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(OSError):
            self.records.mkdir(parents=True, exist_ok=True)
            (self.records / f"{self.proc.pid}.json").write_text(
                json.dumps({"pid": self.proc.pid, "parent": os.getpid(), "port": port}), encoding="utf-8")

    def stop(self) -> None:
        if self.proc is None:
            return
        _stop(self.proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        with contextlib.suppress(OSError):
            (self.records / f"{self.proc.pid}.json").unlink()
        self.proc = None


def _drain_prefect(timeout_s: float = 10.0) -> None:
    """Send Prefect's queued logs and events while the server is still there to take them."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            service.drain_all(timeout=timeout_s)


@contextlib.contextmanager
def local_api() -> Iterator[str | None]:
    """For the block, point Prefect at an API server tied to this process, unless PREFECT_API_URL
    names one; yields the URL of the server started (None when one was configured).

    The URL goes into the environment and Prefect's global settings, so that Prefect's
    background threads (logs, events), which do not inherit a settings context, use it too.
    """
    from prefect.context import refresh_global_settings_context
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url:
        yield None
        return
    startup = float(settings.server.ephemeral.startup_timeout_seconds)
    server = LocalApi(Path(settings.home) / RECORDS, startup)
    try:
        url = server.start()
        os.environ["PREFECT_API_URL"] = url
        refresh_global_settings_context()
        yield url
    finally:
        _drain_prefect()
        if os.environ.get("PREFECT_API_URL") == server.url:
            del os.environ["PREFECT_API_URL"]
            refresh_global_settings_context()
        server.stop()
