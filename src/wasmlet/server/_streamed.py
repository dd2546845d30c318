"""Answers from guests that stream: the request body in as it arrives, the response out as it is made.

``wasi:http`` proxy components stream both ways (``StreamingHandler``);
``WasmletApp`` inherits these methods and routes such guests here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
from typing import Any, cast

from .._errors import GuestError, Rejected
from ..guest import CgiRequest, GuestResult, GuestStats
from ..telemetry import RequestTelemetry
from ._asgi_types import Receive, Scope, Send
from ._body import BODY_TIMEOUT, BodyBudget, BodyRefused, declared_length, may_carry_body
from ._cgi import cgi_request
from ._guard import AppGuard
from ._host import App
from ._inline import INLINE_BUDGET, InlinePolicy
from ._reply import CLIENT_CLOSED, framed, log_stderr, refuse, refuse_body, respond
from ._stream import ResponseStream, StreamingHandler
from ._upload import QUEUE_BYTES as UPLOAD_QUEUE_BYTES
from ._upload import RequestBody

__all__ = ["ABORT_GRACE", "DIRECT_BYTES", "DRAIN_TIMEOUT", "StreamedAnswers", "may_stream"]

log = logging.getLogger("wasmlet.server")

# A streamed response: seconds to send what is queued once the guest has returned. A client
# that takes longer (it stopped reading) gets the connection closed on an incomplete response.
DRAIN_TIMEOUT = 30.0
ABORT_GRACE = 1.0  # ... once the guest failed mid-stream, before the connection is cut
# An inline run's whole response up to this size is sent as two messages with no timer around them,
# as a WAGI guest's is: the server's transport takes it without waiting (it pauses its writer only
# past its high-water mark, 64 KiB); a larger one is sent under DRAIN_TIMEOUT.
DIRECT_BYTES = 64 * 1024
_UNBOUNDED = 1 << 62  # the queue of an inline run: never full (the guest's body is capped by maxResponseSize)


class StreamedAnswers:
    """``WasmletApp``'s answers for guests that stream (the attributes below are the app's)."""

    bodies: BodyBudget
    inline: InlinePolicy
    telemetry: RequestTelemetry
    _pool: concurrent.futures.ThreadPoolExecutor | None

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
        if may_carry_body(scope, headers):
            declared = declared_length(headers)
            try:
                if declared is not None and declared > app.max_body_size:
                    raise BodyRefused.too_large()
                try:
                    async with asyncio.timeout(BODY_TIMEOUT):  # nothing held meanwhile: no guest, no budget
                        first = await receive()
                except TimeoutError:
                    raise BodyRefused.too_slow() from None
            except BodyRefused as refused:
                await refuse_body(send, refused, ids)
                return refused.status, refused.cause, None
            # At most a queue's worth is held at once, whatever the body's length.
            reserve = UPLOAD_QUEUE_BYTES if declared is None else min(declared, UPLOAD_QUEUE_BYTES)
            if not self.bodies.take(reserve):
                full = BodyRefused.over_budget()
                await refuse_body(send, full, ids)
                return full.status, full.cause, None
            upload = RequestBody(asyncio.get_running_loop(), app.max_body_size, self.bodies, reserved=reserve)
            if upload.accept(first):
                upload.start(receive)
            elif upload.cause is not None:
                upload.close()
                fields = {"app": app.name, "request_id": request_id, "trace_id": trace_id}
                return await _refuse_upload(send, upload, app.name, fields, ids, None)
        # else HTTP/1 without Content-Length or Transfer-Encoding: no body (RFC 9112 section 6.3), nothing to stream
        request = cgi_request(scope, headers, path, b"")
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
                # All of it is queued already: sent from this task (no sender task, no wait_for).
                return await self._streamed_outcome(send, app, stream, None, result, failure, None, ids,
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
            await refuse(send, exc, request_id)
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
        self, send: Send, app: App, stream: ResponseStream, sender: asyncio.Task[None] | None,
        result: GuestResult | None, failure: GuestError | None, upload: RequestBody | None,
        ids: list[tuple[bytes, bytes]], request_id: str, trace_id: str,
    ) -> tuple[int, str, GuestStats | None]:
        """After a streaming guest returned (``stream`` closed): send the rest, or fail as its point allows.

        ``sender`` is the task sending ``stream`` while the guest ran; None if none was started
        (an inline run: nothing was sent yet, and the rest is sent from here).
        """
        fields = {"app": app.name, "request_id": request_id, "trace_id": trace_id}
        pending = sender if sender is not None else _SendRest(stream, send, ids)
        if upload is not None:
            upload.close()  # the guest returned: nothing more of the body is received or held
            if upload.cause is not None and not stream.started:
                pending.cancel()
                stats = result.stats if result is not None else (
                    failure.stats if failure is not None and isinstance(failure.stats, GuestStats) else None)
                return await _refuse_upload(send, upload, app.name, fields, ids, stats)
        if failure is None:
            assert result is not None
            if result.stderr:
                log_stderr(result.stderr, fields)
            if not stream.started:  # a guest that answered without a committed status: as buffered
                pending.cancel()
                response = result.response
                out_headers, body = framed(response.status, [*response.headers, *ids], response.body, "GET")
                await send({"type": "http.response.start", "status": response.status, "headers": out_headers})
                await send({"type": "http.response.body", "body": body})
                return response.status, "", result.stats
            whole = stream.take_whole(DIRECT_BYTES) if sender is None else None
            if whole is not None:  # an inline run's small response: two messages, as a WAGI guest's
                status, head, body = whole
                await send({"type": "http.response.start", "status": status, "headers": [*head, *ids]})
                await send({"type": "http.response.body", "body": body})
                return status, "", result.stats
            await _drain(pending, DRAIN_TIMEOUT)
            if not stream.complete:
                log.warning("app=%s the client did not take the response within %gs; closed", app.name,
                            DRAIN_TIMEOUT, extra=fields)
            return _sent_status(stream, result.response.status), "", result.stats
        stats = failure.stats if isinstance(failure.stats, GuestStats) else None
        if not stream.started:
            pending.cancel()
            log.warning("app=%s cause=%s status=%d %s", app.name, failure.cause, failure.status, failure,
                        extra={**fields, "cause": failure.cause, "status": failure.status})
            log_stderr(failure.stderr, fields)
            await respond(send, failure.status, f"{failure.status} {failure.cause}\n".encode(),
                           cause=failure.cause.encode(), extra=ids)
            return failure.status, failure.cause, stats
        await _drain(pending, ABORT_GRACE)
        when = "after the response was complete" if stream.complete else "mid-stream; the response was cut short"
        log.warning("app=%s cause=%s status=%d %s (%s)", app.name, failure.cause, failure.status, failure, when,
                    extra={**fields, "cause": failure.cause, "status": failure.status})
        log_stderr(failure.stderr, fields)
        # Returning without the last body message: uvicorn closes the connection, and a chunked
        # response then lacks its last chunk (RFC 9112 section 7.1), a sized one its last bytes.
        return failure.status, failure.cause, stats


class _SendRest:
    """A closed stream's sending not started yet: ``_drain`` sends it from the calling task.

    An inline run queued all of its response before anything was sent, so no task has to
    wait for it: creating one and a ``wait_for`` around it cost more than the send itself.
    """

    __slots__ = ("_extra", "_send", "_stream")

    def __init__(self, stream: ResponseStream, send: Send, extra: list[tuple[bytes, bytes]]) -> None:
        self._stream, self._send, self._extra = stream, send, extra

    def cancel(self) -> None:
        """Nothing is sent (nothing was)."""

    async def run(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):  # a client that stopped reading is cut off, as with a task
            await self._stream.send_to(self._send, self._extra)


async def _drain(sender: asyncio.Task[None] | _SendRest, timeout: float) -> None:
    """Let ``sender`` send what is queued, for up to ``timeout`` seconds (then it is cancelled)."""
    try:
        if isinstance(sender, _SendRest):
            await sender.run(timeout)
        else:
            await asyncio.wait_for(sender, timeout)
    except TimeoutError:
        pass
    except Exception:  # the server refused a message: the response stays incomplete, the request is still logged
        log.exception("cannot send a streamed response")


async def _refuse_upload(
    send: Send, upload: RequestBody, app: str, fields: dict[str, str], ids: list[tuple[bytes, bytes]],
    stats: GuestStats | None,
) -> tuple[int, str, GuestStats | None]:
    """The answer to a request whose body failed while its guest ran, before the guest committed a status."""
    cause = upload.cause or ""
    log.info("app=%s cause=%s the request body failed before the guest answered: %s", app, cause, upload.error,
             extra={**fields, "cause": cause})
    if cause == "client-closed":  # nobody to answer
        return CLIENT_CLOSED, cause, stats
    refused = BodyRefused.too_large() if cause == "body-limit" else BodyRefused.over_budget()
    await refuse_body(send, refused, ids)
    return refused.status, cause, stats


def may_stream(scope: Scope) -> bool:
    """Whether a response may be streamed to this request's client.

    Not to HEAD (it gets the Content-Length a GET would have), nor over HTTP/1.0 (no chunked
    coding), nor to a caller inside wasmlet (``_forward.dispatch``: it takes the answer whole).
    """
    return (scope["method"] != "HEAD" and scope.get("http_version", "1.1") != "1.0"
            and not (scope.get("extensions") or {}).get("wasmlet.buffered"))


def _sent_status(stream: ResponseStream, status: int) -> int:
    return status if stream.complete else CLIENT_CLOSED


