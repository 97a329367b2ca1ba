"""Stopping a run: SIGTERM, SIGINT and Prefect cancellations become a stop request (`ops.stop`).

README "Stopping a run" describes what each does for a user.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from prefect.states import Cancelled, State
from prefect.task_runners import ThreadPoolTaskRunner

from flows.exitcodes import EXIT_STOPPED
from ops.stop import STOP

# Prefect's worker (prefect.runner's CancellationManager) kills a cancelled flow run's process 30 s
# after its SIGTERM. A run cancelled in Prefect therefore gives its products in progress at most
# CANCEL_BOUND_S, which leaves time for open publications (PUBLISH_GRACE_S) and the report.
WORKER_GRACE_S = 30.0
PUBLISH_GRACE_S = 10.0
CANCEL_BOUND_S = WORKER_GRACE_S - PUBLISH_GRACE_S - 5.0
CANCEL_POLL_S = 5.0  # how often a run asks the API whether it was cancelled

SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), signal.SIGINT) if s is not None)


def _handler(bound_s: float) -> Any:
    def on_signal(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if STOP.requested:  # a second signal: stop at once
            STOP.request(f"second {name}: at once", bound_s, now=True)
        else:
            STOP.request(name, bound_s)

    return on_signal


@contextlib.contextmanager
def stop_on_signals(bound_s: float) -> Iterator[None]:
    """For the block, SIGTERM and SIGINT ask the run to stop within `bound_s`; a second one, at once.

    Replaces Prefect's own SIGTERM handler (which ends a flow run as Crashed at once) and
    Python's KeyboardInterrupt while the block runs, then puts them back. Signals reach only
    the main thread: called elsewhere, it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handler(bound_s)) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _cancelling(flow_run_id: str) -> bool:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run_id).state
    return bool(state and state.is_cancelling())


def note_cancellation(flow_run_id: str | None) -> None:
    """After a signal, ask once whether it came from a cancellation in Prefect (a worker sends SIGTERM
    for one): then the stop says so, and takes the shorter bound a worker allows."""
    info = STOP.request_info
    if not flow_run_id or info is None or "cancelled in Prefect" in info.reason:
        return
    with contextlib.suppress(Exception):  # no answer: the signal is reason enough
        if _cancelling(flow_run_id):
            STOP.request("cancelled in Prefect", min(info.bound_s, CANCEL_BOUND_S))


@contextlib.contextmanager
def stop_on_cancel(flow_run_id: str | None, bound_s: float) -> Iterator[None]:
    """For the block, a cancellation of the flow run in Prefect (UI, API, CLI) asks the run to stop.

    A deployment's worker also sends SIGTERM; a run started from the command line against a
    Prefect server has only this: a thread asks the API for the run's state every few seconds.
    """
    if not flow_run_id:
        yield
        return
    done = threading.Event()
    log = logging.getLogger("flows.stopping")

    def watch() -> None:
        failures = 0
        while not done.wait(CANCEL_POLL_S):
            try:
                cancelling = _cancelling(flow_run_id)
                failures = 0
            except Exception as exc:  # the API may be busy or restarting: ask again next time
                failures += 1
                if failures == 3:
                    log.warning("cannot read this run's state from the Prefect API: %s: %s", type(exc).__name__, exc)
                continue
            if cancelling:
                STOP.request("cancelled in Prefect", min(bound_s, CANCEL_BOUND_S))
                return

    thread = threading.Thread(target=watch, name="stop-on-cancel", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()


@contextlib.contextmanager
def stopping(flow_run_id: str | None, bound_s: float) -> Iterator[None]:
    """A flow's body: signals and cancellations stop it; the stop state is cleared afterwards.

    When the run abandoned products (their threads are still busy), the process is made to exit
    once it has finished everything else (`_exit_without_waiting`), instead of waiting for them.
    """
    with stop_on_signals(bound_s), stop_on_cancel(flow_run_id, bound_s):
        try:
            yield
        finally:
            if STOP.closed and STOP.in_progress():
                _exit_without_waiting()
            else:
                STOP.reset()


def _exit_without_waiting() -> None:
    """At interpreter exit, skip joining the threads of abandoned products: exit with EXIT_STOPPED.

    Python joins every worker thread before it exits; a product in a long native call (a
    diffusion model's denoising loop) would hold the process for as long as it takes. The run's
    report and state are written by then; the abandoned products have written nothing (the run
    closed their publications, `ops.stop`). `threading._register_atexit` runs before those joins
    (concurrent.futures uses it for the same reason); where it is missing the process waits.
    """
    register = getattr(threading, "_register_atexit", None)
    if register is None:
        return

    def leave() -> None:
        logging.shutdown()  # flushes Prefect's API log handler too
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(EXIT_STOPPED)

    with contextlib.suppress(RuntimeError):  # already shutting down
        register(leave)


def ended(result: dict[str, Any]) -> dict[str, Any] | State:
    """A flow's return value: its result, or a Cancelled state carrying it when the run stopped."""
    if result.get("state") != "stopped":
        return result
    stop = result["stop"]
    return Cancelled(message=f"stopped ({stop['reason']}): {len(stop['not_done'])} SKU(s) not done; "
                             f"report: {result.get('report')}", data=result)


class StoppableTaskRunner(ThreadPoolTaskRunner):
    """Prefect's thread-pool task runner, except that its exit does not wait for abandoned products
    and that it forgets a task once it has ended.

    Prefect's runner keeps a cancel event (an Event with its lock and waiter queue, and the task
    run's UUID) for every task it was given until the flow run ends, ~1 KiB per batch task; a
    50,000-SKU run submits thousands. An ended task has nothing left to cancel, so its event is
    dropped when its future is done.
    """

    def submit(self, task: Any, parameters: dict[str, Any], wait_for: Any = None,
               dependencies: Any = None) -> Any:
        future = super().submit(task, parameters, wait_for, dependencies)
        events, task_run_id = getattr(self, "_cancel_events", None), getattr(future, "task_run_id", None)
        wrapped = getattr(future, "wrapped_future", None)
        if isinstance(events, dict) and task_run_id is not None and wrapped is not None:
            wrapped.add_done_callback(lambda _: events.pop(task_run_id, None))
        return future

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        if STOP.closed and self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        super().__exit__(exc_type, exc_value, traceback)
