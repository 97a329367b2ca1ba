"""A run's per-row results, appended to a file as batches finish instead of held in memory.

A 50,000-SKU run would otherwise keep 50,000 result dicts (and its report) in the flow
process. The log keeps running counts, the first rows that need attention, per-stage timing
and cost sums (`ops.cost.RunCost`) and one file offset per row; the report is written from the file in row order.
"""

from __future__ import annotations

import contextlib
import json
import threading
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ops.cost import CostOptions, RunCost
from ops.triage import Triage

RETURNED_ROWS = 1000  # rows a flow returns in full; larger runs return the ones needing attention first
ATTENTION_ROWS = 200  # failed / rejected / review rows kept for the run's artifacts


def needs_attention(r: dict[str, Any]) -> bool:
    return r["status"] in ("failed", "rejected") or r.get("verdict") == "review"


class ResultLog:
    """Append-only JSON-lines file of row results with the aggregates a run summary needs."""

    def __init__(self, path: Path, currency: str = CostOptions.currency) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("w+", encoding="utf-8")
        self._lock = threading.Lock()
        self._index = array("q")  # row, offset pairs
        self.status: Counter[str] = Counter()
        self.verdict: Counter[str] = Counter()
        self.timing_ms: Counter[str] = Counter()
        self.timed_rows = 0
        self.count = 0
        self.attention: list[dict[str, Any]] = []
        self.cost = RunCost(currency)
        self.triage = Triage()
        self._kept: dict[int, list[dict[str, Any]]] = {0: [], 1: [], 2: []}
        self._kept_all = True

    def append(self, results: Iterable[dict[str, Any]]) -> None:
        with self._lock:
            for r in results:
                offset = self._fh.seek(0, 2)
                self._fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
                self._index.extend((int(r["row"]), offset))
                self.count += 1
                self.status[r["status"]] += 1
                if r.get("verdict"):
                    self.verdict[r["verdict"]] += 1
                if r["status"] != "cached" and r.get("timings_ms"):
                    self.timed_rows += 1
                    self.timing_ms.update(r["timings_ms"])
                self.cost.add(r)
                self.triage.add(r)
                attention = needs_attention(r)
                if attention and len(self.attention) < ATTENTION_ROWS:
                    self.attention.append(r)
                self._keep(r, 2 if attention else 0 if r["status"] == "cached" else 1)

    def _keep(self, r: dict[str, Any], prio: int) -> None:
        """Keep up to RETURNED_ROWS rows; when full, a row needing attention or one that was staged
        displaces an unchanged (cached) one, then a plain staged one."""
        if sum(len(v) for v in self._kept.values()) < RETURNED_ROWS:
            self._kept[prio].append(r)
            return
        self._kept_all = False
        lower = next((q for q in range(prio) if self._kept[q]), None)
        if lower is not None:
            self._kept[lower].pop()
            self._kept[prio].append(r)

    def summary(self, catalog_errors: list[dict[str, Any]]) -> dict[str, Any]:
        """The same figures as stages.report.summarize over every row, from the running counts."""
        return {
            "rows": self.count + len(catalog_errors), "processed": self.count - self.status.get("stopped", 0), "invalid_rows": len(catalog_errors),
            "by_status": dict(self.status), "by_verdict": dict(self.verdict),
            "failed": self.status.get("failed", 0) + self.status.get("rejected", 0) + len(catalog_errors),
            "cost": self.cost.summary(), **self.triage.summary(),
        }

    @property
    def complete(self) -> bool:
        """Whether `returned()` holds every row."""
        return self._kept_all

    def rows_seen(self) -> set[int]:
        """The catalog rows that have a result."""
        with self._lock:
            return set(self._index[0::2])

    def returned(self) -> list[dict[str, Any]]:
        return sorted((r for rows in self._kept.values() for r in rows), key=lambda r: r["row"])

    def rows(self) -> Iterator[dict[str, Any]]:
        """Every row, in catalog row order, read back from the file.

        The order is sorted as arrays (8 bytes per row): a list of (row, offset) tuples would
        cost ~130 bytes per row each time the report reads the rows (once per verdict group)."""
        import numpy as np

        with self._lock:
            self._fh.flush()
            pairs = np.frombuffer(self._index, dtype=np.int64).reshape(-1, 2).copy()
        offsets = pairs[np.lexsort((pairs[:, 1], pairs[:, 0])), 1]
        del pairs
        with self.path.open(encoding="utf-8") as fh:
            for offset in offsets:
                fh.seek(int(offset))
                yield json.loads(fh.readline())

    def close(self, remove: bool = True) -> None:
        with contextlib.suppress(OSError):
            self._fh.close()
        if remove:
            with contextlib.suppress(OSError):
                self.path.unlink()


class LogSink:
    """Where batch tasks append their results: the run's `ResultLog`, until the run closes it.

    After a stop abandons the products still in progress, the run accounts for them itself; a
    product that such a batch finishes later is in the ledger, and no longer goes to the log.
    """

    def __init__(self, log: ResultLog) -> None:
        self._log = log
        self._lock = threading.Lock()
        self._open = True

    def append(self, results: Iterable[dict[str, Any]]) -> None:
        with self._lock:
            if self._open:
                self._log.append(results)

    def close(self) -> None:
        with self._lock:
            self._open = False
