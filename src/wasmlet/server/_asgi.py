"""The ASGI application: routes HTTP requests to guests, inline or on worker threads.

Raw ASGI rather than a framework: the request path is short and measured
(``bench/``), and the only endpoints besides guests are two health checks under
``/.well-known/wasmlet/`` (RFC 8615 reserves ``/.well-known/`` so they never
shadow a guest's routes). Bodies read whole are ``_body``'s, the host's own
answers ``_reply``'s, guests that stream ``_streamed``'s.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import gc
import itertools
import logging
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any, cast

from .._errors import GuestError, Rejected
from .._files import atomic_write
from ..guest import GuestResult, GuestStats, set_internal_caller
from ..plan import Plan, RemoteApp
from ..telemetry import CpuStreaks, RequestTelemetry
from ._asgi_types import Receive, Scope, Send
from ._body import BODY_MEMORY, BodyBudget, BodyRefused, Held, may_carry_body, read_whole_body
from ._cgi import cgi_request, wire_path
from ._envelope import ForwardRequest
from ._forward import AppCaller, Forwarder, RemoteRoute
from ._guard import AppGuard, Guards
from ._host import App, Host
from ._inline import INLINE_BUDGET, InlinePolicy
from ._reply import CLIENT_CLOSED, framed, log_stderr, refuse, refuse_body, respond
from ._router import normalise_path
from ._settings import METRICS_ENV, PLAN_ENV, THREADS_ENV
from ._stream import StreamingHandler
from ._streamed import StreamedAnswers, may_stream

__all__ = ["WasmletApp", "create_app"]

log = logging.getLogger("wasmlet.server")


HEALTH_PATH = "/.well-known/wasmlet/health"
READY_PATH = "/.well-known/wasmlet/ready"
INLINE_ENV = "WASMLET_INLINE"  # "0": every guest on a worker thread (to measure what running short ones inline saves)
MAX_HEADER_BYTES = 32 * 1024  # all request header fields together
PLAN_POLL = 0.02  # seconds between checks for a new plan

# Request ids: a random per-process prefix and a counter. Not uuid4: os.urandom
# releases the GIL, and on a loaded worker the event loop then waits up to a
# switch interval to get it back from the guest threads (bench/profile_server.py).
_ID_PREFIX = secrets.token_hex(4)
_ids = itertools.count(1)

# RFC 9110 section 7.2 and RFC 3986 section 3.2.2: uri-host [ ":" port ].
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(:[0-9]*)?$")


class WasmletApp(StreamedAnswers):
    """ASGI 3 application serving one plan."""

    def __init__(self, plan: Plan, threads: int = 16, telemetry: RequestTelemetry | None = None,
                 ready_file: str | None = None, plan_file: str | None = None, body_memory: int = BODY_MEMORY) -> None:
        self.plan = plan
        self.bodies = BodyBudget(body_memory)
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
        self.inline = InlinePolicy(enabled=os.environ.get(INLINE_ENV, "1") != "0")
        self._degraded: set[str] = set()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.forwarder: Forwarder | None = None  # past one host (plan.lattice): _forward

    # Lifecycle ----------------------------------------------------------
    def startup(self) -> None:
        self.host = Host(self.plan)
        self.host.start()
        self._plan_stamp = _stamp(self.plan_file)
        self._pool = concurrent.futures.ThreadPoolExecutor(self.threads, thread_name_prefix="wasmlet-guest")
        # What exists now (modules, the plan, the apps) lives as long as the worker: out of the
        # collector's sight, a full collection while serving takes microseconds, not the 16-21 ms
        # it took over those ~60,000 objects (a p99.99 stall). Requests make no cycles to collect.
        gc.collect()
        gc.freeze()
        self.ready = True
        self._acknowledge()
        log.info("worker %d ready: %d app(s)", os.getpid(), len(self.host.apps))

    def _acknowledge(self) -> None:
        """Tell the supervisor which plan generation this worker serves (atomically)."""
        if self.ready_file and self.host is not None:
            # Not durable: the runtime folder does not outlive the host (fsync cost 1-3 ms of a start).
            atomic_write(Path(self.ready_file), f"{os.getpid()} {self.host.generation}".encode(), durable=False)

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
            if self.forwarder is not None:  # subscribed before acknowledged: forwarded requests find it
                await self.forwarder.serve(self.host.servable)
            self._acknowledge()
            log.info("worker %d serves generation %d", os.getpid(), plan.generation)
            # The old apps were frozen with the rest (startup): collect what of them is garbage now,
            # once, here, rather than keep any of it for good or stall a request later.
            gc.unfreeze()
            gc.collect()
            gc.freeze()

    def shutdown(self) -> None:
        self.ready = False
        self.telemetry.flush()  # metric updates of the last pass of the event loop
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
                # A guest's http://APP.COMPONENT.wasmlet/ reaches that app, here or over the lattice.
                set_internal_caller(AppCaller(self, asyncio.get_running_loop()))
                if self.plan.lattice is not None and self.host is not None:
                    self.forwarder = Forwarder(self.plan.lattice, self, self.routed_here, lambda: self.ready,
                                               metrics=self.telemetry.metrics,
                                               serves=lambda app: self.local_host_of(app)[0])
                    self.forwarder.start()
                    await self.forwarder.serve(self.host.servable)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._watcher is not None:
                    self._watcher.cancel()
                if self.forwarder is not None:  # forwarded requests under way finish, as HTTP ones did
                    await self.forwarder.close()
                self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # Requests -----------------------------------------------------------
    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Everything below, health checks included, sees the normalised path (see normalise_path).
        path = normalise_path(scope["path"])
        if path is None:
            await respond(send, 400, b"400 bad request: the path is not absolute or holds a control character\n",
                           cause=b"bad-path")
            return
        if path.startswith("/.well-known/wasmlet/"):
            await self._wellknown(path, send)
            return
        host = self.host
        if host is None or not self.ready:
            await respond(send, 503, b"not ready\n")
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        hosts: list[str] = []
        request_id = ""
        header_bytes = 0
        for name, value in headers:
            header_bytes += len(name) + len(value) + 4
            if name == b"host":
                hosts.append(value.decode("latin-1"))
            elif name == b"x-request-id":
                request_id = value.decode("latin-1")[:64]
        if header_bytes > MAX_HEADER_BYTES:  # RFC 6585 section 5
            await respond(send, 431, b"request header fields too large\n", cause=b"header-limit")
            return
        # RFC 9112 section 3.2: 400 for more than one Host, an invalid one, or none in HTTP/1.1.
        # Two would let the router and the guest (HTTP_HOST) each pick another.
        if len(hosts) > 1 or (hosts and not _HOST.match(hosts[0])) or (
                not hosts and scope.get("http_version", "1.1") == "1.1"):
            await respond(send, 400, b"400 bad request: exactly one valid Host header is required\n",
                           cause=b"bad-host")
            return
        route = host.router.match(hosts[0] if hosts else None, path)
        if route is None:
            await respond(send, 404, b"no app is routed here\n")
            return
        slot = route.target
        if isinstance(slot, RemoteRoute):
            await self._forward(scope, receive, send, slot, headers, path, request_id, route.prefix)
            return
        if slot.blocked:
            await respond(send, 503, f"503 revoked: {slot.blocked}\n".encode(), cause=b"revoked")
            return
        app = slot.pick(headers)
        request_id = request_id or f"{_ID_PREFIX}{next(_ids):x}"
        guard = self.guards.for_spec(app.spec)
        try:
            guard.admit(str((scope.get("client") or ("", 0))[0]))
        except Rejected as exc:
            guard.rejected(exc)
            await refuse(send, exc, request_id)
            return
        telemetry = self.telemetry
        span = telemetry.start_request(scope, headers, app.name, route.prefix)
        trace_id = telemetry.trace_id(span)
        started = time.perf_counter()
        status, cause, stats = 500, "", None
        try:
            status, cause, stats = await self._answer(scope, receive, send, app, headers, path, span, request_id,
                                                      trace_id, guard)
        finally:
            telemetry.finish_request(span, app.name, route.prefix, status, cause, time.perf_counter() - started,
                                     stats)
        if stats is not None:
            self._watch_cpu(app.name, stats.cpu_seconds, request_id, trace_id)

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
        path: str, span: Any, request_id: str, trace_id: str, guard: AppGuard,
    ) -> tuple[int, str, GuestStats | None]:
        """Answer one routed request; return its status, failure cause ("" on success) and the guest's stats."""
        if getattr(app.handler, "streams_request", False) and may_stream(scope) and may_carry_body(scope, headers):
            return await self._answer_streamed_in(scope, receive, send, app, headers, path, span, request_id,
                                                  trace_id, guard)
        held = Held(self.bodies)
        try:
            return await self._answer_with_body(scope, receive, send, app, headers, path, span, request_id,
                                                trace_id, held, guard)
        finally:
            held.release()  # answered or abandoned, the body's share of the budget comes back

    async def _answer_with_body(
        self, scope: Scope, receive: Receive, send: Send, app: App, headers: list[tuple[bytes, bytes]],
        path: str, span: Any, request_id: str, trace_id: str, held: Held, guard: AppGuard,
    ) -> tuple[int, str, GuestStats | None]:
        ids = [(b"x-request-id", request_id.encode("latin-1"))]
        try:
            body = await read_whole_body(scope, receive, headers, app.max_body_size, held)
        except BodyRefused as refused:
            await refuse_body(send, refused, ids)
            return refused.status, refused.cause, None
        if body is None:  # the client left mid-body: a truncated body must never reach the guest
            return CLIENT_CLOSED, "client-closed", None
        request = cgi_request(scope, headers, path, body)
        traceparent = self.telemetry.traceparent(span)
        handler = app.handler
        if getattr(handler, "streams_response", False) and may_stream(scope):
            # Its request is whole here: the guest may run inline (see _answer_streamed).
            return await self._answer_streamed(send, app, cast(StreamingHandler, handler), request, traceparent,
                                               request_id, trace_id, guard,
                                               inline=self.inline.handler(app.name, handler) is not None)
        result: GuestResult | None = None
        try:
            deadline = None
            inline = self.inline.handler(app.name, handler)
            if inline is not None and guard.free_now():
                # A short guest runs right here, on the event loop's thread: no thread hop, no GIL
                # hand-off. It cannot stall the loop: past INLINE_BUDGET (or at its first wait) it
                # gives way and runs again on a worker thread (WagiHandler.handle_inline).
                try:
                    result, deadline = inline.handle_inline(request, traceparent, INLINE_BUDGET)
                except GuestError as exc:
                    guard.record(exc)
                    self.inline.ran(app.name, exc.stats if isinstance(exc.stats, GuestStats) else None)
                    raise
                if result is None:
                    self.inline.gave_way(app.name)
                else:
                    guard.record(None)
                    self.inline.ran(app.name, result.stats)
            if result is None:
                run = handler.handle if inline is None else functools.partial(inline.handle, deadline=deadline)
                async with guard.slot():
                    try:
                        result = await asyncio.get_running_loop().run_in_executor(
                            self._pool, run, request, traceparent)
                    except GuestError as exc:
                        guard.record(exc)
                        raise
                    guard.record(None)
        except Rejected as exc:
            guard.rejected(exc)
            await refuse(send, exc, request_id)
            return exc.status, exc.cause, None
        except GuestError as exc:
            fields = {"app": app.name, "request_id": request_id, "trace_id": trace_id}
            log.warning("app=%s cause=%s status=%d %s", app.name, exc.cause, exc.status, exc,
                        extra={**fields, "cause": exc.cause, "status": exc.status})
            log_stderr(exc.stderr, fields)
            await respond(send, exc.status, f"{exc.status} {exc.cause}\n".encode(), cause=exc.cause.encode(),
                           extra=ids)
            stats = exc.stats if isinstance(exc.stats, GuestStats) else None
            return exc.status, exc.cause, stats
        if result.stderr:
            log_stderr(result.stderr, {"app": app.name, "request_id": request_id, "trace_id": trace_id})
        response = result.response
        status = response.status
        out_headers, body = framed(status, [*response.headers, *ids], response.body, scope["method"])
        await send({"type": "http.response.start", "status": status, "headers": out_headers})
        await send({"type": "http.response.body", "body": body})
        return status, "", result.stats

    def local_host_of(self, app: str) -> tuple[bool, str | None]:
        """Whether this worker serves ``app`` itself, and the host name its route is bound to."""
        found = self.host.apps.get(app) if self.host else None
        return (found is not None and self.host is not None and app in self.host.servable,
                found.spec.host if found is not None else None)

    def remote_of(self, app: str) -> RemoteApp | None:
        return next((r for r in self.plan.remote if r.app == app), None)

    def routed_here(self, host_header: str | None, path: str) -> str | None:
        """The app this worker itself answers ``path`` with (None if none, or another host's)."""
        route = self.host.router.match(host_header, normalise_path(path) or "/") if self.host else None
        if route is None or isinstance(route.target, RemoteRoute):
            return None
        return route.target.stable.name

    async def _forward(self, scope: Scope, receive: Receive, send: Send, target: RemoteRoute,
                       headers: list[tuple[bytes, bytes]], path: str, request_id: str, prefix: str) -> None:
        """An app another host of the lattice runs: read the body here, answer from there (``_forward``)."""
        remote = target.remote
        request_id = request_id or f"{_ID_PREFIX}{next(_ids):x}"
        ids = [(b"x-request-id", request_id.encode("latin-1"))]
        if self.forwarder is None or (scope.get("extensions") or {}).get("wasmlet.forwarded"):
            # Never forwarded twice: the host that sent it retries elsewhere.
            await respond(send, 503, f"503 not-here: {remote.app} is not served on this host\n".encode(),
                           cause=b"not-here", extra=ids)
            return
        span = self.telemetry.start_request(scope, headers, remote.app, prefix)
        started, status, cause = time.perf_counter(), 500, ""
        held = Held(self.bodies)
        try:
            try:
                body = await read_whole_body(scope, receive, headers, remote.max_body_size, held)
            except BodyRefused as refused:
                status, cause = refused.status, refused.cause
                await refuse_body(send, refused, ids)
                return
            if body is None:
                status, cause = CLIENT_CLOSED, "client-closed"
                return
            sent = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers
                    if n not in (b"x-request-id", b"traceparent")]
            sent.append(("x-request-id", request_id))
            traceparent = self.telemetry.traceparent(span) or next(
                (v.decode("latin-1") for n, v in headers if n == b"traceparent"), "")
            if traceparent:
                sent.append(("traceparent", traceparent))
            server, client = scope.get("server") or ("localhost", 80), scope.get("client") or ("", 0)
            request = ForwardRequest(
                remote.app, scope["method"], path, wire_path(scope, path),
                scope.get("query_string", b"").decode("latin-1"), tuple(sent), scope.get("scheme", "http"),
                (str(server[0]), int(server[1] or 80)), (str(client[0]), int(client[1] or 0)),
                scope.get("http_version", "1.1"), body)
            reply = await self.forwarder.forward(remote, request)
            status, cause = reply.status, reply.cause
            out = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in reply.headers]
            if reply.host:
                out.append((b"x-wasmlet-served-by", reply.host.encode("latin-1")))
            # The same framing as a local answer: another host's guest may answer 204 with a body.
            out = [(n, v) for n, v in out if n.lower() != b"content-length"]
            out, reply_body = framed(reply.status, out, reply.body, scope["method"])
            await send({"type": "http.response.start", "status": reply.status, "headers": out})
            await send({"type": "http.response.body", "body": reply_body})
        finally:
            held.release()
            self.telemetry.finish_request(span, remote.app, prefix, status, cause, time.perf_counter() - started,
                                          None)

    async def _wellknown(self, path: str, send: Send) -> None:
        if path == HEALTH_PATH:
            await respond(send, 200, b"ok\n")
        elif path == READY_PATH:
            if self.ready:
                await respond(send, 200, b"ready\n")
            else:
                await respond(send, 503, b"not ready\n")
        else:
            await respond(send, 404, b"not found\n")


def _stamp(path: str | None) -> tuple[int, int] | None:
    try:
        info = os.stat(path) if path else None
    except OSError:
        return None
    return (info.st_ino, info.st_mtime_ns) if info else None


def create_app() -> WasmletApp:
    """ASGI factory for servers that import the app (granian): the plan comes from ``$WASMLET_PLAN``."""
    plan_path = os.environ[PLAN_ENV]
    with open(plan_path, encoding="utf-8") as handle:
        plan = Plan.from_json(handle.read())
    return WasmletApp(plan, threads=int(os.environ.get(THREADS_ENV, "16")), plan_file=plan_path,
                      telemetry=RequestTelemetry(metrics=os.environ.get(METRICS_ENV, "1") != "0"))
