"""Settings of ``wasmlet serve``: where to listen and how many workers."""

from __future__ import annotations

import dataclasses
import ipaddress
import os

from .._errors import ConfigError
from ..plan import parse_quantity
from ._priority import HIGHEST, LOWEST

__all__ = [
    "METRICS_ENV",
    "PLAN_ENV",
    "THREADS_ENV",
    "WATCHDOG_INTERVAL",
    "WATCHDOG_MEMORY_GROWTH",
    "WATCHDOG_WARMUP",
    "WATCHDOG_WINDOW",
    "ServeSettings",
    "parse_forwarded_allow_ips",
    "parse_listen",
]

SERVERS = ("uvicorn", "granian")

# How a server that imports the ASGI app by name (granian) passes a worker its settings: here, not in
# `_asgi`, so that the supervisor sets them without importing the worker's side.
PLAN_ENV = "WASMLET_PLAN"
THREADS_ENV = "WASMLET_THREADS"
METRICS_ENV = "WASMLET_METRICS"

# The memory watchdog's defaults, defined here only (``wasmlet serve``'s options show them).
# Chosen from bench/watchdog_baseline.py: a healthy worker's RSS rises while its allocator
# arenas and warm pool slots fill, then stays flat, so it is judged only after the warm-up,
# and then against the seed's threshold (figures in docs/benchmarks.md).
WATCHDOG_MEMORY_GROWTH = "2Mi"  # a quantity per minute (--watchdog-memory-growth)
WATCHDOG_WINDOW = 60.0  # seconds of RSS history the growth is fitted over
WATCHDOG_INTERVAL = 5.0  # seconds between RSS samples
WATCHDOG_WARMUP = 180.0  # seconds after a worker starts before its growth is judged


def parse_listen(text: str) -> tuple[str, int]:
    """``ADDR:PORT`` (``[::1]:PORT`` for IPv6) to a host and port."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen: expected ADDR:PORT such as 127.0.0.1:3000, got {text!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def parse_forwarded_allow_ips(text: str) -> tuple[str, ...]:
    """``--forwarded-allow-ips``: comma-separated addresses and networks (``10.0.0.0/8``), or ``*``.

    Only connections from these proxies may set the client's address and scheme
    with ``X-Forwarded-For`` and ``X-Forwarded-Proto``; an empty list trusts no one.
    """
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if "*" in items:
        return ("*",)
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(
                f"--forwarded-allow-ips: expected IP addresses or networks such as 10.0.0.1,10.1.0.0/16 "
                f"(or *), got {item[:80]!r}"
            ) from None
    return items


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 3000  # Spin's default
    workers: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    threads: int = 16  # guest threads per worker process
    server: str = "uvicorn"
    drain_timeout: float = 30.0
    backlog: int = 2048
    admin: tuple[str, int] | None = ("127.0.0.1", 9180)  # None: no admin listener
    otlp: bool = False
    metrics: bool = True
    watchdog_memory_growth: float = parse_quantity(WATCHDOG_MEMORY_GROWTH)  # bytes per minute
    watchdog_window: float = WATCHDOG_WINDOW
    watchdog_interval: float = WATCHDOG_INTERVAL
    watchdog_warmup: float = WATCHDOG_WARMUP
    # The HTTP surface (per worker process, uvicorn only; see docs/security.md):
    forwarded_allow_ips: tuple[str, ...] = ()  # proxies trusted to set X-Forwarded-For; none by default
    header_timeout: float = 10.0  # seconds to receive a request's headers
    client_connections: int = 64  # open connections per client address (IPv6: per /64); trusted proxies exempt
    body_memory: int = 256 * 1024 * 1024  # bytes of request bodies held at once
    worker_priority: int | None = None  # the workers' nice value (``_priority``); None: the supervisor's

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"--workers: expected 1 or more, got {self.workers}")
        if self.threads < 1:
            raise ConfigError(f"--threads: expected 1 or more, got {self.threads}")
        if self.watchdog_window <= 0 or self.watchdog_interval <= 0:
            raise ConfigError("--watchdog-window and --watchdog-interval: expected values above zero")
        if self.watchdog_warmup < 0:
            raise ConfigError(f"--watchdog-warmup: expected seconds, 0 or more, got {self.watchdog_warmup:g}")
        if self.server not in SERVERS:
            raise ConfigError(f"--server: expected one of {', '.join(SERVERS)}, got {self.server!r}")
        if self.header_timeout <= 0:
            raise ConfigError(f"--header-timeout: expected seconds above zero, got {self.header_timeout:g}")
        if self.client_connections < 1:
            raise ConfigError(f"--max-client-connections: expected 1 or more, got {self.client_connections}")
        if self.body_memory < 1:
            raise ConfigError(f"--body-memory: expected a quantity above zero, got {self.body_memory}")
        if self.worker_priority is not None:
            if not HIGHEST <= self.worker_priority <= LOWEST:
                raise ConfigError(f"--worker-priority: expected a nice value from {HIGHEST} (the highest priority) "
                                  f"to {LOWEST} (the lowest), got {self.worker_priority}")
            if self.server == "granian":
                # granian forks its own workers, which never see the value.
                raise ConfigError("--worker-priority: not supported with --server granian")
        if self.forwarded_allow_ips and self.server == "granian":
            # granian never reads X-Forwarded-For: the list would be silently ignored.
            raise ConfigError("--forwarded-allow-ips: not supported with --server granian")

    def worker_http_args(self) -> list[str]:
        """The HTTP-surface settings as ``wasmlet.server._worker`` arguments."""
        return ["--forwarded-allow-ips", ",".join(self.forwarded_allow_ips),
                "--header-timeout", repr(self.header_timeout),
                "--client-connections", str(self.client_connections),
                "--body-memory", str(self.body_memory)]
