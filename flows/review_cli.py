"""`stage review`: list the review queue, approve or reject SKUs, forget decisions."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from flows.exitcodes import EXIT_OK, EXIT_RUN_FAILED
from stages.errors import StagingError

VERDICTS = ("pass", "review", "reject")


class ReviewInputError(StagingError):
    """The SKUs a review command names cannot be read, or it names none."""


def named_skus(args: argparse.Namespace) -> list[str]:
    """The SKUs a decision command names: its arguments, then the lines of `--from` (a file, or `-`
    for standard input), in order, each once. A line's SKU is its text before the first tab, so
    `stage review list` can be piped in as it prints; blank lines and `#` lines are skipped."""
    skus = list(args.skus)
    if args.from_file:
        try:
            text = sys.stdin.read() if args.from_file == "-" else Path(args.from_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ReviewInputError(f"cannot read the SKUs from {args.from_file}: {exc}") from None
        for line in text.splitlines():
            sku = line.split("\t", 1)[0].strip()
            if sku and not sku.startswith("#"):
                skus.append(sku)
    if not skus and not getattr(args, "check", None):
        raise ReviewInputError("name at least one SKU (arguments, --from FILE or --check CHECK)")
    return list(dict.fromkeys(skus))


def cmd_review(args: argparse.Namespace) -> int:
    from ops import review
    from ops.config import load_config
    from ops.report import printable

    try:
        if args.review_command != "list":
            return _decide(args, printable)
        out, shown, state = review.open_review(load_config(args.config), args.out)
        wanted = () if args.verdict == "all" else (args.verdict,)
        items = review.queue(out, wanted, state=state)
        if args.check:
            items = [it for it in items if args.check in _groups(it)]
        if args.json:
            print(json.dumps(items, indent=2, ensure_ascii=False))
            return EXIT_OK
        for line in grouped_lines(items, printable, only=args.check):
            print(line)
        of_check = f" and a reason from {args.check}" if args.check else ""
        print(f"{len(items)} SKU(s) with verdict {args.verdict}{of_check} in {shown}", file=sys.stderr)
        return EXIT_OK
    except (StagingError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED


def _decide(args: argparse.Namespace, printable) -> int:
    """`stage review approve|reject|reset`: each SKU's outcome on stdout, the refused on stderr."""
    from ops import review
    from ops.config import load_config

    group = getattr(args, "check", None) or ""
    done = review.apply_decision(load_config(args.config), args.out, args.review_command, named_skus(args), group,
                                 getattr(args, "reason", "") or "")
    if not done.skus:
        print(f"no SKU waiting for review with a reason from {printable(group)} is undecided in {done.output}",
              file=sys.stderr)
        return EXIT_OK
    if args.review_command == "reset":
        for sku in done.skus:
            print(f"{printable(sku)}: {'decision forgotten' if sku in done.forgotten else 'no decision'}")
        return EXIT_OK
    decision = "approved" if args.review_command == "approve" else "rejected"
    what = "kept by nightly runs" if decision == "approved" else "withdrawn by the next run"
    for entry in done.stored:
        print(f"{printable(entry['sku'])}: {decision} by {entry['by']} ({what} until its photo or row changes)")
    for _sku, exc in done.refused:
        print(f"error: {exc}", file=sys.stderr)
    if len(done.skus) > 1:
        print(f"{decision} {len(done.stored)} of {len(done.skus)} SKU(s)"
              + (f"; {len(done.refused)} could not be (above)" if done.refused else ""), file=sys.stderr)
    return EXIT_RUN_FAILED if done.refused else EXIT_OK


NO_REASON = "no review reason"


def grouped_lines(items: list[dict[str, Any]], printable, only: str | None = None) -> list[str]:
    """The queue grouped by the check behind each reason, most severe first, then the most common
    (`ops.triage`): a `# <check>: N SKU(s)` line, then one line per SKU with that check's reasons
    (the SKU's other checks as `also`). A SKU with reasons from two checks is in both groups;
    SKUs without reasons (passed) come last. `only`: that check's group alone."""
    from ops.triage import order_groups

    by_check: dict[str, list[tuple[dict[str, Any], dict[str, list[str]]]]] = {}
    for it in items:
        groups = _groups(it)
        for check in groups:
            by_check.setdefault(check, []).append((it, groups))
    order = order_groups({c: len(v) for c, v in by_check.items() if c != NO_REASON})
    order += [{"check": NO_REASON, "skus": len(by_check[NO_REASON])}] if NO_REASON in by_check else []
    order = [g for g in order if only is None or g["check"] == only]
    lines = []
    for g in order:
        lines.append(f"# {printable(g['check'])}: {g['skus']} SKU(s)")
        lines += [_line(it, groups, g["check"], printable) for it, groups in by_check[g["check"]]]
    return lines


def _groups(it: dict[str, Any]) -> dict[str, list[str]]:
    """A listed SKU's reasons by check; a SKU without any is in the `NO_REASON` group."""
    from ops.triage import grouped_reasons

    return grouped_reasons(it.get("reasons") or []) or {NO_REASON: []}


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
    ls.add_argument("--check", help="only SKUs with a reason from this check (a group the list prints, e.g. cropped)")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    common(ls)

    def named(p: argparse.ArgumentParser, group: bool = True) -> None:
        p.add_argument("skus", nargs="*", metavar="SKU")
        p.add_argument("--from", dest="from_file", metavar="FILE",
                       help="also the SKUs in FILE, one per line ('-': standard input; the output of "
                            "`stage review list` will do: its first column is read, # lines skipped)")
        if group:
            p.add_argument("--check", help="also every SKU waiting for review with a reason from this check "
                                           "that no one has decided about yet (a group the list prints)")
        common(p)

    named(rv_sub.add_parser("approve", help="approve SKUs' outputs: nightly runs keep them"))
    rj = rv_sub.add_parser("reject", help="reject SKUs' outputs: they are withdrawn from the publish folder")
    rj.add_argument("--reason", required=True, help="why (shown in the run summary)")
    named(rj)
    named(rv_sub.add_parser("reset", help="forget the decisions about SKUs: the next run stages them again"),
          group=False)
