"""Past one host: requests forwarded over NATS to the host that runs the app, and answered there.

Each worker of a ``wasmlet serve --lattice`` host holds one NATS connection
(``LatticeLink`` in its plan) and

- subscribes, in the queue group ``serve``, to the subject of every app it runs,
  ``PREFIX.http.APP.COMPONENT``: NATS hands each message to one member of the
  group, so an app's forwarded requests are spread over every worker of every
  host that runs it, and a host that leaves (or dies: its connection closes)
  stops getting them at once;
- forwards a request for an app it does not run (a ``RemoteApp`` route of its
  plan) to that subject, and relays the answer.

The exchange is NATS request/reply with an inbox of the worker's own, so the
answer can be preceded by *progress* messages: the serving worker sends one
every ``PROGRESS_EVERY`` seconds while the guest runs. The forwarding side
therefore tells apart

- a request that never reached a guest: NATS answers "no responders" (nobody
  subscribes, e.g. the host just died or the app is being re-placed), or the
  serving worker says it does not route that app (any more) or is not ready;
  such a request is sent **once more** (the queue group picks again, and a dead
  host's subscriptions are gone);
- a serving host that went silent (no answer and no progress for ``SILENCE``
  seconds: killed, or cut off): the request may have run, so it is retried only
  if its method is idempotent (RFC 9110 section 9.2.2: GET, HEAD, OPTIONS,
  TRACE, PUT, DELETE), else answered 504;
- the app's own deadline (its ``timeout`` plus ``DEADLINE_MARGIN``): 504.

Messages are one envelope each (``_envelope``). NATS's ``max_payload``
bounds a whole message: a body that cannot fit is refused with 413 before
anything is sent. Everything that arrives is checked (sizes, types, the app
named by the subject) before use: any lattice member can publish, and a
malformed message is answered 400, not trusted. This module imports nats
but nothing of the control side.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote

from ..plan import LatticeLink, RemoteApp
from ..telemetry import (
    LATTICE_FORWARD_RETRIES,
    LATTICE_FORWARD_SECONDS,
    LATTICE_FORWARDS,
    LATTICE_SERVED,
)
from ._asgi_types import Scope
from ._envelope import (
    PROGRESS,
    ForwardReply,
    ForwardRequest,
    MalformedEnvelope,
    app_subject,
    connect_options,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    is_idempotent,
)
from ._envelope import error_reply as _error

if TYPE_CHECKING:  # nats itself is imported on first connect: a host without a lattice never loads it (~90 ms)
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

__all__ = [
    "DEADLINE_MARGIN",
    "PROGRESS_EVERY",
    "SILENCE",
    "AppCaller",
    "Forwarder",
    "RemoteRoute",
    "dispatch",
]

log = logging.getLogger("wasmlet.lattice")

PROGRESS_EVERY = 0.5  # seconds between progress messages from the serving worker
SILENCE = 2.0  # seconds without any message after which the serving host is taken for gone
DEADLINE_MARGIN = 2.0  # seconds past the app's timeout a forward may take (queueing, the trip, a retry)
RETRY_PAUSE = 0.1  # seconds before the one retry: a re-placement or a reconnect may be under way
RECONNECT_WAIT = 3.0  # seconds a forward waits for the worker's NATS connection to come back
QUEUE_GROUP = "serve"
_STATUS = "Status"  # the header NATS puts on its own status messages
_NO_RESPONDERS = "503"


# --- the worker's side -------------------------------------------------------------------------

Asgi = Callable[[Scope, Callable[[], Awaitable[dict[str, Any]]], Callable[[MutableMapping[str, Any]], Awaitable[None]]],
                Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class RemoteRoute:
    """A router target: an app another host of the lattice runs."""

    remote: RemoteApp


@dataclasses.dataclass
class _Waiting:
    answer: asyncio.Future[Msg]
    heard: float  # loop time of the last message (the publish, then each progress message)
    reached: bool = False


class _Progress:
    """Progress messages every ``PROGRESS_EVERY`` seconds while a forwarded request runs (a timer, no task)."""

    def __init__(self, nc: NATS, reply: str, loop: asyncio.AbstractEventLoop) -> None:
        self.nc, self.reply, self.loop = nc, reply, loop
        self.handle: asyncio.TimerHandle | None = loop.call_later(PROGRESS_EVERY, self._tick)
        self.tasks: set[asyncio.Task[None]] = set()

    def _tick(self) -> None:
        task = self.loop.create_task(self._send())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        self.handle = self.loop.call_later(PROGRESS_EVERY, self._tick)

    async def _send(self) -> None:
        with contextlib.suppress(Exception):
            await self.nc.publish(self.reply, PROGRESS)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


@dataclasses.dataclass
class _Attempt:
    reply: ForwardReply | None = None
    reached: bool = False  # a serving worker took the request (it may have run)
    why: str = ""  # no-responders, silent, deadline, bad-reply


class Forwarder:
    """One worker's link to the lattice: forwards requests out, answers those forwarded in.

    ``asgi`` is the worker's own ASGI app (a forwarded request goes through the
    same admission, limits and telemetry as one from a socket) and
    ``routed_here(host, path)`` names the local app a request would reach, if any.
    """

    def __init__(self, link: LatticeLink, asgi: Asgi, routed_here: Callable[[str | None, str], str | None],
                 ready: Callable[[], bool], metrics: bool = True, serves: Callable[[str], bool] | None = None) -> None:
        self.link = link
        self._serves = serves or (lambda app: False)  # the worker runs this app now (whatever the path)
        self._asgi = asgi
        self._routed_here = routed_here
        self._ready = ready
        self._metrics = metrics
        self._nc: NATS | None = None
        self._inbox = ""
        self._tokens = itertools.count(1)
        self._pending: dict[str, _Waiting] = {}
        self._serving: dict[str, Subscription] = {}
        self._wanted: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._connecting: asyncio.Task[None] | None = None
        self._update = asyncio.Lock()

    # Lifecycle ------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (retried until it works): a worker serves its own apps meanwhile."""
        self._connecting = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        import nats

        delay = 0.1
        options = connect_options(self.link, f"wasmlet worker {self.link.host} pid {os.getpid()}")
        while True:
            try:
                nc = await nats.connect(**options)
                break
            except Exception as exc:  # servers down, auth refused: said, and tried again
                log.warning("lattice: cannot reach NATS at %s yet: %s", ", ".join(self.link.servers),
                            exc or type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._inbox = nc.new_inbox()
        await nc.subscribe(self._inbox + ".*", cb=self._on_reply)
        self._nc = nc
        await self.serve(self._wanted)

    async def close(self, timeout: float = 30.0) -> None:
        """Stop taking forwarded requests, let those under way finish (up to ``timeout``), disconnect."""
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        nc = self._nc
        if nc is None:
            return
        for sub in list(self._serving.values()):
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._serving.clear()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        with contextlib.suppress(Exception):
            await nc.close()
        self._nc = None

    async def serve(self, apps: Iterable[str]) -> None:
        """Take forwarded requests for exactly ``apps`` (those this worker runs and can load)."""
        async with self._update:
            self._wanted = set(apps)
            nc = self._nc
            if nc is None:
                return  # subscribed once connected
            for app in sorted(set(self._serving) - self._wanted):
                sub = self._serving.pop(app)
                with contextlib.suppress(Exception):
                    # Interest goes at once; what was already delivered is still answered
                    # (as "not here" once the router no longer has the app: the sender retries).
                    await sub.drain()  # type: ignore[no-untyped-call]
            for app in sorted(self._wanted - set(self._serving)):
                try:
                    subject = app_subject(self.link.prefix, app)
                except ValueError as exc:
                    log.error("lattice: not serving %s to other hosts: %s", app, exc)
                    continue
                self._serving[app] = await nc.subscribe(subject, queue=QUEUE_GROUP, cb=self._on_request)
            with contextlib.suppress(Exception):
                await nc.flush(timeout=2)  # the server knows before the plan is acknowledged

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    # Forwarding out -------------------------------------------------------
    async def _on_reply(self, msg: Msg) -> None:
        waiting = self._pending.get(msg.subject.rpartition(".")[2])
        if waiting is None or waiting.answer.done():
            return
        if msg.data == PROGRESS:  # only noted: the waiter is not woken for it
            waiting.heard = asyncio.get_running_loop().time()
            waiting.reached = True
        else:
            waiting.answer.set_result(msg)

    async def forward(self, remote: RemoteApp, request: ForwardRequest) -> ForwardReply:
        """Answer ``request`` for ``remote`` from a host that runs it; see the module docstring."""
        started = time.perf_counter()
        reply, outcome = await self._forward(remote, request)
        if self._metrics:
            LATTICE_FORWARDS.labels(remote.app, outcome).inc()
            LATTICE_FORWARD_SECONDS.labels(remote.app).observe(time.perf_counter() - started)
        return reply

    async def _forward(self, remote: RemoteApp, request: ForwardRequest) -> tuple[ForwardReply, str]:
        nc = self._nc
        if nc is not None and not nc.is_connected and not nc.is_closed:
            # Reconnecting (a NATS server went away): the client is usually back within a second.
            waited = asyncio.get_running_loop().time() + RECONNECT_WAIT
            while not nc.is_connected and not nc.is_closed and asyncio.get_running_loop().time() < waited:
                await asyncio.sleep(0.02)
        if nc is None or not nc.is_connected:
            return _error(503, "lattice-unreachable", f"{remote.app} runs on another host and this host is not "
                          "connected to the lattice (NATS) right now", retry=True), "unreachable"
        try:
            subject = app_subject(self.link.prefix, remote.app)
        except ValueError as exc:
            return _error(502, "bad-app", str(exc)), "error"
        data = encode_request(request)
        if len(data) > nc.max_payload:
            return _error(413, "body-limit", f"the request ({len(data)} bytes with its headers) is larger than "
                          f"what the lattice carries in one message (NATS max_payload {nc.max_payload} bytes)"), \
                "too-large"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + remote.timeout + DEADLINE_MARGIN
        attempt = await self._attempt(nc, subject, data, deadline)
        if attempt.reply is not None and not attempt.reply.retry:
            return attempt.reply, "ok"
        # Once more, if the first try never reached a guest, or could not have been harmed by a second run.
        retry = attempt.reply is not None or attempt.why == "no-responders" or (
            attempt.why in ("silent", "bad-reply") and is_idempotent(request.method))
        if retry and loop.time() + RETRY_PAUSE < deadline:
            if self._metrics:
                LATTICE_FORWARD_RETRIES.labels(remote.app, attempt.why or "not-here").inc()
            await asyncio.sleep(RETRY_PAUSE)
            second = await self._attempt(nc, subject, data, deadline)
            if second.reply is not None:
                return second.reply, "retried"
            attempt = second
        if attempt.reply is not None:
            return attempt.reply, "not-here"
        return self._failure(remote, request, attempt)

    @staticmethod
    def _failure(remote: RemoteApp, request: ForwardRequest, attempt: _Attempt) -> tuple[ForwardReply, str]:
        if attempt.why == "no-responders":
            return _error(503, "no-host", f"no host of the lattice serves {remote.app} right now (it may be "
                          "being placed); try again shortly"), "no-responders"
        if attempt.why == "deadline":
            return _error(504, "forward-timeout", f"{remote.app} did not answer within its timeout "
                          f"({remote.timeout:g}s) plus {DEADLINE_MARGIN:g}s"), "timeout"
        why = "sent no answer and no progress" if attempt.why == "silent" else "sent a malformed answer"
        note = "" if is_idempotent(request.method) else \
            f"; {request.method} is not idempotent (it may have run), so it was not sent again"
        return _error(504 if attempt.why == "silent" else 502, "forward-lost",
                      f"the host serving {remote.app} {why}{note}"), attempt.why

    async def _attempt(self, nc: NATS, subject: str, data: bytes, deadline: float) -> _Attempt:
        loop = asyncio.get_running_loop()
        token = str(next(self._tokens))
        waiting = _Waiting(loop.create_future(), loop.time())
        self._pending[token] = waiting
        result = _Attempt()
        try:
            await nc.publish(subject, data, reply=f"{self._inbox}.{token}")
            while True:
                now = loop.time()
                left = deadline - now
                quiet = waiting.heard + SILENCE - now
                if left <= 0 or quiet <= 0:
                    result.reached = waiting.reached
                    result.why = "deadline" if left <= 0 else "silent"
                    return result
                # One future and a timer, not a task per wait: this is every forwarded request's path.
                done, _ = await asyncio.wait((waiting.answer,), timeout=min(left, quiet))
                if done:
                    break
            msg = waiting.answer.result()
            if msg.headers and msg.headers.get(_STATUS) == _NO_RESPONDERS and not msg.data:
                result.why = "no-responders"
                return result
            result.reached = True
            try:
                result.reply = decode_response(msg.data)
            except MalformedEnvelope as exc:
                log.warning("lattice: malformed answer on %s: %s", subject, exc)
                result.why = "bad-reply"
            return result
        except Exception as exc:  # the connection went away mid-publish: as if nobody had answered
            log.warning("lattice: forwarding on %s failed: %s", subject, exc or type(exc).__name__)
            result.why = "no-responders"
            return result
        finally:
            self._pending.pop(token, None)

    # Answering in ---------------------------------------------------------
    async def _on_request(self, msg: Msg) -> None:
        # The subscription awaits this callback message by message: each request gets its own task.
        task = asyncio.get_running_loop().create_task(self._answer(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, msg: Msg) -> None:
        nc = self._nc
        if not msg.reply or nc is None:
            return  # a publish without a reply subject: nobody to answer
        host = self.link.host
        progress = _Progress(nc, msg.reply, asyncio.get_running_loop())
        try:
            reply = await self._run(msg)
        except Exception as exc:  # never leave the sender waiting for SILENCE on our own bug
            log.exception("lattice: answering a forwarded request on %s failed", msg.subject)
            reply = _error(500, "forward-error", type(exc).__name__, host)
        finally:
            progress.stop()
        data = encode_response(reply)
        if len(data) > nc.max_payload:
            data = encode_response(_error(502, "response-limit", f"the answer ({len(reply.body)} bytes) is larger "
                                          f"than the lattice carries (NATS max_payload {nc.max_payload})", host))
        with contextlib.suppress(Exception):
            await nc.publish(msg.reply, data)

    async def _run(self, msg: Msg) -> ForwardReply:
        host = self.link.host
        _, _, tail = msg.subject.partition(".http.")
        app = tail.replace(".", "/", 1)
        try:
            request = decode_request(msg.data)
        except MalformedEnvelope as exc:
            log.warning("lattice: refused a malformed forwarded request on %s: %s", msg.subject, exc)
            return _error(400, "bad-forward", str(exc), host)
        if request.app != app:
            return _error(400, "bad-forward", f"the envelope names {request.app[:100]!r}, the subject {app!r}", host)
        if not self._ready():
            return _error(503, "not-ready", "this worker is not ready", host, retry=True)
        hosts = [v for n, v in request.headers if n == "host"]
        if self._routed_here(hosts[0] if len(hosts) == 1 else None, request.path) != app:
            if self._serves(app):  # the app is here, the path is not one of its routes (a call by name)
                return _error(404, "no-route", f"{request.path[:200]!r} is not a route of {app}", host)
            return _error(503, "not-here", f"{app} is not served on {host} (any more)", host, retry=True)
        status, headers, body = await dispatch(self._asgi, request, forwarded=True)
        if self._metrics:
            LATTICE_SERVED.labels(app, str(status)).inc()
        return ForwardReply(status, headers, body, host)


async def dispatch(asgi: Asgi, request: ForwardRequest, forwarded: bool) -> tuple[int, tuple[tuple[str, str], ...],
                                                                                  bytes]:
    """Run ``request`` through a worker's ASGI app, as if it had come in on its socket.

    ``forwarded``: it came from another host, so it is never forwarded again.
    """
    scope: Scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": request.http_version, "method": request.method, "scheme": request.scheme,
        "path": request.path, "raw_path": request.raw_path.encode("latin-1", "replace"),
        "query_string": request.query.encode("latin-1", "replace"), "root_path": "",
        "headers": [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in request.headers],
        "client": request.client, "server": request.server,
        # Buffered: the answer is returned whole, so a response streamed and then cut short
        # (_streamed._answer_streamed) would pass for a complete one.
        "extensions": {"wasmlet.buffered": True, **({"wasmlet.forwarded": True} if forwarded else {})},
    }
    delivered = False
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))

    await asgi(scope, receive, send)
    headers = tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in start.get("headers", []))
    return int(start.get("status", 500)), headers, b"".join(chunks)


class Worker(Protocol):
    """What ``AppCaller`` needs of the worker's ASGI app (``WasmletApp``)."""

    forwarder: Forwarder | None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None: ...

    def routed_here(self, host_header: str | None, path: str) -> str | None: ...

    def local_host_of(self, app: str) -> tuple[bool, str | None]: ...

    def remote_of(self, app: str) -> RemoteApp | None: ...


class AppCaller:
    """A guest's call to ``http://APP.COMPONENT.wasmlet/PATH`` (``wasmlet.guest``'s hook): run on the guest's
    thread, answered on the worker's loop by the app wherever it runs: this worker, or over the lattice."""

    def __init__(self, worker: Worker, loop: asyncio.AbstractEventLoop) -> None:
        self.worker = worker
        self.loop = loop

    def __call__(self, app: str, method: str, path: str, headers: list[tuple[str, str]], body: bytes,
                 timeout: float) -> tuple[int, list[tuple[str, str]], bytes]:
        future = asyncio.run_coroutine_threadsafe(self._call(app, method, path, headers, body), self.loop)
        try:
            status, out, data = future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise
        return status, list(out), data

    async def _call(self, app: str, method: str, path: str, headers: list[tuple[str, str]],
                    body: bytes) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
        local, route_host = self.worker.local_host_of(app)
        remote = None if local else self.worker.remote_of(app)
        if not local and remote is None:
            return _plain(404, f"no app named {app} in this host's plan")
        route_host = remote.host if remote is not None else route_host
        if route_host:  # a route bound to a host name gets that name (a wildcard, one name it matches)
            headers = [(n, v) for n, v in headers if n.lower() != "host"] + [("host", route_host.replace("*", "x"))]
        raw_path, _, query = path.partition("?")
        request = ForwardRequest(app, method, unquote(raw_path) or "/", raw_path or "/", query,
                                 tuple((n.lower(), v) for n, v in headers), "http", ("wasmlet", 80),
                                 ("127.0.0.1", 0), "1.1", body)
        if remote is not None:
            forwarder = self.worker.forwarder
            if forwarder is None:
                return _plain(503, f"{app} runs on another host and this host is in no lattice")
            reply = await forwarder.forward(remote, request)
            return reply.status, reply.headers, reply.body
        hosts = [v for n, v in request.headers if n == "host"]
        if self.worker.routed_here(hosts[-1] if hosts else None, request.path) != app:
            return _plain(404, f"{path.partition('?')[0]!r} is not a route of {app}")
        return await dispatch(self.worker, request, forwarded=False)


def _plain(status: int, message: str) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
    return status, (("content-type", "text/plain; charset=utf-8"),), f"{status}: {message}\n".encode()
