"""`stage rerun`, `stage deploy` and `stage serve`: the operations side of the `stage` command."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from flows.exitcodes import EXIT_OK, EXIT_RUN_FAILED, EXIT_STOPPED

REPO = Path(__file__).resolve().parent.parent
PREFECT_YAML = REPO / "prefect.yaml"


def cmd_rerun(args: argparse.Namespace) -> int:
    from flows.launch import launch, prefect_env, stderr, summarize

    prefect_env(args.verbose)
    from flows.rerun import rerun_skus
    from ops.config import load_config
    from ops.errors import EXPECTED

    try:
        bound = load_config(args.config).run.stop_timeout_s
    except EXPECTED as exc:
        print(f"rerun failed: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    done = launch(rerun_skus, {"skus": args.sku, "reason": args.reason, "catalog": args.catalog, "config": args.config,
                               "out": args.out, "prompt": args.prompt, "seed": args.seed, "variants": args.variants,
                               "sheet": args.sheet},
                  bound)
    if done.result is None:
        print(f"rerun {'stopped' if done.stopped else 'failed'}: {done.error}", file=sys.stderr)
        return EXIT_STOPPED if done.stopped else EXIT_RUN_FAILED
    return summarize(done.result, stderr)


def schedule_mismatch(config: str | None, prefect_yaml: Path = PREFECT_YAML) -> str | None:
    """Why prefect.yaml's `nightly` schedule differs from config.toml's [schedule], or None."""
    from ops.config import load_config

    cfg = load_config(config)
    spec = yaml.safe_load(prefect_yaml.read_text(encoding="utf-8"))
    nightly = next((d for d in spec.get("deployments") or [] if d.get("name") == "nightly"), None)
    if nightly is None:
        return f"{prefect_yaml}: no deployment named 'nightly'"
    schedules = nightly.get("schedules") or []
    if len(schedules) != 1:
        return f"{prefect_yaml}: the nightly deployment must have exactly one schedule, has {len(schedules)}"
    got = (schedules[0].get("cron"), schedules[0].get("timezone"))
    want = (cfg.schedule.cron, cfg.schedule.timezone)
    if got != want:
        return (f"{prefect_yaml} schedules nightly at cron {got[0]!r} timezone {got[1]!r}, but [schedule] in "
                f"{config or 'the default config'} says cron {want[0]!r} timezone {want[1]!r}: make them agree")
    return None


def _prefect(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect"
    return subprocess.run([exe, *argv], cwd=REPO, text=True, capture_output=True, check=check)


def cmd_deploy(args: argparse.Namespace) -> int:
    from flows.launch import prefect_env

    prefect_env()
    from ops.errors import EXPECTED

    try:
        problem = schedule_mismatch(args.config)
    except (*EXPECTED, OSError, yaml.YAMLError) as exc:
        problem = str(exc)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_RUN_FAILED
    if args.check:
        print("prefect.yaml agrees with config.toml's [schedule]")
        return EXIT_OK
    if not os.environ.get("PREFECT_API_URL"):
        print("error: PREFECT_API_URL is not set: start a server (`prefect server start`) and point at it, e.g. "
              "`export PREFECT_API_URL=http://127.0.0.1:4200/api`", file=sys.stderr)
        return EXIT_RUN_FAILED
    created = _prefect("work-pool", "create", args.pool, "--type", "process", check=False)
    if created.returncode != 0 and "already exists" not in (created.stdout + created.stderr):
        print(created.stdout + created.stderr, file=sys.stderr)
        return EXIT_RUN_FAILED
    try:
        _prefect("work-pool", "set-concurrency-limit", args.pool, str(args.pool_limit))
        done = subprocess.run([sys.executable, "-m", "flows.prefect_compat", "deploy", "--all", "--prefect-file",
                               str(PREFECT_YAML)], cwd=REPO, text=True, capture_output=True, check=True)
    except subprocess.CalledProcessError as exc:
        print(f"error: {' '.join(exc.cmd[1:3])} failed:\n{exc.stdout}{exc.stderr}", file=sys.stderr)
        return EXIT_RUN_FAILED
    print(done.stdout.strip())
    print(f"deployed; start a worker with: prefect worker start --pool {args.pool}")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    """The flows served from this process (no work pool or worker needed) against a running server."""
    from flows.launch import prefect_env

    prefect_env()
    if not os.environ.get("PREFECT_API_URL"):
        print("error: PREFECT_API_URL is not set: start a server first (`prefect server start`) and "
              "`export PREFECT_API_URL=http://127.0.0.1:4200/api`", file=sys.stderr)
        return EXIT_RUN_FAILED
    from prefect import serve
    from prefect.schedules import Cron

    from flows.nightly import nightly_catalog_run
    from flows.rerun import rerun_skus
    from flows.review_decisions import review_decisions
    from ops.config import load_config

    cfg = load_config(args.config)
    params = {"catalog": args.catalog, "config": str(Path(args.config).resolve()) if args.config else None,
              "sheet": args.sheet}
    serve(
        nightly_catalog_run.to_deployment(name="nightly", parameters=params,
                                          schedules=[Cron(cfg.schedule.cron, timezone=cfg.schedule.timezone)]),
        rerun_skus.to_deployment(name="rerun", parameters=params),
        review_decisions.to_deployment(name="review", parameters={"config": params["config"]}),
        limit=args.limit,
    )
    return EXIT_OK


def add_parsers(sub: Any, default_config: str | None) -> None:
    rerun = sub.add_parser("rerun", help="regenerate some SKUs of a catalog, optionally with overrides")
    rerun.add_argument("catalog", help="catalog file or URL (CSV, XLSX, Parquet) that holds the SKUs")
    rerun.add_argument("--sheet", help="worksheet of an XLSX catalog (default: the first)")
    rerun.add_argument("--sku", action="append", required=True, help="SKU to rerun (repeat for more)")
    rerun.add_argument("--reason", required=True, help="why (kept in the report and the ledger)")
    rerun.add_argument("--prompt", help="scene prompt instead of the catalog's")
    rerun.add_argument("--seed", type=int, help="seed instead of the catalog's")
    rerun.add_argument("--variants", type=int, help="number of variants instead of the catalog's")
    rerun.add_argument("--config", default=default_config)
    rerun.add_argument("--out", help="output folder or object-store URL (default: [run].output_dir)")
    rerun.add_argument("--verbose", action="store_true", help="show Prefect's INFO logs")
    rerun.set_defaults(func=cmd_rerun)
    deploy = sub.add_parser("deploy", help="create the work pool and the deployments of prefect.yaml")
    deploy.add_argument("--config", default=default_config)
    deploy.add_argument("--check", action="store_true", help="only check that prefect.yaml agrees with config.toml")
    deploy.add_argument("--pool", default="staging", help="process work pool (default: staging)")
    deploy.add_argument("--pool-limit", type=int, default=1, help="flow runs at once in the pool (default 1: one GPU)")
    deploy.set_defaults(func=cmd_deploy)
    serve = sub.add_parser("serve", help="serve the nightly (scheduled) and rerun deployments from this process")
    serve.add_argument("--catalog", default="catalog/demo.csv", help="the nightly run's catalog file or URL")
    serve.add_argument("--sheet", help="worksheet of an XLSX catalog (default: the first)")
    serve.add_argument("--config", default=default_config)
    serve.add_argument("--limit", type=int, default=1, help="flow runs at once (default 1: one GPU)")
    serve.set_defaults(func=cmd_serve)
