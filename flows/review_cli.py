"""`stage review`: list the review queue, approve or reject a SKU, forget a decision."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from flows.exitcodes import EXIT_OK, EXIT_RUN_FAILED

VERDICTS = ("pass", "review", "reject")


def _out_root(args: argparse.Namespace):
    """The output folder whose records the command reads, its name, and its run state (`ops.state`),
    where the decisions live. For an object-store output the folder is the scratch folder with the
    store's records copied in (those the command needs: `ops.store_products.mirror_records`)."""
    from ops.config import load_config
    from ops.objectstore import store_for
    from ops.paths import sku_slug
    from ops.state import open_state
    from ops.store_products import mirror_records

    cfg = load_config(args.config)
    where = cfg.output_location(args.out)
    state = open_state(where.name, cfg.state)
    if where.url and args.review_command != "reset":
        slugs = None if args.review_command == "list" else [sku_slug(args.sku)]
        mirror_records(store_for(cfg.storage, where.url), where.root, slugs, with_output=args.review_command == "approve")
    return where.root, where.name, state


def cmd_review(args: argparse.Namespace) -> int:
    from ops import review
    from ops.report import printable
    from stages.errors import StagingError

    try:
        out, shown, state = _out_root(args)
        if args.review_command == "list":
            wanted = () if args.verdict == "all" else (args.verdict,)
            items = review.queue(out, wanted, state=state)
            if args.json:
                print(json.dumps(items, indent=2, ensure_ascii=False))
                return EXIT_OK
            for line in grouped_lines(items, printable):
                print(line)
            print(f"{len(items)} SKU(s) with verdict {args.verdict} in {shown}", file=sys.stderr)
            return EXIT_OK
        if args.review_command == "reset":
            found = review.reset(out, args.sku, state=state)
            print(f"{printable(args.sku)}: decision forgotten" if found else f"{printable(args.sku)}: no decision")
            return EXIT_OK
        decision = "approved" if args.review_command == "approve" else "rejected"
        entry = review.decide(out, args.sku, decision, getattr(args, "reason", "") or "", state=state)
        what = "kept by nightly runs" if decision == "approved" else "withdrawn by the next run"
        print(f"{printable(args.sku)}: {decision} by {entry['by']} ({what} until its photo or row changes)")
        return EXIT_OK
    except (StagingError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED


NO_REASON = "no review reason"


def grouped_lines(items: list[dict[str, Any]], printable) -> list[str]:
    """The queue grouped by the check behind each reason, most severe first, then the most common
    (`ops.triage`): a `# <check>: N SKU(s)` line, then one line per SKU with that check's reasons
    (the SKU's other checks as `also`). A SKU with reasons from two checks is in both groups;
    SKUs without reasons (passed) come last."""
    from ops.triage import grouped_reasons, order_groups

    by_check: dict[str, list[tuple[dict[str, Any], dict[str, list[str]]]]] = {}
    for it in items:
        groups = grouped_reasons(it.get("reasons") or []) or {NO_REASON: []}
        for check in groups:
            by_check.setdefault(check, []).append((it, groups))
    order = order_groups({c: len(v) for c, v in by_check.items() if c != NO_REASON})
    order += [{"check": NO_REASON, "skus": len(by_check[NO_REASON])}] if NO_REASON in by_check else []
    lines = []
    for g in order:
        lines.append(f"# {printable(g['check'])}: {g['skus']} SKU(s)")
        lines += [_line(it, groups, g["check"], printable) for it, groups in by_check[g["check"]]]
    return lines


def _line(it: dict[str, Any], groups: dict[str, list[str]], check: str, printable) -> str:
    from ops.triage import photo_label

    d = it.get("decision")
    state = "" if not d else f"  [{d['decision']}{' (stale: photo or row changed)' if d.get('stale') else ''}]"
    reasons = "; ".join(groups.get(check) or []) or "-"
    also = [c for c in groups if c != check]
    reasons += f" (also: {', '.join(also)})" if also else ""
    withheld = "; ".join(photo_label(p.get("rendition", "?"), p.get("rule", "?")) for p in it.get("photo_problems") or [])
    reasons += f"  [rendition withheld: {withheld}]" if withheld else ""
    return f"{printable(it['sku'])}\t{it['verdict']}\t{it.get('output') or '-'}\t{printable(reasons)}{state}"


def add_parsers(sub: argparse._SubParsersAction, default_config: str | None) -> None:
    rv = sub.add_parser("review", help="review queue: list, approve or reject staged SKUs")
    rv_sub = rv.add_subparsers(dest="review_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", default=default_config, help="config.toml (default: ./config.toml)")
        p.add_argument("--out", help="output folder or object-store URL (default: [run].output_dir)")
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
