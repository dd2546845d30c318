"""Settings of ``wasmlet serve``: where to listen and how many workers."""

from __future__ import annotations

import dataclasses
import os

from .._errors import ConfigError

__all__ = ["ServeSettings", "parse_listen"]

SERVERS = ("uvicorn", "granian")


def parse_listen(text: str) -> tuple[str, int]:
    """``ADDR:PORT`` (``[::1]:PORT`` for IPv6) to a host and port."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen: expected ADDR:PORT such as 127.0.0.1:3000, got {text!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


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
    watchdog_memory_growth: float = 2 * 1024 * 1024  # bytes per minute
    watchdog_window: float = 60.0
    watchdog_interval: float = 5.0

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"--workers: expected 1 or more, got {self.workers}")
        if self.threads < 1:
            raise ConfigError(f"--threads: expected 1 or more, got {self.threads}")
        if self.watchdog_window <= 0 or self.watchdog_interval <= 0:
            raise ConfigError("--watchdog-window and --watchdog-interval: expected values above zero")
        if self.server not in SERVERS:
            raise ConfigError(f"--server: expected one of {', '.join(SERVERS)}, got {self.server!r}")
