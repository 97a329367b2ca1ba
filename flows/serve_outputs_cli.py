"""`stage serve-outputs`: serve the output folder read-only over HTTP, for the previews in the Prefect UI."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from flows.exitcodes import EXIT_OK, EXIT_RUN_FAILED

DEFAULT_PORT = 8780


def cmd_serve_outputs(args: argparse.Namespace) -> int:
    from ops.config import load_config
    from ops.preview_server import OutputServer, loopback
    from ops.runlock import output_root

    cfg = load_config(args.config)
    where = args.out or cfg.run.output_dir
    if "://" in where:
        print(f"error: {where} is an object-store location: nothing to serve from this machine; its previews "
              "are presigned links (leave [previews] base_url empty)", file=sys.stderr)
        return EXIT_RUN_FAILED
    try:
        server = OutputServer(output_root(cfg, args.out), args.host, args.port)
    except (OSError, ValueError) as exc:  # no such folder, port in use, an address this machine does not have
        print(f"error: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    print(f"serving {server.root} read-only (images, records, run reports) at {server.url}")
    print(f'for previews in the Prefect UI, set in {cfg.path or "config.toml"}:  [previews] base_url = "{server.url}"')
    if not loopback(args.host):
        print(f"warning: listening on {args.host}: whoever reaches this port can read the outputs", file=sys.stderr)
    sys.stdout.flush()

    def stop(signum: int, _frame: object) -> None:  # shutdown() waits for serve_forever: not from its thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("stopped", file=sys.stderr)
    return EXIT_OK


def add_parsers(sub: argparse._SubParsersAction, default_config: str | None) -> None:
    serve = sub.add_parser("serve-outputs", help="serve the output folder read-only over HTTP (thumbnails and "
                                                 "report links in the Prefect UI: [previews] base_url)")
    serve.add_argument("--out", help="output folder (default: [run].output_dir)")
    serve.add_argument("--config", default=default_config,
                       help="config.toml (default: ./config.toml when there is one, else the built-in defaults)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free one)")
    serve.set_defaults(func=cmd_serve_outputs)
