"""Run state as files beside a local output folder: the SQLite ledger, flock locks, the review JSON."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ops.atomic import write_json
from ops.ledger import LEDGER_NAME, Ledger
from ops.runlock import RunLockedError, SkuLocks, hold
from ops.state.base import Claims, ReviewDecisions, ReviewStateError, RunState
from stages.errors import StagingError

REVIEW_STATE = Path("review") / "state.json"
LOCK_WAIT_S = 10.0


class FileDecisions(ReviewDecisions):
    """Decisions in `OUT/review/state.json`, written atomically under an exclusive lock on
    `OUT/review/.lock`; read once per file version (a run reads them once per product)."""

    _cache: dict[str, tuple[int, int, dict[str, Any]]] = {}

    def __init__(self, out_root: Path) -> None:
        self.out_root = out_root
        self.path = out_root / REVIEW_STATE

    def all(self) -> dict[str, dict[str, Any]]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        hit = self._cache.get(str(self.path))
        if hit and hit[:2] == (st.st_mtime_ns, st.st_size):
            return hit[2]
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ReviewStateError(f"review state {self.path} is unreadable: {exc}") from None
        decisions = data.get("decisions", {}) if isinstance(data, dict) else {}
        self._cache[str(self.path)] = (st.st_mtime_ns, st.st_size, decisions)
        return decisions

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive lock for a read-modify-write of the file; waits briefly for another reviewer."""
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                with hold(self.out_root / "review"):
                    yield
                    return
            except RunLockedError:
                if time.monotonic() > deadline:
                    raise ReviewStateError(f"review state in {self.out_root} is locked by another review command"
                                           ) from None
                time.sleep(0.1)

    def _save(self, decisions: dict[str, Any]) -> None:
        write_json(self.path, {"version": 1, "decisions": decisions})

    def decide_all(self, entries: Mapping[str, dict[str, Any]]) -> None:
        if not entries:
            return
        with self._locked():
            self._save({**self.all(), **entries})

    def reset_all(self, slugs: Iterable[str]) -> list[str]:
        with self._locked():
            decisions = dict(self.all())
            found = [s for s in dict.fromkeys(slugs) if decisions.pop(s, None) is not None]
            if found:
                self._save(decisions)
        return found


class FileClaims(Claims):
    """A byte-range lock per SKU on `OUT/.sku-locks` (`ops.runlock.SkuLocks`): the kernel drops it
    when the holder exits, so it needs no lease."""

    def __init__(self, out_root: Path) -> None:
        self.out_root = out_root

    def hold(self, sku: str) -> contextlib.AbstractContextManager[bool]:
        return SkuLocks(self.out_root).hold(sku)


class FilesState(RunState):
    """Today's files beside a local output folder; `location` is the folder's resolved path."""

    backend = "files"

    def __init__(self, location: str) -> None:
        if "://" in location:
            raise StagingError(f"output {location} is not a local folder: the files run state needs one")
        super().__init__(location)
        self.root = Path(location)
        self._claims = FileClaims(self.root)
        self._review = FileDecisions(self.root)

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.root)  # cheap; re-creates the tables when the file was removed meanwhile

    @property
    def claims(self) -> FileClaims:
        return self._claims

    @property
    def review(self) -> FileDecisions:
        return self._review

    @contextlib.contextmanager
    def run_lock(self, shared: str | None = None) -> Iterator[None]:
        with hold(self.root, shared=shared):
            yield

    def has_ledger(self) -> bool:
        return (self.root / LEDGER_NAME).is_file()

    def describe(self) -> str:
        return f"files in {self.root} ({LEDGER_NAME}, flock locks, {REVIEW_STATE})"

