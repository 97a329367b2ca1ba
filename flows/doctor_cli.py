"""`stage doctor`: a table of what this machine and config can run; and its one-line summary for `stage run`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from flows.exitcodes import EXIT_OK, EXIT_RUN_FAILED

_STYLE = {"ok": "green", "info": "dim", "warn": "yellow", "missing": "red", "fail": "bold red"}


def cmd_doctor(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ops.config import load_config
    from ops.doctor import problems, report, run_checks, summary_line

    cfg = load_config(args.config)
    where = cfg.output_location(args.out)
    rows = run_checks(cfg, where.root, output_url=where.url)
    if args.json:
        print(json.dumps(report(rows, cfg), indent=2, ensure_ascii=False))
    else:
        out = Console(highlight=False)
        if not out.is_terminal:  # a log or a pipe: long lines rather than fix commands folded mid-word
            out = Console(highlight=False, width=200)
        out.print(f"config: {cfg.origin}", markup=False)
        table = Table(box=None, pad_edge=False, show_edge=False)
        table.add_column("check", overflow="fold", max_width=56)
        table.add_column("status")
        table.add_column("detail (and fix)", overflow="fold")
        for r in rows:
            fix = f"\n[bold]fix:[/] {escape(r.fix)}" if r.fix else ""
            table.add_row(escape(r.name), f"[{_STYLE[r.status]}]{r.status}[/]", escape(r.detail) + fix)
        out.print(table)
        out.print(summary_line(cfg, rows), markup=False)
    return EXIT_RUN_FAILED if problems(rows) else EXIT_OK


def print_summary(cfg: Any, out: str | None, say: Callable[[str], None]) -> None:
    """The doctor's one-line summary at the start of `stage run` (the quick checks: no GPU probe,
    no cache listing, no timestamp server); a failing check never stops the run here."""
    from ops.doctor import run_checks, summary_line
    from ops.runlock import output_root

    try:
        say(summary_line(cfg, run_checks(cfg, output_root(cfg, out), quick=True)))
    except Exception as exc:  # the summary is advice: the run reports its own errors
        say(f"doctor: could not check ({type(exc).__name__}: {exc})")


def add_parsers(sub: argparse._SubParsersAction, default_config: str | None) -> None:
    dr = sub.add_parser("doctor", help="what this machine and config can run: backends, models, GPU, signing, "
                                       "Prefect API, output folder or object store")
    dr.add_argument("--config", default=default_config,
                    help="config.toml (default: ./config.toml when there is one, else the built-in defaults)")
    dr.add_argument("--out", help="output folder or object-store URL to check (default: [run].output_dir)")
    dr.add_argument("--json", action="store_true", help="machine-readable output")
    dr.set_defaults(func=cmd_doctor)
