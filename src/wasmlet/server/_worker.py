"""One worker process: the ASGI app under uvicorn on a socket inherited from the supervisor.

Run as ``python -m wasmlet.server._worker --fd N --plan FILE``. uvicorn owns
the worker's signals: SIGTERM stops accepting and drains in-flight requests
(up to ``--drain``), a second SIGINT forces the exit.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

import uvicorn

from .._logging import configure_logging
from ..plan import Plan
from ..telemetry import RequestTelemetry, configure_tracing
from ._asgi import WasmletApp


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this worker if the supervisor dies (prctl(2) PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wasmlet-worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--plan", required=True)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--drain", type=float, default=30.0)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--ready-file", default=None, help="touched once the worker serves")
    parser.add_argument("--otlp", action="store_true", help="export traces over OTLP")
    parser.add_argument("--no-metrics", action="store_true", help="record no Prometheus metrics")
    parser.add_argument("--log-dir", default=None, help="also write app log records here (for `wasmlet logs`)")
    args = parser.parse_args(argv)
    _die_with_parent()
    configure_logging(args.log_level, app_log=f"{args.log_dir}/{os.getpid()}.jsonl" if args.log_dir else None)
    with open(args.plan, encoding="utf-8") as handle:
        plan = Plan.from_json(handle.read())
    configure_tracing(args.otlp)
    app = WasmletApp(plan, threads=args.threads, ready_file=args.ready_file, plan_file=args.plan,
                     telemetry=RequestTelemetry(metrics=not args.no_metrics))
    sock = socket.socket(fileno=args.fd)
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=args.drain,
        server_header=False,
        date_header=True,
        # Bounded resources against connection floods and slow clients: past this
        # many connections uvicorn answers 503; idle keep-alive connections close.
        limit_concurrency=4096,
        timeout_keep_alive=5,
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    logging.getLogger("wasmlet.server").info("worker stopped")
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
