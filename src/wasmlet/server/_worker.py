"""One worker process: the ASGI app under uvicorn on a socket inherited from the supervisor.

Run as ``python -m wasmlet.server._worker --fd N --plan FILE``. uvicorn owns
the worker's signals: SIGTERM stops accepting and drains in-flight requests
(up to ``--drain``), a second SIGINT forces the exit. Its HTTP protocol is
uvicorn's httptools one with a header deadline, a per-client connection cap
and lingering close added (``_protocol``). With ``--board``, it accepts only
while it holds no more connections than its peers (``_balance``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from pathlib import Path
from typing import cast

import uvicorn

from .._errors import ConfigError
from .._logging import configure_logging
from ..plan import Plan
from ..telemetry import RequestTelemetry, configure_tracing
from ._asgi import WasmletApp
from ._balance import SLOTS, BalancedAcceptor, Board
from ._priority import apply_priority
from ._protocol import TrustedProxies, guarded_protocol
from ._settings import ServeSettings, parse_forwarded_allow_ips

_DEFAULTS = ServeSettings()


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this worker if the supervisor dies (prctl(2) PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _return_freed_memory() -> None:
    """Make glibc give large freed blocks back to the kernel (mallopt(3)).

    By default glibc raises its mmap threshold to the size of each large block
    freed, so after a burst of big request bodies later ones come from the heap,
    where freed memory stays in the process (a worker kept 664 MB after 60
    unfinished 10 MiB uploads had gone). A fixed threshold keeps every block of
    128 KiB or more in its own mapping, unmapped when freed.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        m_mmap_threshold = -3
        libc.mallopt(m_mmap_threshold, 128 * 1024)


class BalancedServer(uvicorn.Server):
    """uvicorn's server, accepting through a ``BalancedAcceptor`` (``_balance``) instead of ``create_server``."""

    def __init__(self, config: uvicorn.Config, board: Board, slot: int) -> None:
        super().__init__(config)
        self.board = board
        self.slot = slot

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the lifespan, and no listener of uvicorn's own
        loop = asyncio.get_running_loop()
        config = self.config

        def create_protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state)

        for sock in sockets or []:
            acceptor = BalancedAcceptor(loop, sock, create_protocol, self.board, self.slot)
            acceptor.start()
            self.servers.append(cast(asyncio.base_events.Server, acceptor))  # has close() and wait_closed()


def _server(config: uvicorn.Config, board_path: str | None, slot: int) -> uvicorn.Server:
    """A balancing server with a board (``--board``), uvicorn's own without, or if the board is unusable."""
    if board_path is None:
        return uvicorn.Server(config)
    try:
        return BalancedServer(config, Board.open(Path(board_path)), slot)
    except ConfigError as exc:
        logging.getLogger("wasmlet.server").warning("%s; accepting without connection balancing", exc)
        return uvicorn.Server(config)


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
    parser.add_argument("--forwarded-allow-ips", default="", help="proxies trusted to set X-Forwarded-For")
    parser.add_argument("--header-timeout", type=float, default=_DEFAULTS.header_timeout)
    parser.add_argument("--client-connections", type=int, default=_DEFAULTS.client_connections)
    parser.add_argument("--body-memory", type=int, default=_DEFAULTS.body_memory)
    parser.add_argument("--board", default=None, help="the supervisor's connection board (_balance)")
    parser.add_argument("--slot", type=int, default=0, choices=range(SLOTS), metavar="N",
                        help="this worker's slot on --board")
    parser.add_argument("--priority", type=int, default=None, metavar="NICE",
                        help="this worker's nice value, for every thread it has and starts (_priority)")
    args = parser.parse_args(argv)
    refused = None
    if args.priority is not None:
        try:
            apply_priority(args.priority)  # first: the threads started below inherit it
        except ConfigError as exc:  # the supervisor checked; the limits changed since: serve all the same
            refused = exc
    _die_with_parent()
    _return_freed_memory()
    configure_logging(args.log_level, app_log=f"{args.log_dir}/{os.getpid()}.jsonl" if args.log_dir else None)
    if refused is not None:
        logging.getLogger("wasmlet.server").warning("%s; this worker serves at its inherited priority", refused)
    with open(args.plan, encoding="utf-8") as handle:
        plan = Plan.from_json(handle.read())
    configure_tracing(args.otlp)
    app = WasmletApp(plan, threads=args.threads, ready_file=args.ready_file, plan_file=args.plan,
                     telemetry=RequestTelemetry(metrics=not args.no_metrics), body_memory=args.body_memory)
    forwarded = parse_forwarded_allow_ips(args.forwarded_allow_ips)
    sock = socket.socket(fileno=args.fd)
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http=guarded_protocol(args.header_timeout, args.client_connections, TrustedProxies(forwarded)),
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
        # X-Forwarded-For and -Proto only from the proxies the operator lists. uvicorn's
        # default trusts 127.0.0.1, so any local client would pick its REMOTE_ADDR
        # and its rate-limit bucket.
        proxy_headers=bool(forwarded),
        forwarded_allow_ips=list(forwarded) if forwarded else None,
    )
    server = _server(config, args.board, args.slot)
    server.run(sockets=[sock])
    logging.getLogger("wasmlet.server").info("worker stopped")
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
