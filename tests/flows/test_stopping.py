"""Stopping a run from outside: SIGTERM, Ctrl-C, a second signal, the stop bound, SIGKILL.

Each run is the real `stage run` command in its own process, with every product's staging
made slower (tests/flows/slow_stage.py) so that signals land mid-run. A marker in the run's
environment, which every process it starts inherits, finds what it left in the process table.
Cancellation through a Prefect server is in test_deployments.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from flows.exitcodes import EXIT_OK, EXIT_STOPPED
from runs import HERE, PROC_TABLE, Run, ledger_rows, no_process_left, temps  # tests/flows is on sys.path

pytestmark = pytest.mark.skipif(not PROC_TABLE, reason="finding a run's processes needs Linux's /proc")

@pytest.fixture
def run(tmp_path, images, dev_keys):
    runs: list[Run] = []

    def make(skus: int, stop_timeout_s: float = 60.0) -> Run:
        runs.append(Run(tmp_path, images, skus, stop_timeout_s))
        return runs[-1]

    yield make
    for r in runs:
        r.cleanup()


def _check_stopped(r: Run, reason: str, code: int) -> dict:
    assert code == EXIT_STOPPED, r.text()
    assert f"stopped ({reason}" in r.text() and "SKU(s) not done, listed in the report" in r.text()
    summary = r.summary()
    done = set(r.done())
    assert summary["state"] == "stopped" and summary["stop"]["reason"].startswith(reason)
    assert set(summary["stop"]["not_done"]) == set(r.skus) - done and summary["stop"]["not_done"]
    status = {x["sku"]: x["status"] for x in summary["results"]}
    assert {s for s, st in status.items() if st == "stopped"} == set(summary["stop"]["not_done"])
    for sku in done:  # finished products are complete: record and image
        assert status[sku] == "ok"
        record = next(r.out.glob(f"products/{sku}-*/{sku}-*.json"))
        assert (record.parent / json.loads(record.read_text())["output"]).is_file()
    for sku in summary["stop"]["not_done"]:  # nothing of a product that was not done
        assert not list(r.out.glob(f"products/{sku}-*/*.json"))
    assert "stopped" in (r.out / "runs" / summary["run_id"] / "report.html").read_text()
    assert ledger_rows(r.out, "SELECT state, reason, not_done FROM runs") == [
        ("stopped", summary["stop"]["reason"], len(summary["stop"]["not_done"]))]
    assert not temps(r.out) and not list((r.out / ".work").glob("*.jsonl"))
    assert no_process_left(r.mark) == [], "processes of the stopped run are still running"
    return summary


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_signal_stops_new_products_lets_those_in_progress_finish_and_reports_the_rest(run, sig):
    r = run(24)
    r.start(slow_s=1.5)
    r.wait_until("two finished products", lambda: len(r.done()) >= 2)
    if sig == signal.SIGINT:
        os.killpg(r.proc.pid, sig)  # Ctrl-C: the terminal signals the whole foreground process group
    else:
        r.proc.send_signal(sig)  # a scheduler or `kill`: the run's process only
    t0 = time.monotonic()
    code = r.finish(timeout=90)
    assert time.monotonic() - t0 < 30, "products in progress take ~2 s: the stop should not wait longer"
    summary = _check_stopped(r, sig.name, code)
    assert summary["stop"]["abandoned"] == []  # the 60 s bound left every product in progress time to finish
    if sig == signal.SIGTERM:  # the same command again stages exactly the SKUs not done
        again = subprocess.run([sys.executable, "-m", "flows.cli", *r.argv()], cwd=r.tmp, capture_output=True,
                               text=True, timeout=300, env={**r.env(0), "PYTHONPATH": str(HERE.parent.parent)})
        assert again.returncode == EXIT_OK, again.stderr[-3000:]
        events = ledger_rows(r.out, "SELECT sku, status FROM events")
        assert sorted(s for s, _ in events) == sorted(r.skus) and {st for _, st in events} == {"ok"}
        assert [x[0] for x in ledger_rows(r.out, "SELECT state FROM runs ORDER BY started_at")] == ["stopped", "completed"]
        assert no_process_left(r.mark) == []


@pytest.mark.parametrize("how", ["second signal", "stop bound"])
def test_a_second_signal_or_the_bound_abandons_products_in_progress_cleanly(run, how):
    r = run(8, stop_timeout_s=60.0 if how == "second signal" else 2.0)
    r.start(slow_s=60)  # each product is in a 60 s call when the signal comes
    r.wait_until("the run to start staging", r.started_staging)
    time.sleep(3)  # both batch threads are inside their first product
    r.proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    if how == "second signal":
        time.sleep(1)
        r.proc.send_signal(signal.SIGTERM)
    code = r.finish(timeout=90)
    assert time.monotonic() - t0 < 20, "abandoning must not wait for the 60 s products"
    summary = _check_stopped(r, "SIGTERM", code)
    assert r.done() == []
    assert summary["stop"]["abandoned"] and set(summary["stop"]["abandoned"]) <= set(r.skus)
    if how == "second signal":
        assert summary["stop"]["reason"] == "SIGTERM; second SIGTERM: at once"
    else:
        assert summary["stop"]["reason"] == "SIGTERM" and summary["stop"]["bound_s"] == 2.0
    rows = {x["sku"]: x for x in summary["results"]}
    assert all(rows[s]["error"].startswith("abandoned in progress") for s in summary["stop"]["abandoned"])


def test_the_task_runner_forgets_each_task_once_it_has_ended():
    """Prefect's runner would keep every task's cancel event until the flow run ends."""
    from prefect import flow, task
    from prefect.context import FlowRunContext

    from flows.stopping import StoppableTaskRunner

    @task
    def double(i: int) -> int:
        return 2 * i

    @flow(task_runner=StoppableTaskRunner(max_workers=2))
    def many() -> tuple[list[int], int, int]:
        runner = FlowRunContext.get().task_runner
        futures = [double.submit(i) for i in range(6)]
        held = len(runner._cancel_events)
        values = [f.result() for f in futures]
        deadline = time.monotonic() + 10  # the done callbacks run just after the results are set
        while runner._cancel_events and time.monotonic() < deadline:
            time.sleep(0.05)
        return values, held, len(runner._cancel_events)

    values, held, left = many()
    assert values == [0, 2, 4, 6, 8, 10] and held >= 1 and left == 0
