"""``wasmlet run``: one request through one module, in-process, for development."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ._errors import ConfigError, GuestError
from .control import plan_for_module
from .guest import CgiRequest
from .server import Host

__all__ = ["RunResult", "run_once"]


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What one request through a module produced: the HTTP response and the guest's stderr."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    stderr: bytes  # what the guest wrote to stderr, whether it answered or failed


def run_once(
    module: Path,
    *,
    method: str | None = None,
    target: str = "/",
    headers: Sequence[str] = (),
    data: str | None = None,
    env: Sequence[str] = (),
    memory_limit: str = "128Mi",
    timeout: str = "10s",
    cache_dir: Path | None = None,
) -> RunResult:
    """Return what the module answers with, and what it wrote to stderr.

    ``method`` None: POST if there is a body (``data``), else GET, as curl does with ``-d``.
    """
    environment = []
    for item in env:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--env: expected NAME=VALUE, got {item!r}")
        environment.append({"name": name, "value": value})
    pairs = []
    for item in headers:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise ConfigError(f"--header: expected 'Name: value', got {item!r}")
        pairs.append((name.strip().lower(), value.strip()))
    body = b""
    if data is not None:
        try:
            body = Path(data[1:]).read_bytes() if data.startswith("@") else data.encode()
        except OSError as exc:
            raise ConfigError(f"--data: cannot read {data[1:]}: {exc.strerror or exc}") from exc
    if method is None:
        method = "GET" if data is None else "POST"
    if data is not None and not any(name == "content-type" for name, _ in pairs):
        pairs.append(("content-type", "application/x-www-form-urlencoded"))  # what curl -d sends
    parts = urlsplit(target)
    plan = plan_for_module(module, cache_dir=cache_dir, memoryLimit=memory_limit, timeout=timeout,
                           environment=environment)
    host = Host(plan)
    host.start()
    try:
        app = next(iter(host.apps.values()))
        request = CgiRequest(
            method=method.upper(), path=unquote(parts.path or "/"), raw_path=parts.path or "/",
            query=parts.query, headers=(("host", "localhost"), *pairs), body=body,
        )
        try:
            result = app.handler.handle(request)
        except GuestError as exc:
            return RunResult(exc.status, [("x-wasmlet-error", exc.cause)], f"{exc}\n".encode(), exc.stderr)
        response = result.response
        return RunResult(response.status,
                         [(n.decode("latin-1"), v.decode("latin-1")) for n, v in response.headers],
                         response.body, result.stderr)
    finally:
        host.close()
