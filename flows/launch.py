"""A flow run from the `stage` command: an API server tied to it, signals that stop it, its summary and exit code."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flows.api_server import ApiServerError, local_api
from flows.exitcodes import EXIT_OK, EXIT_PARTIAL, EXIT_RUN_FAILED, EXIT_STOPPED
from ops.stop import STOP
from ops.triage import photo_lines


def prefect_env(verbose: bool = True) -> None:
    """Defaults for Prefect in a command-line run (a user's own settings win)."""
    # the local API server needs longer than Prefect's default 20 s on a cold, small machine
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # GPU workers are often offline
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


@dataclass
class Launched:
    result: dict[str, Any] | None  # the run's result (also when it stopped); None when it failed
    error: str | None = None  # why it failed
    stopped: bool = False


def launch(flow_fn: Callable[..., Any], params: dict[str, Any], stop_bound_s: float) -> Launched:
    """Run `flow_fn(**params)` to its end, stopped by SIGTERM or Ctrl-C (README: Stopping a run).

    Errors the run raises on purpose (`ops.errors.EXPECTED`, ValueError for bad parameters)
    come back as `error`, with their message; anything else too, with its type.
    """
    from flows.stopping import stop_on_signals
    from ops.errors import EXPECTED

    with stop_on_signals(stop_bound_s):
        try:
            with local_api():
                state = flow_fn(**params, return_state=True)
            if state.is_cancelled():
                data = state.result(raise_on_failure=False)
                if isinstance(data, dict):
                    return Launched(data, stopped=True)
                return Launched(None, f"the run was cancelled before it started: {state.message}", stopped=True)
            return Launched(state.result())
        except ApiServerError as exc:
            return Launched(None, str(exc))
        except (*EXPECTED, ValueError) as exc:
            return Launched(None, str(exc), stopped=STOP.requested)
        except Exception as exc:
            return Launched(None, f"{type(exc).__name__}: {exc}", stopped=STOP.requested)


def summarize(result: dict[str, Any], say: Callable[[str], None]) -> int:
    """Print the run's summary line, its bad and undone rows and where the report is; its exit code."""
    s = result["summary"]
    say(f"run {result['run_id']}: {s['rows']} rows; " + ", ".join(
        f"{k} {v}" for k, v in sorted(s["by_status"].items())) + f", invalid {s['invalid_rows']}")
    if s.get("cost"):
        say(cost_line(s["cost"]))
    if s["by_verdict"]:
        say("verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(s["by_verdict"].items())))
    if s.get("review_by_check"):
        say("review by check (most severe first): " + ", ".join(
            f"{g['check']} {g['skus']}" for g in s["review_by_check"]))
    if lines := photo_lines(s):
        say("photo problems (renditions withheld, verdicts unchanged): " + "; ".join(lines))
    for e in result["catalog_errors"]:
        say(f"  row {e['row']} SKU {e['sku']!r}: invalid: {e['reason']}")
    for r in result["results"]:
        if r["status"] in ("failed", "rejected"):
            why = r.get("error") or "; ".join(r.get("reasons") or [])
            say(f"  row {r['row']} SKU {r['sku']!r}: {r['status']}: {why}")
    if result.get("report_errors"):
        for why in result["report_errors"]:
            say(f"  report file not written: {why}")
        say(f"run failed: the run report in {result['run_dir']} is incomplete; the rows above are the run's summary")
        return EXIT_RUN_FAILED
    say(f"report: {result.get('report_url') or result['report']}")
    if result.get("state") == "stopped":
        stop = result["stop"]
        say(f"stopped ({stop['reason']}): {len(stop['not_done'])} SKU(s) not done, listed in the report; "
            "run the same command again to stage them")
        return EXIT_STOPPED
    return EXIT_PARTIAL if s["failed"] else EXIT_OK


def cost_line(cost: dict[str, Any]) -> str:
    """One line: what the run's staged products cost, per SKU (median, p90) (ops.cost)."""
    from ops.cost import money

    cur, per = cost["currency"], cost["per_sku"]
    if not cost["priced_rows"]:
        return f"cost: {money(0, cur)} (no product was staged)"
    return (f"cost: {money(cost['total'], cur)} for {cost['priced_rows']} staged SKU(s); "
            f"per SKU: median {money(per['median'], cur)}, p90 {money(per['p90'], cur)}")


def stderr(line: str) -> None:
    print(line, file=sys.stderr)
