"""The local API server's records: a server whose run is gone is stopped, nothing else is touched."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from flows.api_server import APP, sweep_stale


def _sleeper(*extra: str) -> subprocess.Popen:
    """A process that sleeps, with `extra` on its command line (as a server's app name would be)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", *extra])


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait(30)
    return p.pid


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def _record(folder, server: int, parent: int) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{server}.json").write_text(json.dumps({"pid": server, "parent": parent, "port": 1}))


def test_a_server_whose_run_is_gone_is_stopped_and_its_record_removed(tmp_path, procs):
    orphan = _sleeper(APP)
    procs.append(orphan)
    _record(tmp_path, orphan.pid, _dead_pid())
    assert sweep_stale(tmp_path) == [orphan.pid]
    assert orphan.wait(10) is not None
    assert not list(tmp_path.iterdir())


def test_a_server_whose_run_is_alive_is_left_alone(tmp_path, procs):
    run, server = _sleeper(), _sleeper(APP)
    procs += [run, server]
    _record(tmp_path, server.pid, run.pid)
    assert sweep_stale(tmp_path) == []
    time.sleep(0.2)
    assert server.poll() is None and (tmp_path / f"{server.pid}.json").is_file()


def test_a_recorded_pid_that_is_no_api_server_is_never_signalled(tmp_path, procs):
    """The pid may have been reused by another program since the record was written."""
    other = _sleeper("something-else")
    procs.append(other)
    _record(tmp_path, other.pid, _dead_pid())
    (tmp_path / "garbled.json").write_text("{not json")
    assert sweep_stale(tmp_path) == []
    time.sleep(0.2)
    assert other.poll() is None
    assert not list(tmp_path.iterdir())  # both records were stale: removed
