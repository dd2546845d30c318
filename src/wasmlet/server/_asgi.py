"""The ASGI application: routes HTTP requests to guests on worker threads.

Raw ASGI rather than a framework: the request path is short and measured
(``bench/``), and the only endpoints besides guests are two health checks under
``/.well-known/wasmlet/`` (RFC 8615 reserves ``/.well-known/`` so they never
shadow a guest's routes).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .._deploy import Plan
from .._errors import GuestError
from ..guest import CgiRequest, GuestResult
from ._host import App, Host

__all__ = ["WasmletApp", "create_app"]

log = logging.getLogger("wasmlet.server")
guest_log = logging.getLogger("wasmlet.guest")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HEALTH_PATH = "/.well-known/wasmlet/health"
READY_PATH = "/.well-known/wasmlet/ready"
PLAN_ENV = "WASMLET_PLAN"
THREADS_ENV = "WASMLET_THREADS"

_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]


class _BodyTooLarge(Exception):
    pass


class WasmletApp:
    """ASGI 3 application serving one plan."""

    def __init__(self, plan: Plan, threads: int = 16) -> None:
        self.plan = plan
        self.threads = threads
        self.host: Host | None = None
        self.ready = False
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    # Lifecycle ----------------------------------------------------------
    def startup(self) -> None:
        self.host = Host(self.plan)
        self.host.start()
        self._pool = concurrent.futures.ThreadPoolExecutor(self.threads, thread_name_prefix="wasmlet-guest")
        self.ready = True
        log.info("worker %d ready: %d app(s)", os.getpid(), len(self.host.apps))

    def shutdown(self) -> None:
        self.ready = False
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self.host is not None:
            self.host.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await asyncio.get_running_loop().run_in_executor(None, self.startup)
                except Exception as exc:
                    log.exception("worker start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # Requests -----------------------------------------------------------
    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path.startswith("/.well-known/wasmlet/"):
            await self._wellknown(path, send)
            return
        host = self.host
        if host is None or not self.ready:
            await _respond(send, 503, b"not ready\n")
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        host_header = None
        for name, value in headers:
            if name == b"host":
                host_header = value.decode("latin-1")
                break
        route = host.router.match(host_header, path)
        if route is None:
            await _respond(send, 404, b"no app is routed here\n")
            return
        app = route.target
        try:
            body = await _read_body(receive, headers, app.max_body_size)
        except _BodyTooLarge:
            await _respond(send, 413, b"request body too large\n", cause=b"body-limit")
            return
        request = _cgi_request(scope, headers, body)
        loop = asyncio.get_running_loop()
        try:
            result: GuestResult = await loop.run_in_executor(self._pool, app.handler.handle, request)
        except GuestError as exc:
            self._log_failure(app, exc)
            await _respond(send, exc.status, f"{exc.status} {exc.cause}\n".encode(), cause=exc.cause.encode())
            return
        if result.stderr:
            _log_stderr(app.name, result.stderr)
        response = result.response
        await send({
            "type": "http.response.start",
            "status": response.status,
            "headers": [*response.headers, (b"content-length", str(len(response.body)).encode())],
        })
        await send({"type": "http.response.body", "body": response.body})

    async def _wellknown(self, path: str, send: Send) -> None:
        if path == HEALTH_PATH:
            await _respond(send, 200, b"ok\n")
        elif path == READY_PATH:
            if self.ready:
                await _respond(send, 200, b"ready\n")
            else:
                await _respond(send, 503, b"not ready\n")
        else:
            await _respond(send, 404, b"not found\n")

    def _log_failure(self, app: App, exc: GuestError) -> None:
        log.warning("app=%s cause=%s status=%d %s", app.name, exc.cause, exc.status, exc)
        stderr = getattr(exc, "stderr", b"")
        if stderr:
            _log_stderr(app.name, stderr)


def _log_stderr(app: str, stderr: bytes) -> None:
    for line in stderr.decode("utf-8", "replace").splitlines():
        guest_log.info("app=%s stderr: %s", app, line)


async def _respond(send: Send, status: int, body: bytes, cause: bytes | None = None) -> None:
    headers = [*_TEXT, (b"content-length", str(len(body)).encode())]
    if cause is not None:
        headers.append((b"x-wasmlet-error", cause))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, headers: list[tuple[bytes, bytes]], limit: int) -> bytes:
    for name, value in headers:
        if name == b"content-length":
            try:
                if int(value) > limit:
                    raise _BodyTooLarge
            except ValueError:
                pass  # the HTTP server has already refused a malformed length
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _BodyTooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _cgi_request(scope: Scope, headers: list[tuple[bytes, bytes]], body: bytes) -> CgiRequest:
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    raw_path = scope.get("raw_path")
    return CgiRequest(
        method=scope["method"],
        path=scope["path"],
        raw_path=raw_path.decode("latin-1") if raw_path else scope["path"],
        query=scope.get("query_string", b"").decode("latin-1"),
        headers=tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in headers),
        body=body,
        scheme=scope.get("scheme", "http"),
        server_name=str(server[0]),
        server_port=int(server[1] or 80),
        remote_addr=str(client[0]),
        remote_port=int(client[1] or 0),
        http_version=scope.get("http_version", "1.1"),
    )


def create_app() -> WasmletApp:
    """ASGI factory for servers that import the app (granian): the plan comes from ``$WASMLET_PLAN``."""
    plan_path = os.environ[PLAN_ENV]
    with open(plan_path, encoding="utf-8") as handle:
        plan = Plan.from_json(handle.read())
    return WasmletApp(plan, threads=int(os.environ.get(THREADS_ENV, "16")))
