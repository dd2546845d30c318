"""``wasmlet run``: one request through one module, in-process, for development."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ._errors import ConfigError, GuestError
from .control import plan_for_module
from .guest import CgiRequest
from .server import Host

__all__ = ["run_once"]


def run_once(
    module: Path,
    *,
    method: str = "GET",
    target: str = "/",
    headers: Sequence[str] = (),
    data: str | None = None,
    env: Sequence[str] = (),
    memory_limit: str = "128Mi",
    timeout: str = "10s",
    cache_dir: Path | None = None,
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Return the status, headers and body the module answers with."""
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
        body = Path(data[1:]).read_bytes() if data.startswith("@") else data.encode()
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
            return exc.status, [("x-wasmlet-error", exc.cause)], f"{exc}\n".encode()
        response = result.response
        return (response.status, [(n.decode("latin-1"), v.decode("latin-1")) for n, v in response.headers],
                response.body)
    finally:
        host.close()
