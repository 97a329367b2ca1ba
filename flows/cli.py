"""The `stage` command: run a catalog, verify and reproduce outputs, make development signing keys, check a
machine, report on runs."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path, PurePosixPath

from flows.exitcodes import EXIT_OK, EXIT_PARTIAL, EXIT_RUN_FAILED, EXIT_STOPPED, EXIT_USAGE  # noqa: F401


def _default_config() -> str | None:
    from ops.config import default_config_path

    return default_config_path()


def cmd_run(args: argparse.Namespace) -> int:
    from flows.launch import prefect_env

    prefect_env(args.verbose)
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ops.catalog import scan_catalog
    from ops.config import load_config
    from ops.errors import EXPECTED
    from ops.state import open_state

    console = Console(stderr=True)
    try:
        cfg = load_config(args.config)
        if not args.quiet:
            console.print(f"config: {cfg.origin}", markup=False, highlight=False)
        cat = scan_catalog(args.catalog, cfg.run.max_variants, cfg.local_roots(), args.sheet)  # fail fast, and size the progress bar
        total = cat.valid + len(cat.errors)
        del cat  # the flow reads the rows itself; this process keeps none
        if args.shards == 1:  # another run on this output location: fail before the slow start (shards share it)
            open_state(cfg.output_location(args.out).name, cfg.state).ensure_free()
    except EXPECTED as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        return EXIT_RUN_FAILED
    if not args.quiet:
        from flows.doctor_cli import print_summary

        print_summary(cfg, args.out,
                      lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True))

    from flows import nightly
    from flows.launch import launch, summarize
    from flows.stopping import StoppableTaskRunner

    flow_fn = nightly.nightly_catalog_run.with_options(task_runner=StoppableTaskRunner(max_workers=cfg.run.workers))
    if args.shards < 1 or not 0 <= args.shard < args.shards:
        console.print(f"[red]error:[/red] --shard {args.shard} --shards {args.shards}: need 0 <= shard < shards",
                      highlight=False)
        return EXIT_USAGE
    params = {"catalog": args.catalog, "config": args.config, "out": args.out, "force": args.force,
              "sheet": args.sheet, "shard": args.shard, "shards": args.shards}
    with Progress(TextColumn("staging"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=args.quiet) as bar:
        job = bar.add_task("products", total=total)
        with nightly.progress_listener(lambda n: bar.advance(job, n)):
            done = launch(flow_fn, params, cfg.run.stop_timeout_s)
    if done.result is None:
        console.print(f"[red]run {'stopped' if done.stopped else 'failed'}:[/red] {escape(done.error or '')}",
                      highlight=False)
        return EXIT_STOPPED if done.stopped else EXIT_RUN_FAILED
    return summarize(done.result, lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True))


def cmd_verify(args: argparse.Namespace) -> int:
    from ops.config import load_config
    from provenance.errors import SigningError
    from ops.location import is_url
    from ops.store_products import signed_objects
    from provenance.verify import Verification, load_trust_anchors, verify_file
    from stages.errors import StagingError

    try:
        cfg = load_config(args.config)
        if args.trust_anchors:
            anchors, origin = Path(args.trust_anchors).read_text(encoding="utf-8"), args.trust_anchors
        else:
            anchors, origin = load_trust_anchors(cfg.verify)
    except (StagingError, SigningError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    results = []
    for p in args.files:
        if is_url(p):  # an object, or every signed image under a prefix, of an object store
            try:
                found = signed_objects(p, cfg.storage.endpoint_url, cfg.storage.region)
            except StagingError as exc:
                found = [(p, None, str(exc))]
            for url, data, why in found:
                if data is None:
                    results.append(Verification(url, False, None, [why], False, None))
                else:
                    results.append(dataclasses.replace(verify_file(Path(PurePosixPath(url).name), anchors, data),
                                                       path=url))
        else:
            results.append(verify_file(Path(p), anchors))
    if args.json:
        print(json.dumps([{"path": r.path, "ok": r.ok, "trusted": r.trusted, "state": r.state,
                           "failures": r.failures} for r in results], indent=2))
    else:
        print(f"trust anchors: {origin}", file=sys.stderr)
        for r in results:
            status = "OK" if r.ok else "FAIL"
            trust = "trusted" if r.trusted else "untrusted signer"
            detail = trust if r.ok else "; ".join(r.failures) or (r.state or "unreadable")
            print(f"{status}  {r.path}  ({r.state}; {detail})")
    return EXIT_OK if all(r.ok for r in results) else EXIT_RUN_FAILED


def cmd_reproduce(args: argparse.Namespace) -> int:
    from ops.config import load_config
    from ops.reproduce import IDENTICAL, reproduce

    cfg = load_config(args.config)
    out = Path(args.out) if args.out else None
    result = reproduce(Path(args.image), cfg, source=args.source, reference=args.reference, out=out)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(f"{result.image}: {result.line()}")
        for note in result.notes:
            print(f"  note: {note}")
        if result.staged and out is not None:
            print(f"  staged again: {result.staged}")
    return EXIT_OK if result.outcome == IDENTICAL else EXIT_RUN_FAILED


def cmd_keys_init(args: argparse.Namespace) -> int:
    from provenance.keys import DEV_WARNING, init_dev_keys

    keys = init_dev_keys(Path(args.dir) if args.dir else None, force=args.force)
    print(f"development signing keys in {keys.directory}")
    print(f"  CA certificate: {keys.ca_pem}\n  signer chain:   {keys.chain_pem}\n  signer key:     {keys.key_pem}")
    print(DEV_WARNING, file=sys.stderr)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stage", description="Product staging pipeline")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="stage every product of a catalog (CSV, XLSX or Parquet; a path or a URL)")
    run.add_argument("catalog", help="catalog file or URL: .csv, .xlsx, .parquet; s3://, gs://, file://, ...")
    run.add_argument("--sheet", help="worksheet of an XLSX catalog (default: the first)")
    run.add_argument("--config", default=_default_config(),
                     help="config.toml (default: ./config.toml when there is one, else the built-in defaults)")
    run.add_argument("--out", help="output folder or object-store URL: s3://bucket/prefix, gs://... "
                                   "(default: [run].output_dir)")
    run.add_argument("--shard", type=int, default=0, help="stage only this share of the catalog (0-based; "
                                                          "with --shards, one per worker)")
    run.add_argument("--shards", type=int, default=1, help="how many shares the catalog is split over")
    run.add_argument("--force", action="store_true", help="regenerate products whose inputs did not change")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--verbose", action="store_true", help="show Prefect's INFO logs")
    run.set_defaults(func=cmd_run)
    verify = sub.add_parser("verify", help="verify the content credentials of images")
    verify.add_argument("files", nargs="+", help="image files, or object URLs (s3://, gs://): an image, or a "
                                                "prefix whose signed images are all verified")
    verify.add_argument("--config", default=_default_config())
    verify.add_argument("--trust-anchors", help="PEM bundle of trusted root certificates")
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.set_defaults(func=cmd_verify)
    again = sub.add_parser("reproduce", help="stage a published image again from its content credentials and "
                                             "compare the pixels (exit 0: identical)")
    again.add_argument("image", help="a published master image (<sku>.png or <sku>-v<n>.png)")
    again.add_argument("--source", help="the source photo (default: the one the product's record names); its "
                                        "SHA-256 must match the credentials")
    again.add_argument("--reference", help="the style reference image, when the image was made with one")
    again.add_argument("--out", help="keep the product staged again in this new or empty folder (default: a temporary folder)")
    again.add_argument("--config", default=_default_config(),
                       help="this machine's config.toml: where photos may be read from; every output setting "
                            "comes from the image's credentials")
    again.add_argument("--json", action="store_true", help="machine-readable output")
    again.set_defaults(func=cmd_reproduce)
    keys = sub.add_parser("keys", help="signing keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    init = keys_sub.add_parser("init", help="make a development CA and signer (untrusted) outside the repo")
    init.add_argument("--dir", help="where to put them (default: $STAGE_KEYS_DIR or ~/.config/product-staging/keys)")
    init.add_argument("--force", action="store_true", help="replace existing keys")
    init.set_defaults(func=cmd_keys_init)
    from flows.deploy_cli import add_parsers  # stage rerun / deploy / serve

    add_parsers(sub, _default_config())
    from flows.review_cli import add_parsers as add_review  # stage review list / approve / reject / reset

    add_review(sub, _default_config())
    from flows.doctor_cli import add_parsers as add_doctor  # stage doctor

    add_doctor(sub, _default_config())
    from flows.report_cli import add_parsers as add_report  # stage report RUN_ID

    add_report(sub, _default_config())
    from flows.serve_outputs_cli import add_parsers as add_serve_outputs  # stage serve-outputs

    add_serve_outputs(sub, _default_config())
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. An expected error a command does not handle itself (a bad config file, an
    output location refused, a signing problem) ends it with its message and exit code 1, never a
    traceback: the commands leave those to this one place."""
    from ops.errors import EXPECTED

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EXPECTED as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED


if __name__ == "__main__":
    sys.exit(main())
