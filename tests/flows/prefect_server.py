"""A real `prefect server` (SQLite or PostgreSQL), workers and deployments for the operations tests.

Every process started here runs in its own process group and is killed with its children,
even when a test fails. The API is used over plain HTTP, as the UI and other clients use it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from pgcluster import free_port, postgres  # noqa: F401  tests/ is on sys.path; a throwaway PostgreSQL cluster

REPO = Path(__file__).resolve().parent.parent.parent
PREFECT = str(Path(sys.executable).parent / "prefect")
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):  # children left in the group (flow-run processes)
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


class Processes:
    """Background processes of one test, each in its own session, all killed on exit."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path = REPO) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("w")
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.is_file() else ""

    def close(self) -> None:
        for proc in reversed(self.procs):
            _kill(proc)


class Server:
    """A running Prefect API server and the environment that points clients and workers at it."""

    def __init__(self, url: str, env: dict[str, str], procs: Processes) -> None:
        self.url = url
        self.env = env
        self.procs = procs
        self.http = httpx.Client(base_url=url, timeout=30)

    def cli(self, *argv: str, check: bool = True, cwd: Path = REPO, timeout: float = 180) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, *argv] if argv[0].endswith(".py") or argv[0] == "-m" else [PREFECT, *argv],
                              cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{argv} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def worker(self, name: str, pool: str, **extra_env: str) -> subprocess.Popen:
        env = {**self.env, "STAGE_WORKER": name, "PREFECT_WORKER_QUERY_SECONDS": "1", **extra_env}
        return self.procs.start(f"worker-{name}", [PREFECT, "worker", "start", "--pool", pool, "--name", name,
                                                   "--limit", "1"], env)

    def _patient(self, method: str, path: str, read_only: bool = True, **kw: Any) -> httpx.Response:
        """A request that waits out a busy server: SQLite answers 503, or nothing for a while,
        when a loaded CI machine holds its write lock; anything else is returned as it is.
        Only a read is sent again after a timeout (a write may have happened)."""
        for attempt in range(10):
            try:
                r = self.http.request(method, path, **kw)
            except httpx.TimeoutException:
                if attempt == 9 or not read_only:
                    raise
            else:
                if r.status_code != 503 or attempt == 9:
                    return r
            time.sleep(1 + attempt)
        raise AssertionError("unreachable")

    def get(self, path: str) -> httpx.Response:
        return self._patient("GET", path)

    def deployment_id(self, flow: str, name: str) -> str:
        r = self.get(f"/deployments/name/{flow}/{name}")
        r.raise_for_status()
        return r.json()["id"]

    def create_run(self, flow: str, name: str, parameters: dict[str, Any], run_name: str | None = None) -> str:
        body: dict[str, Any] = {"parameters": parameters}
        if run_name:
            body["name"] = run_name
        r = self._patient("POST", f"/deployments/{self.deployment_id(flow, name)}/create_flow_run", read_only=False,
                          json=body)
        assert r.status_code in (200, 201), r.text
        return r.json()["id"]

    def wait(self, run_ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            runs = {i: self.get(f"/flow_runs/{i}").json() for i in run_ids}
            if all(r["state_type"] in FINAL for r in runs.values()):
                return runs
            if time.monotonic() > deadline:
                states = {i: r["state_type"] for i, r in runs.items()}
                workers = "\n".join(self.procs.log(p) for p in ("worker-w1", "worker-w2"))
                raise AssertionError(f"flow runs not finished after {timeout} s: {states}\n{workers}")
            time.sleep(1)

    def artifacts(self, run_id: str) -> list[dict[str, Any]]:
        r = self._patient("POST", "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run_id]}}})
        r.raise_for_status()
        return r.json()

    def logs(self, run_id: str) -> list[str]:
        """Every log line of a flow run (and its tasks), oldest first."""
        lines: list[str] = []
        while True:
            r = self._patient("POST", "/logs/filter", json={
                "logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200, "offset": len(lines),
                "sort": "TIMESTAMP_ASC"})
            r.raise_for_status()
            page = [x["message"] for x in r.json()]
            lines += page
            if len(page) < 200:
                return lines

    def wait_for_logs(self, run_id: str, *needles: str, timeout: float = 60) -> str:
        """The run's logs once they hold every needle (they reach the API in batches, after the run's state)."""
        deadline = time.monotonic() + timeout
        while True:
            text = "\n".join(self.logs(run_id))
            if all(n in text for n in needles) or time.monotonic() > deadline:
                return text
            time.sleep(1)


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90", "PYTHONDONTWRITEBYTECODE": "1",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING", "PREFECT_UI_ENABLED": "true",
    })
    return env


@contextlib.contextmanager
def prefect_server(tmp: Path, database_url: str | None = None) -> Iterator[Server]:
    """Start `prefect server start` on loopback (SQLite in `tmp` unless a database URL is given)."""
    tmp.mkdir(parents=True, exist_ok=True)
    procs = Processes(tmp)
    port = free_port()
    env = base_env(tmp / "prefect-home")
    if database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    url = f"http://127.0.0.1:{port}/api"
    env["PREFECT_UI_API_URL"] = url  # the UI otherwise calls the default port 4200
    try:
        server = procs.start("server", [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env)
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"prefect server did not start:\n{procs.log('server')}")
            time.sleep(0.5)
        client_env = {**env, "PREFECT_API_URL": url}
        client_env.pop("PREFECT_SERVER_DATABASE_CONNECTION_URL", None)
        yield Server(url, client_env, procs)
    finally:
        procs.close()
