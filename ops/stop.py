"""A run's stop request: asked once (a signal, a cancellation), seen by every batch, bounded in time."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stages.errors import StagingError


class RunStopped(StagingError):
    """The run stopped before this product could be published; nothing of it was written."""


@dataclass(frozen=True)
class StopRequest:
    reason: str  # e.g. "SIGTERM", "cancelled in Prefect"
    requested_at: str  # ISO time (UTC)
    bound_s: float  # how long products in progress may take to finish
    deadline: float  # time.monotonic() after which they are abandoned

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "requested_at": self.requested_at, "bound_s": self.bound_s}


class RunStop:
    """The process's stop state, shared by the flow and its batch threads (signals are per process too).

    A stop request stops new products from starting; products in progress may finish until the
    request's deadline, after which the run abandons them. A product is abandoned only between
    publications: `publishing()` brackets the part of a product that writes its files (images,
    credentials, layers, record), and `close()` waits for open publications before it returns,
    so an abandoned product leaves nothing of itself behind and a stopped run never leaves a
    product half-published. A publication still open `grace_s` after the deadline is left to
    the crash path (the next run redoes the product: it is not in the ledger).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.reset()

    def reset(self) -> None:
        """Forget any request (a new run in the same process)."""
        with self._cond:
            self.request_info: StopRequest | None = None
            self.closed = False
            self._working: dict[str, int] = {}
            self._publishing = 0

    @property
    def requested(self) -> bool:
        return self.request_info is not None

    def request(self, reason: str, bound_s: float, now: bool = False) -> bool:
        """Ask the run to stop within `bound_s` (at once with `now`); True for the first request.

        A later request adds its reason and can only bring the deadline closer (a second signal:
        stop at once). Safe to call from a signal handler: it never waits for another thread.
        """
        t = time.monotonic()
        deadline = t if now else t + max(0.0, bound_s)
        prev = self.request_info
        if prev is None:
            self.request_info = StopRequest(reason, datetime.now(UTC).isoformat(timespec="seconds"), bound_s, deadline)
            return True
        reasons = prev.reason.split("; ")
        self.request_info = StopRequest("; ".join(reasons + [reason] if reason not in reasons else reasons),
                                        prev.requested_at, prev.bound_s if now else min(prev.bound_s, bound_s),
                                        min(prev.deadline, deadline))
        return False

    def remaining_s(self) -> float:
        """Seconds until products in progress are abandoned (inf when no stop was asked)."""
        info = self.request_info
        return float("inf") if info is None else max(0.0, info.deadline - time.monotonic())

    @contextlib.contextmanager
    def working(self, sku: str) -> Iterator[None]:
        """Mark `sku` as in progress for the block."""
        with self._cond:
            self._working[sku] = self._working.get(sku, 0) + 1
        try:
            yield
        finally:
            with self._cond:
                self._working[sku] -= 1
                if not self._working[sku]:
                    del self._working[sku]

    def in_progress(self) -> list[str]:
        with self._cond:
            return sorted(self._working)

    @contextlib.contextmanager
    def publishing(self) -> Iterator[None]:
        """Bracket a product's writes; raise RunStopped instead when the run has abandoned its products."""
        with self._cond:
            if self.closed:
                raise RunStopped("the run stopped before this product was published")
            self._publishing += 1
        try:
            yield
        finally:
            with self._cond:
                self._publishing -= 1
                self._cond.notify_all()

    def close(self, grace_s: float) -> list[str]:
        """Abandon the products in progress: no publication starts after this, open ones get up to
        `grace_s` to finish. Returns the SKUs still in progress (they are not done)."""
        with self._cond:
            self.closed = True
            self._cond.wait_for(lambda: self._publishing == 0, timeout=grace_s)
            return sorted(self._working)


STOP = RunStop()
