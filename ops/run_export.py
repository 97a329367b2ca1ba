"""One run's rows from the ledger, with timings per stage and cost: a table, a CSV or a Parquet file."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ops.atomic import write_bytes
from ops.cost import money
from ops.ledger import LEDGER_NAME
from ops.report import csv_safe, printable
from ops.state import RunState, open_state
from stages.errors import StagingError

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("table", "csv", "parquet")
RECENT = 10  # run ids listed when the one asked for is not known
# The columns every export has, in order; then one `<stage>_ms` column per timed stage.
COLUMNS = ("run_id", "at", "sku", "row", "status", "verdict", "reasons", "output", "error", "cost", "currency")
_TEXT = ("sku", "reasons", "output", "error")  # catalog-derived text: made safe for spreadsheets in CSV


class ExportError(StagingError):
    """The run or its ledger cannot be found, or the export cannot be written; the message says which."""


def find_run(out_root: Path, run_id: str, state: RunState | None = None) -> dict[str, Any]:
    """The ledger's entry for `run_id` (`latest`: the run started last) in the output folder.

    Never creates a ledger: a folder without one is an error naming it. An unknown id is an
    error listing the folder's most recent run ids. `state`: the output location's run state
    (default: the one of `out_root` under the default `[state]`)."""
    state = state if state is not None else open_state(str(out_root))
    if not state.has_ledger():
        where = f"{out_root} ({LEDGER_NAME})" if state.backend == "files" else state.describe()
        raise ExportError(f"no ledger in {where}: no run has used this output location (pass the run's --out)")
    runs = state.ledger.runs()
    if not runs:
        raise ExportError(f"the ledger in {out_root} has no runs yet")
    if run_id == "latest":
        return runs[-1]
    for run in runs:
        if run["run_id"] == run_id:
            return run
    recent = ", ".join(r["run_id"] for r in reversed(runs[-RECENT:]))
    raise ExportError(f"run {printable(run_id)!r} is not in the ledger of {out_root}; recent runs (newest first): "
                      f"{recent} (or use 'latest')")


def run_rows(out_root: Path, run_id: str, state: RunState | None = None) -> list[dict[str, Any]]:
    """Every product the run recorded in the ledger (staged, rejected or failed; rows it skipped
    as unchanged cost nothing and have no entry), in catalog row order, one flat dict each."""
    rows = []
    for e in (state if state is not None else open_state(str(out_root))).ledger.events([run_id]):
        row = {k: e.get(k) for k in COLUMNS}
        row["reasons"] = "; ".join(json.loads(e.get("reasons") or "[]"))
        for stage, ms in json.loads(e.get("timings_ms") or "{}").items():
            row[f"{stage}_ms"] = float(ms)
        rows.append(row)
    return sorted(rows, key=lambda r: (r["row"] is None, r["row"] or 0))


def run_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows as a DataFrame: the fixed columns, then the stages' `_ms` columns in the order met."""
    import pandas as pd

    stages: list[str] = []
    for r in rows:
        stages += [k for k in r if k.endswith("_ms") and k not in stages]
    frame = pd.DataFrame(rows, columns=[*COLUMNS, *stages])
    frame["row"] = frame["row"].astype("Int64")
    for col in ("run_id", "at", "sku", "status", "verdict", "reasons", "output", "error", "currency"):
        frame[col] = frame[col].astype("string")  # also when every value is missing (no errors): typed in Parquet
    for col in ("cost", *stages):
        frame[col] = frame[col].astype("float64")
    return frame


def export(frame: pd.DataFrame, fmt: str, path: Path | None) -> bytes | None:
    """Write `frame` as CSV or Parquet to `path` (atomically), or return the CSV's bytes when `path` is None."""
    if fmt == "csv":
        safe = frame.copy()
        for col in _TEXT:  # a SKU or a reason starting with '=' must not run as a spreadsheet formula
            safe[col] = safe[col].map(lambda v: csv_safe(v) if isinstance(v, str) else v)
        data = safe.to_csv(index=False).encode("utf-8")
    elif fmt == "parquet":
        if path is None:
            raise ExportError("--format parquet writes a file: give it with --output FILE")
        buf = io.BytesIO()
        frame.to_parquet(buf, engine="pyarrow", index=False)
        data = buf.getvalue()
    else:
        raise ExportError(f"format {fmt!r}: must be one of {list(FORMATS[1:])}")
    if path is None:
        return data
    try:
        write_bytes(Path(path), data)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc}") from None
    return None


def run_summary(out_root: Path, run_id: str) -> dict[str, Any] | None:
    """The run's summary from its summary.json (None when the run wrote none: killed, or still running)."""
    path = Path(out_root) / "runs" / run_id / "summary.json"
    try:
        with path.open(encoding="utf-8") as fh:
            return json.load(fh).get("summary")
    except (OSError, ValueError):
        return None


def summary_line(run: dict[str, Any], summary: dict[str, Any] | None, rows: list[dict[str, Any]]) -> str:
    """One line about the run: its state and times, rows by status, and its cost."""
    head = f"run {run['run_id']} ({run['state']}, started {run['started_at']}"
    head += f", ended {run['ended_at']})" if run.get("ended_at") else ")"
    if summary:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(summary["by_status"].items()))
        head += f": {summary['rows']} rows; {counts}, invalid {summary['invalid_rows']}"
    else:
        head += f": {len(rows)} product(s) in the ledger (no summary.json)"
    currency = run.get("currency") or next((r["currency"] for r in rows if r.get("currency")), None)
    total = run.get("cost")
    if total is None and currency:
        total = sum(r["cost"] or 0.0 for r in rows)
    if total is not None and currency:
        head += f"; cost {money(total, currency)}"
        per = (summary or {}).get("cost", {}).get("per_sku")
        if per:
            head += f" (per SKU median {money(per['median'], currency)}, p90 {money(per['p90'], currency)})"
    return head


def table_text(frame: pd.DataFrame, width: int = 60) -> str:
    """The rows for a terminal: SKU, row, status, verdict, cost, total stage time and reasons (shortened)."""
    if frame.empty:
        return "(no products recorded for this run)"
    stages = [c for c in frame.columns if c.endswith("_ms")]
    view = frame[["sku", "row", "status", "verdict", "cost"]].copy()
    view["sku"] = view["sku"].map(printable)
    view["verdict"] = view["verdict"].fillna("")
    view["time_s"] = (frame[stages].fillna(0).sum(axis=1) / 1000).round(2) if stages else 0.0
    view["cost"] = frame["cost"].map(lambda v: "" if v != v or v is None else f"{v:.6f}")
    why = frame["error"].where(frame["error"].notna(), frame["reasons"]).fillna("")
    view["reasons"] = why.map(lambda s: printable(s)[:width] + ("..." if len(s) > width else ""))
    return view.to_string(index=False)
