"""`stage report`: one run's products from the ledger (cost and time per stage) as a table, CSV or Parquet."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flows.exitcodes import EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE


def cmd_report(args: argparse.Namespace) -> int:
    from ops.config import load_config
    from ops.run_export import ExportError, export, find_run, run_frame, run_rows, run_summary, summary_line, table_text
    from ops.state import open_state
    from stages.errors import StagingError

    if args.format == "parquet" and not args.output:
        print("error: --format parquet writes a file: give it with --output FILE", file=sys.stderr)
        return EXIT_USAGE
    if args.format == "table" and args.output:
        print("error: --output needs --format csv or parquet", file=sys.stderr)
        return EXIT_USAGE
    try:
        cfg = load_config(args.config)
        where = cfg.output_location(args.out)
        out = where.root
        state = open_state(where.name, cfg.state)
        run = find_run(out, args.run_id, state)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (StagingError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    try:
        rows = run_rows(out, run["run_id"], state)
        line = summary_line(run, run_summary(out, run["run_id"]), rows)
        frame = run_frame(rows)
        if args.format == "table":
            print(line)
            print(table_text(frame))
            return EXIT_OK
        data = export(frame, args.format, Path(args.output) if args.output else None)
    except (StagingError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    print(line, file=sys.stderr)  # stdout may be the CSV itself
    if data is not None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        print(f"{len(frame)} product row(s) written to {args.output}", file=sys.stderr)
    return EXIT_OK


def add_parsers(sub: argparse._SubParsersAction, default_config: str | None) -> None:
    rp = sub.add_parser("report", help="a run's products with cost and time per stage: table, CSV or Parquet")
    rp.add_argument("run_id", metavar="RUN_ID", help="a run id from the ledger, or 'latest'")
    rp.add_argument("--out", help="the run's output folder (default: [run].output_dir)")
    rp.add_argument("--config", default=default_config, help="config.toml (default: ./config.toml)")
    rp.add_argument("--format", choices=("table", "csv", "parquet"), default="table",
                    help="table (default: printed), csv (to --output or stdout) or parquet (to --output)")
    rp.add_argument("--output", metavar="FILE", help="write the CSV or Parquet file here (atomically)")
    rp.set_defaults(func=cmd_report)
