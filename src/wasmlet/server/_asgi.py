"""The ASGI application: routes HTTP requests to guests on worker threads.

Raw ASGI rather than a framework: the request path is short and measured
(``bench/``), and the only endpoints besides guests are two health checks under
``/.well-known/wasmlet/`` (RFC 8615 reserves ``/.well-known/`` so they never
shadow a guest's routes).
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
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

from .._errors import GuestError, Rejected
from .._files import atomic_write
from ..guest import CgiRequest, GuestResult, GuestStats, set_internal_caller
from ..plan import Plan, RemoteApp
from ..telemetry import CpuStreaks, RequestTelemetry
from ._envelope import ForwardRequest
from ._forward import AppCaller, Forwarder, RemoteRoute
from ._guard import AppGuard, Guards
from ._host import App, Host
from ._inline import INLINE_BUDGET, InlinePolicy
from ._router import normalise_path
from ._stream import ResponseStream, StreamingHandler
from ._upload import QUEUE_BYTES as UPLOAD_QUEUE_BYTES
from ._upload import RequestBody

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
INLINE_ENV = "WASMLET_INLINE"  # "0": every guest on a worker thread (to measure what running short ones inline saves)
MAX_HEADER_BYTES = 32 * 1024  # all request header fields together
BODY_TIMEOUT = 30.0  # seconds to receive a whole request body
BODY_MEMORY = 256 * 1024 * 1024  # bytes of request bodies a worker holds at once (ServeSettings.body_memory)
CLIENT_CLOSED = 499  # recorded (never sent) when a client leaves before its request is complete, as nginx does
PLAN_POLL = 0.02  # seconds between checks for a new plan
# A streamed response (_answer_streamed): seconds to send what is queued once the guest has returned.
# A client that takes longer (it stopped reading) gets the connection closed on an incomplete response.
DRAIN_TIMEOUT = 30.0
ABORT_GRACE = 1.0  # ... once the guest failed mid-stream, before the connection is cut
_UNBOUNDED = 1 << 62  # the queue of an inline run: never full (the guest's body is capped by maxResponseSize)

# Request ids: a random per-process prefix and a counter. Not uuid4: os.urandom
# releases the GIL, and on a loaded worker the event loop then waits up to a
# switch interval to get it back from the guest threads (bench/profile_server.py).
_ID_PREFIX = secrets.token_hex(4)
_ids = itertools.count(1)

_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
# RFC 9110 section 7.2 and RFC 3986 section 3.2.2: uri-host [ ":" port ].
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(:[0-9]*)?$")
# Responses without content (RFC 9110 section 6.4.1): no body, and no Content-Length for
# 204 (section 8.6); a 304's would have to be the one a 200 would carry, which is unknown here.
_NO_CONTENT = frozenset({204, 304})


class _BodyTooLarge(Exception):
    pass


class _OverBudget(Exception):
    pass


class BodyBudget:
    """The bytes of request bodies a worker holds at once, over all its requests.

    Each request takes its body's size from it (see ``_read_body``) and gives
    all back when it ends, answered or abandoned: unfinished uploads cannot hold
    more than the budget, and a new one past it gets 503 rather than more of the
    worker's memory. A body larger than the whole budget (an app's
    ``maxBodySize`` above it) is let in only when no other body is held, so it
    is slow rather than impossible. Only the event loop uses it: no lock.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.limit and self.used > 0:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used -= size


class WasmletApp:
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
            await _respond(send, 400, b"400 bad request: the path is not absolute or holds a control character\n",
                           cause=b"bad-path")
            return
        if path.startswith("/.well-known/wasmlet/"):
            await self._wellknown(path, send)
            return
        host = self.host
        if host is None or not self.ready:
            await _respond(send, 503, b"not ready\n")
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
            await _respond(send, 431, b"request header fields too large\n", cause=b"header-limit")
            return
        # RFC 9112 section 3.2: 400 for more than one Host, an invalid one, or none in HTTP/1.1.
        # Two would let the router and the guest (HTTP_HOST) each pick another.
        if len(hosts) > 1 or (hosts and not _HOST.match(hosts[0])) or (
                not hosts and scope.get("http_version", "1.1") == "1.1"):
            await _respond(send, 400, b"400 bad request: exactly one valid Host header is required\n",
                           cause=b"bad-host")
            return
        route = host.router.match(hosts[0] if hosts else None, path)
        if route is None:
            await _respond(send, 404, b"no app is routed here\n")
            return
        slot = route.target
        if isinstance(slot, RemoteRoute):
            await self._forward(scope, receive, send, slot, headers, path, request_id, route.prefix)
            return
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
        if getattr(app.handler, "streams_request", False) and _may_stream(scope) and (
                _has_body(headers) or scope.get("http_version", "1.1") not in ("1.1", "1.0")):  # the body streams in
            return await self._answer_streamed_in(scope, receive, send, app, headers, path, span, request_id,
                                                  trace_id, guard)
        held = _Held(self.bodies)
        try:
            return await self._answer_with_body(scope, receive, send, app, headers, path, span, request_id,
                                                trace_id, held, guard)
        finally:
            held.release()  # answered or abandoned, the body's share of the budget comes back

    async def _answer_with_body(
        self, scope: Scope, receive: Receive, send: Send, app: App, headers: list[tuple[bytes, bytes]],
        path: str, span: Any, request_id: str, trace_id: str, held: _Held, guard: AppGuard,
    ) -> tuple[int, str, GuestStats | None]:
        ids = [(b"x-request-id", request_id.encode("latin-1"))]
        try:
            if _has_body(headers) or scope.get("http_version", "1.1") not in ("1.1", "1.0"):
                async with asyncio.timeout(BODY_TIMEOUT):  # a timer, not a task per request as wait_for makes
                    body = await _read_body(receive, headers, app.max_body_size, held)
            else:  # HTTP/1 without Content-Length or Transfer-Encoding: no body (RFC 9112 section 6.3), no wait
                body = await _read_body(receive, headers, app.max_body_size, held)
        except _BodyTooLarge:
            await _respond(send, 413, b"request body too large\n", cause=b"body-limit", extra=ids)
            return 413, "body-limit", None
        except _OverBudget:
            await _respond(send, 503, b"503 overloaded: request bodies fill this worker's memory budget\n",
                           cause=b"body-memory", extra=[(b"retry-after", b"1"), *ids])
            return 503, "body-memory", None
        except TimeoutError:  # a client trickling its body holds a connection, never a guest
            await _respond(send, 408, b"request body not received in time\n", cause=b"body-timeout", extra=ids)
            return 408, "body-timeout", None
        if body is None:  # the client left mid-body: a truncated body must never reach the guest
            return CLIENT_CLOSED, "client-closed", None
        request = _cgi_request(scope, headers, path, body)
        traceparent = self.telemetry.traceparent(span)
        handler = app.handler
        if getattr(handler, "streams_response", False) and _may_stream(scope):
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
            await _refuse(send, exc, request_id)
            return exc.status, exc.cause, None
        except GuestError as exc:
            fields = {"app": app.name, "request_id": request_id, "trace_id": trace_id}
            log.warning("app=%s cause=%s status=%d %s", app.name, exc.cause, exc.status, exc,
                        extra={**fields, "cause": exc.cause, "status": exc.status})
            _log_stderr(exc.stderr, fields)
            await _respond(send, exc.status, f"{exc.status} {exc.cause}\n".encode(), cause=exc.cause.encode(),
                           extra=ids)
            stats = exc.stats if isinstance(exc.stats, GuestStats) else None
            return exc.status, exc.cause, stats
        if result.stderr:
            _log_stderr(result.stderr, {"app": app.name, "request_id": request_id, "trace_id": trace_id})
        response = result.response
        status = response.status
        out_headers, body = _framed(status, [*response.headers, *ids], response.body, scope["method"])
        await send({"type": "http.response.start", "status": status, "headers": out_headers})
        await send({"type": "http.response.body", "body": body})
        return status, "", result.stats

    async def _answer_streamed_in(
        self, scope: Scope, receive: Receive, send: Send, app: App, headers: list[tuple[bytes, bytes]],
        path: str, span: Any, request_id: str, trace_id: str, guard: AppGuard,
    ) -> tuple[int, str, GuestStats | None]:
        """A guest that streams its request body in (a wasi:http proxy component), and its response out.

        The body is not read whole first: the guest starts once its first part is in and reads
        the rest as it arrives (``RequestBody``, fed by a task calling ``receive()``; a body that
        came whole with its first part needs no task). A client that sends no byte of its body
        within ``BODY_TIMEOUT`` gets 408 and never holds a guest; after that first part the
        guest's deadline bounds every wait for the body. A declared Content-Length over
        ``maxBodySize`` is refused before the guest starts (413), as a body the worker's budget
        has no room for is (503); what crosses a limit later is an error for the guest's next
        read, and the answer if the guest has not committed a status (``_answer_streamed``).
        """
        ids = [(b"x-request-id", request_id.encode("latin-1"))]
        upload: RequestBody | None = None
        if _has_body(headers) or scope.get("http_version", "1.1") not in ("1.1", "1.0"):
            declared = _declared_length(headers)
            if declared is not None and declared > app.max_body_size:
                await _respond(send, 413, b"request body too large\n", cause=b"body-limit", extra=ids)
                return 413, "body-limit", None
            try:
                async with asyncio.timeout(BODY_TIMEOUT):  # nothing held meanwhile: no guest, no budget
                    first = await receive()
            except TimeoutError:
                await _respond(send, 408, b"request body not received in time\n", cause=b"body-timeout", extra=ids)
                return 408, "body-timeout", None
            # At most a queue's worth is held at once, whatever the body's length.
            reserve = UPLOAD_QUEUE_BYTES if declared is None else min(declared, UPLOAD_QUEUE_BYTES)
            if not self.bodies.take(reserve):
                await _respond(send, 503, b"503 overloaded: request bodies fill this worker's memory budget\n",
                               cause=b"body-memory", extra=[(b"retry-after", b"1"), *ids])
                return 503, "body-memory", None
            upload = RequestBody(asyncio.get_running_loop(), app.max_body_size, self.bodies, reserved=reserve)
            if upload.accept(first):
                upload.start(receive)
            elif upload.cause is not None:
                upload.close()
                return await _refuse_body(send, upload, app.name,
                                          {"app": app.name, "request_id": request_id, "trace_id": trace_id}, ids, None)
        # else HTTP/1 without Content-Length or Transfer-Encoding: no body (RFC 9112 section 6.3), nothing to stream
        request = _cgi_request(scope, headers, path, b"")
        try:
            return await self._answer_streamed(send, app, cast(StreamingHandler, app.handler), request,
                                               self.telemetry.traceparent(span), request_id, trace_id, guard,
                                               upload)
        finally:
            if upload is not None:
                upload.close()

    async def _answer_streamed(
        self, send: Send, app: App, handler: StreamingHandler, request: CgiRequest, traceparent: str,
        request_id: str, trace_id: str, guard: AppGuard, upload: RequestBody | None = None,
        inline: bool = False,
    ) -> tuple[int, str, GuestStats | None]:
        """Run a guest that streams its response (a wasi:http proxy component), sending it as it comes.

        The guest holds its admission slot (and its worker thread) while it runs, back-pressure
        included (``ResponseStream``); what is queued when it returns is sent after the slot is
        given back. A failure before the guest committed a status gets the usual error response;
        after it, the status cannot change: the response is cut short (the connection closes
        without the last chunk, so the client sees it incomplete) and the failure logged and
        counted as any other.

        With ``upload`` the guest reads the request body from it as it arrives. A body that
        failed (too large, the worker's budget full, the client gone) decides the answer while
        no status is committed: 413, 503, or nothing (the client left); after, the response
        goes on as the guest makes it (the guest saw the failure as a stream error).

        With ``inline`` (a request whose body is whole, an app that may run inline) the guest
        first runs on the event loop's thread, as a WAGI guest does (``handle_inline``), into a
        stream no sender reads yet and that never makes it wait; its outcome is then sent exactly
        as a run on a thread would have been (a failure after the committed status still cuts the
        response short). If it gives way, that stream is dropped unseen and it runs on a thread.
        """
        ids = [(b"x-request-id", request_id.encode("latin-1"))]
        loop = asyncio.get_running_loop()
        failure: GuestError | None = None
        result: GuestResult | None = None
        deadline: float | None = None
        if inline and upload is None and guard.free_now():
            stream = ResponseStream(loop, limit=_UNBOUNDED)
            try:
                result, deadline = handler.handle_inline(request, traceparent, INLINE_BUDGET, sink=stream)
            except GuestError as exc:
                guard.record(exc)
                self.inline.ran(app.name, exc.stats if isinstance(exc.stats, GuestStats) else None)
                failure = exc
            else:
                if result is None:
                    self.inline.gave_way(app.name)
                else:
                    guard.record(None)
                    self.inline.ran(app.name, result.stats)
            if result is not None or failure is not None:
                stream.close()
                sender = loop.create_task(stream.send_to(send, ids))
                return await self._streamed_outcome(send, app, stream, sender, result, failure, None, ids,
                                                    request_id, trace_id)
        stream = ResponseStream(loop)
        if upload is not None:
            upload.on_failure(stream.refuse)  # a body that fails before the guest commits a status decides
        sender = loop.create_task(stream.send_to(send, ids))
        run = functools.partial(handler.handle, sink=stream, source=upload, deadline=deadline)
        try:
            async with guard.slot():
                try:
                    result = await loop.run_in_executor(self._pool, run, request, traceparent)
                except GuestError as exc:
                    if upload is None or not upload.to_blame:  # a client's stalled or bad body is not the app's
                        guard.record(exc)
                    failure = exc
                else:
                    guard.record(None)
        except Rejected as exc:
            stream.close()
            sender.cancel()
            guard.rejected(exc)
            await _refuse(send, exc, request_id)
            return exc.status, exc.cause, None
        except BaseException:
            stream.close()  # cancelled: a guest waiting for room in the queue returns at once
            if upload is not None:
                upload.close()  # ... and one waiting for the request body
            sender.cancel()
            raise
        stream.close()
        return await self._streamed_outcome(send, app, stream, sender, result, failure, upload, ids, request_id,
                                            trace_id)

    async def _streamed_outcome(
        self, send: Send, app: App, stream: ResponseStream, sender: asyncio.Task[None], result: GuestResult | None,
        failure: GuestError | None, upload: RequestBody | None, ids: list[tuple[bytes, bytes]], request_id: str,
        trace_id: str,
    ) -> tuple[int, str, GuestStats | None]:
        """After a streaming guest returned (``stream`` closed): send the rest, or fail as its point allows."""
        fields = {"app": app.name, "request_id": request_id, "trace_id": trace_id}
        if upload is not None:
            upload.close()  # the guest returned: nothing more of the body is received or held
            if upload.cause is not None and not stream.started:
                sender.cancel()
                stats = result.stats if result is not None else (
                    failure.stats if failure is not None and isinstance(failure.stats, GuestStats) else None)
                return await _refuse_body(send, upload, app.name, fields, ids, stats)
        if failure is None:
            assert result is not None
            if result.stderr:
                _log_stderr(result.stderr, fields)
            if not stream.started:  # a guest that answered without a committed status: as buffered
                sender.cancel()
                response = result.response
                out_headers, body = _framed(response.status, [*response.headers, *ids], response.body, "GET")
                await send({"type": "http.response.start", "status": response.status, "headers": out_headers})
                await send({"type": "http.response.body", "body": body})
                return response.status, "", result.stats
            await _drain(sender, DRAIN_TIMEOUT)
            if not stream.complete:
                log.warning("app=%s the client did not take the response within %gs; closed", app.name,
                            DRAIN_TIMEOUT, extra=fields)
            return _sent_status(stream, result.response.status), "", result.stats
        stats = failure.stats if isinstance(failure.stats, GuestStats) else None
        if not stream.started:
            sender.cancel()
            log.warning("app=%s cause=%s status=%d %s", app.name, failure.cause, failure.status, failure,
                        extra={**fields, "cause": failure.cause, "status": failure.status})
            _log_stderr(failure.stderr, fields)
            await _respond(send, failure.status, f"{failure.status} {failure.cause}\n".encode(),
                           cause=failure.cause.encode(), extra=ids)
            return failure.status, failure.cause, stats
        await _drain(sender, ABORT_GRACE)
        when = "after the response was complete" if stream.complete else "mid-stream; the response was cut short"
        log.warning("app=%s cause=%s status=%d %s (%s)", app.name, failure.cause, failure.status, failure, when,
                    extra={**fields, "cause": failure.cause, "status": failure.status})
        _log_stderr(failure.stderr, fields)
        # Returning without the last body message: uvicorn closes the connection, and a chunked
        # response then lacks its last chunk (RFC 9112 section 7.1), a sized one its last bytes.
        return failure.status, failure.cause, stats

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
            await _respond(send, 503, f"503 not-here: {remote.app} is not served on this host\n".encode(),
                           cause=b"not-here", extra=ids)
            return
        span = self.telemetry.start_request(scope, headers, remote.app, prefix)
        started, status, cause = time.perf_counter(), 500, ""
        held = _Held(self.bodies)
        try:
            try:
                body = await asyncio.wait_for(_read_body(receive, headers, remote.max_body_size, held), BODY_TIMEOUT)
            except _BodyTooLarge:
                status, cause = 413, "body-limit"
                await _respond(send, 413, b"request body too large\n", cause=b"body-limit", extra=ids)
                return
            except _OverBudget:
                status, cause = 503, "body-memory"
                await _respond(send, 503, b"503 overloaded: request bodies fill this worker's memory budget\n",
                               cause=b"body-memory", extra=[(b"retry-after", b"1"), *ids])
                return
            except TimeoutError:
                status, cause = 408, "body-timeout"
                await _respond(send, 408, b"request body not received in time\n", cause=b"body-timeout", extra=ids)
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
                remote.app, scope["method"], path, _wire_path(scope, path),
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
            out, reply_body = _framed(reply.status, out, reply.body, scope["method"])
            await send({"type": "http.response.start", "status": reply.status, "headers": out})
            await send({"type": "http.response.body", "body": reply_body})
        finally:
            held.release()
            self.telemetry.finish_request(span, remote.app, prefix, status, cause, time.perf_counter() - started,
                                          None)

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


async def _drain(sender: asyncio.Task[None], timeout: float) -> None:
    """Let ``sender`` send what is queued, for up to ``timeout`` seconds (then it is cancelled)."""
    try:
        await asyncio.wait_for(sender, timeout)
    except TimeoutError:
        pass
    except Exception:  # the server refused a message: the response stays incomplete, the request is still logged
        log.exception("cannot send a streamed response")


async def _refuse_body(send: Send, upload: RequestBody, app: str, fields: dict[str, str],
                       ids: list[tuple[bytes, bytes]], stats: GuestStats | None) -> tuple[int, str, GuestStats | None]:
    """The answer to a request whose body failed while its guest ran, before the guest committed a status."""
    cause = upload.cause or ""
    log.info("app=%s cause=%s the request body failed before the guest answered: %s", app, cause, upload.error,
             extra={**fields, "cause": cause})
    if cause == "client-closed":  # nobody to answer
        return CLIENT_CLOSED, cause, stats
    if cause == "body-limit":
        await _respond(send, 413, b"request body too large\n", cause=b"body-limit", extra=ids)
        return 413, cause, stats
    await _respond(send, 503, b"503 overloaded: request bodies fill this worker's memory budget\n",
                   cause=b"body-memory", extra=[(b"retry-after", b"1"), *ids])
    return 503, cause, stats


def _declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The request's Content-Length (uvicorn has already refused a malformed or repeated one)."""
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _may_stream(scope: Scope) -> bool:
    """Whether a response may be streamed to this request's client.

    Not to HEAD (it gets the Content-Length a GET would have), nor over HTTP/1.0 (no chunked
    coding), nor to a caller inside wasmlet (``_forward.dispatch``: it takes the answer whole).
    """
    return (scope["method"] != "HEAD" and scope.get("http_version", "1.1") != "1.0"
            and not (scope.get("extensions") or {}).get("wasmlet.buffered"))


def _sent_status(stream: ResponseStream, status: int) -> int:
    return status if stream.complete else CLIENT_CLOSED


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


class _Held:
    """One request's share of the ``BodyBudget``."""

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.size = 0

    def take(self, size: int) -> None:
        if not self.budget.take(size):
            raise _OverBudget
        self.size += size

    def release(self) -> None:
        self.budget.give(self.size)
        self.size = 0


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name in (b"content-length", b"transfer-encoding") for name, _ in headers)


async def _read_body(receive: Receive, headers: list[tuple[bytes, bytes]], limit: int, held: _Held) -> bytes | None:
    """The whole request body, or ``None`` if the client left before sending all of it.

    A declared ``Content-Length`` is taken from the budget before a byte is
    read, so a request is admitted whole or refused at once: under
    contention, uploads under way finish and new ones get 503, rather than
    every upload failing half-way. A chunked body takes as it arrives. One
    growing buffer per request rather than a list of chunks: freed at once,
    in one piece (see ``_worker._return_freed_memory``).
    """
    for name, value in headers:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                break  # the HTTP server has already refused a malformed length
            if declared > limit:
                raise _BodyTooLarge
            held.take(declared)
            break
    body = bytearray()
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            if chunk:
                if len(body) + len(chunk) > limit:
                    raise _BodyTooLarge
                if len(body) + len(chunk) > held.size:
                    held.take(len(body) + len(chunk) - held.size)
                body += chunk
            if not message.get("more_body", False):
                return bytes(body)
    finally:
        # Free the buffer now: an exception's traceback keeps this frame, and asyncio's
        # task and future make a reference cycle of it that only a later gc pass breaks.
        body.clear()


def _framed(status: int, headers: list[tuple[bytes, bytes]], body: bytes,
            method: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body as they may go on the wire for ``status``.

    Never a body after a response that has none (204, 304): on a kept-alive connection
    the client would read it as the answer to its next request (response splitting).
    HEAD gets the length a GET would have (RFC 9110 section 9.3.2), without the content.
    """
    if status in _NO_CONTENT:
        return headers, b""
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    return headers, b"" if method == "HEAD" else body


def _wire_path(scope: Scope, path: str) -> str:
    """The request path as sent, unless normalising changed it: then the normalised one, re-encoded,
    so that every view of the request (CGI variables, a forwarded request) agrees with the route taken."""
    raw = scope.get("raw_path")
    return raw.decode("latin-1") if raw and path == scope["path"] else quote(path, safe="/:@!$&'()*+,;=~")


def _cgi_request(scope: Scope, headers: list[tuple[bytes, bytes]], path: str, body: bytes) -> CgiRequest:
    """The CGI view of a request routed on ``path``, its normalised form."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    return CgiRequest(
        method=scope["method"],
        path=path,
        raw_path=_wire_path(scope, path),
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
