"""`stage doctor`: what this machine and config can run, as rows, and the one-line summary `stage run` prints."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ops.config import StateOptions
from ops.doctor_host import output_rows, prefect_rows, signing_rows, store_rows, trust_rows, tsa_rows
from ops.doctor_models import STEPS, backend_rows, expansion_rows, gpu_rows, hf_cache_rows, u2net_rows
from ops.doctor_row import Row
from ops.state import backend_name, open_state
from stages.errors import StagingError

HTTP_TIMEOUT_S = 2.0  # Prefect API and timestamp server probes
STORE_TIMEOUT_S = 20.0  # the object-store probe: a write, a read and a delete


def run_checks(cfg: Any, out_dir: Path, *, quick: bool = False, env: Mapping[str, str] | None = None,
               timeout_s: float = HTTP_TIMEOUT_S, output_url: str | None = None,
               store_timeout_s: float = STORE_TIMEOUT_S) -> list[Row]:
    """Every check, in table order. `quick` (the summary at the start of `stage run`) leaves out
    what costs seconds or is only information: the GPU probe (importing torch alone takes seconds),
    the cache listings, the timestamp server's round trip and the object-store probe (the run's
    first upload reports that store's errors itself); the Prefect API is still asked, with
    `timeout_s`, as the run needs it. Presence of weights is read from files and caches, never by
    loading them, so even the full table takes well under a second without a GPU. `out_dir` is the
    local folder the run writes (for an object-store output, `output_url`, its scratch folder)."""
    env = os.environ if env is None else env
    rows = backend_rows(cfg) + expansion_rows(cfg)
    if not quick:
        rows += hf_cache_rows() + u2net_rows() + gpu_rows(cfg)
    rows += signing_rows(cfg.sign, env) + trust_rows(cfg.verify, env)
    if not quick:
        rows += tsa_rows(cfg.sign.tsa_url, timeout_s)
    rows += prefect_rows(env, timeout_s) + output_rows(out_dir)
    if not quick:
        rows += store_rows(output_url, cfg.storage, store_timeout_s)
    return rows + state_rows(cfg.state, out_dir, env)


def state_rows(options: StateOptions, out_dir: Path, env: Mapping[str, str]) -> list[Row]:
    """Which run-state backend the run uses (`ops.state`) and, for PostgreSQL, whether it answers."""
    var = options.database_url_env
    if backend_name(options, env) == "files":
        return [Row("state", "run state", "ok", f"files beside {out_dir} ({var} unset: one machine)")]
    fix = f"check the URL in {var} (postgresql://user:password@host:5432/db) and that the server runs"
    try:
        state = open_state(str(out_dir), options, env)
        state.check()
    except ImportError as exc:
        return [Row("state", "run state", "fail", f"{var} is set but psycopg is missing ({exc})",
                    "pip install 'psycopg[binary]>=3.2'")]
    except StagingError as exc:
        return [Row("state", "run state", "fail", str(exc), fix)]
    return [Row("state", "run state", "ok", f"{state.describe()}: reachable")]


def problems(rows: list[Row]) -> list[Row]:
    """The rows that stop the configured pipeline from running (missing or failed)."""
    return [r for r in rows if r.problem]


def _backend(table: Any) -> str:
    """A step's backend, and the one a matte escalates to."""
    escalate_to = getattr(table, "escalate_to", "")
    return table.backend + (f" (escalating to {escalate_to})" if escalate_to else "")


def summary_line(cfg: Any, rows: list[Row]) -> str:
    """One line: the configured backends and the count of missing things, or the problems by name."""
    bad = problems(rows)
    if bad:
        first = f"{bad[0].name}: {bad[0].status}" + (f", and {len(bad) - 1} more" if len(bad) > 1 else "")
        return f"doctor: {len(bad)} problem{'s' if len(bad) > 1 else ''} ({first}) - run \"stage doctor\""
    backends = ", ".join(f"{step} {_backend(getattr(cfg, step))}" for step in STEPS)
    warnings = sum(r.status == "warn" for r in rows)
    return f"doctor: ok ({backends}; 0 missing" + (f", {warnings} warning{'s' if warnings > 1 else ''}" if warnings
                                                     else "") + ")"


def report(rows: list[Row], cfg: Any) -> dict[str, Any]:
    """The JSON form: ok, the count of problems, the summary line and every row."""
    return {"ok": not problems(rows), "problems": len(problems(rows)), "config": cfg.origin,
            "summary": summary_line(cfg, rows), "rows": [r.as_dict() for r in rows]}
