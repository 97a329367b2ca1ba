"""What every run-state backend offers: the ledger, the run lock, SKU claims and review decisions."""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar, Protocol

from ops.ledger import Current
from ops.runlock import RunLockedError
from stages.errors import StagingError

__all__ = ["Claims", "LedgerStore", "ReviewDecisions", "ReviewStateError", "RunLockedError", "RunState"]


class LedgerStore(Protocol):
    """The ledger of one output location (`ops.ledger.Ledger` is the files backend's): events,
    runs and remembered source digests, with the same columns and dicts in every backend."""

    def append(self, run_id: str, results: Iterable[dict[str, Any]], keys: dict[str, str] | None = None,
               flow_run_id: str | None = None, note: str | None = None) -> int: ...

    def start_run(self, run_id: str, flow_run_id: str | None = None, note: str | None = None) -> None: ...

    def end_run(self, run_id: str, state: str, reason: str | None = None, not_done: int = 0,
                cost: float | None = None, currency: str | None = None) -> None: ...

    def runs(self) -> list[dict[str, Any]]: ...

    def current(self, skus: Iterable[str] | None = None) -> dict[str, Current]: ...

    def events(self, run_ids: Iterable[str] | None = None) -> list[dict[str, Any]]: ...

    def source_digests(self, paths: Iterable[str] | None = None) -> dict[str, tuple[int, int, str]]: ...

    def remember_sources(self, entries: Iterable[tuple[str, int, int, str]]) -> None: ...


class ReviewStateError(StagingError):
    """The review decisions cannot be read or changed now (unreadable file, another reviewer holds it)."""


class Claims(ABC):
    """Which worker works on which SKU of the location now; one holder per SKU."""

    lapse_s: float = 0.0  # how long a claim can outlive a holder that died (its lease); 0: not at all

    @abstractmethod
    def hold(self, sku: str) -> contextlib.AbstractContextManager[bool]:
        """Yield True while this worker holds `sku`; False (nothing held) when another has it."""

    @contextlib.contextmanager
    def hold_waiting(self, sku: str, stop: Callable[[], bool] = lambda: False) -> Iterator[bool]:
        """`hold`, trying a SKU that another holds again until its claim could have lapsed.

        A worker that died keeps its claims until their lease runs out (`lapse_s`), and its shard
        run again at once would otherwise fail those SKUs as "being processed by another run". A
        live holder renews its claim, so after `lapse_s` (plus a second) this yields False, as
        `hold` does; `stop` cuts the wait short."""
        deadline = time.monotonic() + (self.lapse_s + 1.0 if self.lapse_s else 0.0)
        while True:
            with self.hold(sku) as mine:
                if mine or time.monotonic() >= deadline or stop():
                    yield mine
                    return
            time.sleep(min(1.0, max(0.05, self.lapse_s / 20)))


class ReviewDecisions(ABC):
    """A reviewer's decisions, keyed by SKU slug (`ops.paths.sku_slug`); the entries are the dicts
    `ops.review.decide` makes."""

    @abstractmethod
    def all(self) -> dict[str, dict[str, Any]]:
        """Every decision of the location, by slug."""

    def get(self, slug: str) -> dict[str, Any] | None:
        """The decision about one slug, or None."""
        return self.all().get(slug)

    @abstractmethod
    def decide_all(self, entries: Mapping[str, dict[str, Any]]) -> None:
        """Store each entry as the decision about its slug, replacing any earlier one, all at once
        (a reviewer approving a whole group: one write, not one per SKU)."""

    @abstractmethod
    def reset_all(self, slugs: Iterable[str]) -> list[str]:
        """Forget the decisions about `slugs`; the slugs that had one."""

    def decide(self, slug: str, entry: dict[str, Any]) -> None:
        """Store `entry` as the decision about `slug`, replacing any earlier one."""
        self.decide_all({slug: entry})

    def reset(self, slug: str) -> bool:
        """Forget the decision about `slug`; True when there was one."""
        return bool(self.reset_all([slug]))


class RunState(ABC):
    """The run state of one output location (`location`: the resolved local folder or the output URL).

    Opened with `ops.state.open_state`, which keeps one per process per (backend, location): its
    methods are safe to call from the threads of a run's batch tasks.
    """

    backend: ClassVar[str]

    def __init__(self, location: str) -> None:
        self.location = location

    @property
    @abstractmethod
    def ledger(self) -> LedgerStore:
        """The location's ledger."""

    @property
    @abstractmethod
    def claims(self) -> Claims:
        """Per-SKU claims between the runs that share the location."""

    @property
    @abstractmethod
    def review(self) -> ReviewDecisions:
        """The reviewers' decisions."""

    @abstractmethod
    def run_lock(self, shared: str | None = None) -> contextlib.AbstractContextManager[None]:
        """Hold the location's run lock for the block; raise RunLockedError at once, naming the holder,
        when it is taken. `shared` names a run that may run beside others of its kind (e.g.
        "shard-1-of-2", "rerun"): the location lock is then held shared and one lock for `shared`
        exclusively, so that the same shard cannot run twice, and a full run is refused while any
        of them runs. Such runs must claim each SKU they process (`claims`)."""

    def ensure_free(self) -> None:
        """Raise RunLockedError if another run holds the location now (a quick check before a slow start)."""
        with self.run_lock():
            pass

    @abstractmethod
    def has_ledger(self) -> bool:
        """Whether any run has used the location (never creates anything)."""

    @abstractmethod
    def describe(self) -> str:
        """Where the state lives, for people (no password)."""

    def check(self) -> None:
        """Raise StagingError (the reason) when the state cannot be reached now."""

