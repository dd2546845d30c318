"""The ASGI application: routes HTTP requests to guests on worker threads.

Raw ASGI rather than a framework: the request path is short and measured
(``bench/``), and the only endpoints besides guests are two health checks under
``/.well-known/wasmlet/`` (RFC 8615 reserves ``/.well-known/`` so they never
shadow a guest's routes).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from .._errors import GuestError, Rejected
from .._files import atomic_write
from ..guest import CgiRequest, GuestResult, GuestStats
from ..plan import Plan
from ..telemetry import CpuStreaks, RequestTelemetry
from ._guard import Guards
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
METRICS_ENV = "WASMLET_METRICS"
MAX_HEADER_BYTES = 32 * 1024  # all request header fields together
BODY_TIMEOUT = 30.0  # seconds to receive a whole request body
PLAN_POLL = 0.02  # seconds between checks for a new plan
# Test-only fault injection: bytes each request leaks on the host side, so the
# watchdog's memory signal can be exercised against a real worker.
LEAK_ENV = "WASMLET_TEST_LEAK_BYTES_PER_REQUEST"

# Request ids: a random per-process prefix and a counter. Not uuid4: os.urandom
# releases the GIL, and on a loaded worker the event loop then waits up to a
# switch interval to get it back from the guest threads (bench/profile_server.py).
_ID_PREFIX = secrets.token_hex(4)
_ids = itertools.count(1)

_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]


class _BodyTooLarge(Exception):
    pass


class WasmletApp:
    """ASGI 3 application serving one plan."""

    def __init__(self, plan: Plan, threads: int = 16, telemetry: RequestTelemetry | None = None,
                 ready_file: str | None = None, plan_file: str | None = None) -> None:
        self.plan = plan
        self.ready_file = ready_file
        self.plan_file = plan_file  # re-read when it changes: how the supervisor hands over new versions
        self._plan_stamp: tuple[int, int] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.threads = threads
        self.host: Host | None = None
        self.ready = False
        self.telemetry = telemetry or RequestTelemetry()
        self.watchdog = CpuStreaks()
        self.guards = Guards(threads, metrics=self.telemetry.metrics)
        self._degraded: set[str] = set()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._leak_per_request = int(os.environ.get(LEAK_ENV, "0"))
        self._leaked: list[bytearray] = []

    # Lifecycle ----------------------------------------------------------
    def startup(self) -> None:
        self.host = Host(self.plan)
        self.host.start()
        self._plan_stamp = _stamp(self.plan_file)
        self._pool = concurrent.futures.ThreadPoolExecutor(self.threads, thread_name_prefix="wasmlet-guest")
        self.ready = True
        self._acknowledge()
        log.info("worker %d ready: %d app(s)", os.getpid(), len(self.host.apps))

    def _acknowledge(self) -> None:
        """Tell the supervisor which plan generation this worker serves (atomically)."""
        if self.ready_file and self.host is not None:
            atomic_write(Path(self.ready_file), f"{os.getpid()} {self.host.generation}".encode())

    async def _watch_plan(self) -> None:
        """Apply a newer plan as soon as the supervisor writes one (checked every 20 ms)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(PLAN_POLL)
            stamp = _stamp(self.plan_file)
            if stamp == self._plan_stamp or self.host is None or self.plan_file is None:
                continue
            self._plan_stamp = stamp
            try:
                with open(self.plan_file, encoding="utf-8") as handle:
                    plan = Plan.from_json(handle.read())
                if plan.generation <= self.host.generation:
                    continue
                await loop.run_in_executor(None, self.host.apply, plan)
            except Exception:
                log.exception("cannot apply the new plan; still serving generation %d", self.host.generation)
                continue
            self.plan = plan
            self._acknowledge()
            log.info("worker %d serves generation %d", os.getpid(), plan.generation)

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
                if self.plan_file:
                    self._watcher = asyncio.create_task(self._watch_plan())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._watcher is not None:
                    self._watcher.cancel()
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
        request_id = ""
        header_bytes = 0
        for name, value in headers:
            header_bytes += len(name) + len(value) + 4
            if name == b"host":
                host_header = value.decode("latin-1")
            elif name == b"x-request-id":
                request_id = value.decode("latin-1")[:64]
        if header_bytes > MAX_HEADER_BYTES:  # RFC 6585 section 5
            await _respond(send, 431, b"request header fields too large\n", cause=b"header-limit")
            return
        route = host.router.match(host_header, path)
        if route is None:
            await _respond(send, 404, b"no app is routed here\n")
            return
        slot = route.target
        if slot.blocked:
            await _respond(send, 503, f"503 revoked: {slot.blocked}\n".encode(), cause=b"revoked")
            return
        app = slot.pick(headers)
        request_id = request_id or f"{_ID_PREFIX}{next(_ids):x}"
        guard = self.guards.for_spec(app.spec)
        try:
            guard.admit(str((scope.get("client") or ("", 0))[0]))
        except Rejected as exc:
            guard.rejected(exc)
            await _refuse(send, exc, request_id)
            return
        telemetry = self.telemetry
        span = telemetry.start_request(scope, headers, app.name, route.prefix)
        trace_id = telemetry.trace_id(span)
        started = time.perf_counter()
        status, cause, stats = 500, "", None
        try:
            status, cause, stats = await self._answer(scope, receive, send, app, headers, span, request_id, trace_id)
        finally:
            telemetry.finish_request(span, app.name, route.prefix, status, cause, time.perf_counter() - started,
                                     stats)
        if stats is not None:
            self._watch_cpu(app.name, stats.cpu_seconds, request_id, trace_id)
        if self._leak_per_request:  # fault injection for the watchdog's tests only
            self._leaked.append(bytearray(self._leak_per_request))

    def _watch_cpu(self, app: str, cpu_seconds: float, request_id: str, trace_id: str) -> None:
        """The seed's CPU preemption signal: mark the app degraded on a streak, clear it on a cheap request."""
        if self.watchdog.record(app, cpu_seconds):
            log.warning("app=%s degraded: three requests in a row used more than %.0f ms of CPU",
                        app, self.watchdog.threshold * 1000,
                        extra={"app": app, "request_id": request_id, "trace_id": trace_id})
            self._degraded.add(app)
            self.telemetry.set_degraded(app, True)
        elif app in self._degraded and self.watchdog.streak(app) == 0:
            log.info("app=%s no longer degraded", app, extra={"app": app})
            self._degraded.discard(app)
            self.telemetry.set_degraded(app, False)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, app: App, headers: list[tuple[bytes, bytes]],
        span: Any, request_id: str, trace_id: str,
    ) -> tuple[int, str, GuestStats | None]:
        """Answer one routed request; return its status, failure cause ("" on success) and the guest's stats."""
        ids = [(b"x-request-id", request_id.encode("latin-1"))]
        try:
            body = await asyncio.wait_for(_read_body(receive, headers, app.max_body_size), BODY_TIMEOUT)
        except _BodyTooLarge:
            await _respond(send, 413, b"request body too large\n", cause=b"body-limit", extra=ids)
            return 413, "body-limit", None
        except TimeoutError:  # a client trickling its body holds a connection, never a guest
            await _respond(send, 408, b"request body not received in time\n", cause=b"body-timeout", extra=ids)
            return 408, "body-timeout", None
        request = _cgi_request(scope, headers, body)
        traceparent = self.telemetry.traceparent(span)
        loop = asyncio.get_running_loop()
        fields = {"app": app.name, "request_id": request_id, "trace_id": trace_id}
        guard = self.guards.for_spec(app.spec)
        try:
            async with guard.slot():
                try:
                    result: GuestResult = await loop.run_in_executor(
                        self._pool, app.handler.handle, request, traceparent
                    )
                except GuestError as exc:
                    guard.record(exc)
                    raise
                guard.record(None)
        except Rejected as exc:
            guard.rejected(exc)
            await _refuse(send, exc, request_id)
            return exc.status, exc.cause, None
        except GuestError as exc:
            log.warning("app=%s cause=%s status=%d %s", app.name, exc.cause, exc.status, exc,
                        extra={**fields, "cause": exc.cause, "status": exc.status})
            _log_stderr(exc.stderr, fields)
            await _respond(send, exc.status, f"{exc.status} {exc.cause}\n".encode(), cause=exc.cause.encode(),
                           extra=ids)
            stats = exc.stats if isinstance(exc.stats, GuestStats) else None
            return exc.status, exc.cause, stats
        if result.stderr:
            _log_stderr(result.stderr, fields)
        response = result.response
        await send({
            "type": "http.response.start",
            "status": response.status,
            "headers": [*response.headers, (b"content-length", str(len(response.body)).encode()), *ids],
        })
        await send({"type": "http.response.body", "body": response.body})
        return response.status, "", result.stats

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


def _stamp(path: str | None) -> tuple[int, int] | None:
    try:
        info = os.stat(path) if path else None
    except OSError:
        return None
    return (info.st_ino, info.st_mtime_ns) if info else None


def _log_stderr(stderr: bytes, fields: dict[str, str]) -> None:
    for line in stderr.decode("utf-8", "replace").splitlines():
        guest_log.info("app=%s stderr: %s", fields["app"], line, extra=fields)


async def _refuse(send: Send, exc: Rejected, request_id: str) -> None:
    await _respond(send, exc.status, f"{exc.status} {exc.cause}\n".encode(), cause=exc.cause.encode(),
                   extra=[(b"retry-after", exc.retry_after_header), (b"x-request-id", request_id.encode("latin-1"))])


async def _respond(
    send: Send, status: int, body: bytes, cause: bytes | None = None, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [*_TEXT, (b"content-length", str(len(body)).encode())]
    if cause is not None:
        headers.append((b"x-wasmlet-error", cause))
    if extra:
        headers.extend(extra)
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
    return WasmletApp(plan, threads=int(os.environ.get(THREADS_ENV, "16")), plan_file=plan_path,
                      telemetry=RequestTelemetry(metrics=os.environ.get(METRICS_ENV, "1") != "0"))
