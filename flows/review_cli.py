"""`stage review`: list the review queue, approve or reject a SKU, forget a decision."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from flows.exitcodes import EXIT_OK, EXIT_RUN_FAILED

VERDICTS = ("pass", "review", "reject")


def _out_root(args: argparse.Namespace):
    from ops.config import load_config
    from ops.runlock import output_root

    return output_root(load_config(args.config), args.out)


def cmd_review(args: argparse.Namespace) -> int:
    from ops import review
    from ops.report import printable
    from stages.errors import StagingError

    try:
        out = _out_root(args)
        if args.review_command == "list":
            wanted = () if args.verdict == "all" else (args.verdict,)
            items = review.queue(out, wanted)
            if args.json:
                print(json.dumps(items, indent=2, ensure_ascii=False))
                return EXIT_OK
            for it in items:
                print(_line(it, printable))
            print(f"{len(items)} SKU(s) with verdict {args.verdict} in {out}", file=sys.stderr)
            return EXIT_OK
        if args.review_command == "reset":
            found = review.reset(out, args.sku)
            print(f"{printable(args.sku)}: decision forgotten" if found else f"{printable(args.sku)}: no decision")
            return EXIT_OK
        decision = "approved" if args.review_command == "approve" else "rejected"
        entry = review.decide(out, args.sku, decision, getattr(args, "reason", "") or "")
        what = "kept by nightly runs" if decision == "approved" else "withdrawn by the next run"
        print(f"{printable(args.sku)}: {decision} by {entry['by']} ({what} until its photo or row changes)")
        return EXIT_OK
    except (StagingError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED


def _line(it: dict[str, Any], printable) -> str:
    d = it.get("decision")
    state = "" if not d else f"  [{d['decision']}{' (stale: photo or row changed)' if d.get('stale') else ''}]"
    reasons = "; ".join(it.get("reasons") or [])
    return f"{printable(it['sku'])}\t{it['verdict']}\t{it.get('output') or '-'}\t{printable(reasons)}{state}"


def add_parsers(sub: argparse._SubParsersAction, default_config: str | None) -> None:
    rv = sub.add_parser("review", help="review queue: list, approve or reject staged SKUs")
    rv_sub = rv.add_subparsers(dest="review_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", default=default_config, help="config.toml (default: ./config.toml)")
        p.add_argument("--out", help="output folder (default: [run].output_dir)")
        p.set_defaults(func=cmd_review)

    ls = rv_sub.add_parser("list", help="SKUs waiting for review (or with another verdict)")
    ls.add_argument("--verdict", choices=(*VERDICTS, "all"), default="review")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    common(ls)
    ap = rv_sub.add_parser("approve", help="approve a SKU's output: nightly runs keep it")
    ap.add_argument("sku")
    common(ap)
    rj = rv_sub.add_parser("reject", help="reject a SKU's output: it is withdrawn from the publish folder")
    rj.add_argument("sku")
    rj.add_argument("--reason", required=True, help="why (shown in the run summary)")
    common(rj)
    rs = rv_sub.add_parser("reset", help="forget the decision about a SKU: the next run stages it again")
    rs.add_argument("sku")
    common(rs)
