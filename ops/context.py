"""What every step of one run shares: where it writes, who it is, what it was asked."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ops.config import StateOptions


@dataclass(frozen=True)
class RunContext:
    out_root: Path  # the local folder this process writes (absolute): the output folder, or an output URL's scratch folder
    run_id: str
    force: bool = False  # regenerate products whose inputs did not change
    started_ts: float = 0.0  # the run's start (time.time()): older temp files were left by an interrupted run
    note: str | None = None  # kept with every ledger event of the run (a rerun's reason)
    config: str | None = None  # the config file the run reads (None: built-in defaults)
    output_url: str | None = None  # the object-store output (s3://, gs://) products are published to; None: out_root
    state: StateOptions = StateOptions()  # where the run's state lives ([state]; `ops.state.state_for`)


class StepTimer:
    """Milliseconds per step name, summed over every time a step runs (`with timer("check"): ...`)."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.ms[step] = round(self.ms.get(step, 0.0) + (time.perf_counter() - t0) * 1000, 2)
