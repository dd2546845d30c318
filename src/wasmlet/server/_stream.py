"""A response streamed from a guest's thread to the event loop, with bounded back-pressure.

The guest side (``ResponseSink`` of ``wasmlet.guest``, called on the guest's
worker thread) hands over the status and headers, then body chunks, then the
end; the loop side (``send_to``) turns them into ASGI messages. Between the
two is a queue of at most ``limit`` bytes: a guest writing faster than its
client reads blocks in ``write`` until there is room, at most until its
deadline (then the guest is stopped: ``timeout``). The loop is woken with
``call_soon_threadsafe`` only when it waits for more; chunks that queue up
meanwhile go out as one ASGI message (small writes coalesce for free, and a
write is never held back waiting for the next).

``refuse`` is for a request whose body failed (``_upload.RequestBody``) before
the guest committed a status: from then on what the guest hands over is
dropped, and the server answers in its place (413, 503). Under the stream's
lock, so the guest's commit and the failure are ordered: whichever comes first wins.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Protocol

from ..guest import CgiRequest, GuestResult
from ._asgi_types import Send
from ._upload import RequestBody

__all__ = ["QUEUE_BYTES", "ResponseStream", "StreamingHandler"]

QUEUE_BYTES = 256 * 1024  # bytes of a response waiting between the guest's thread and the event loop


class StreamingHandler(Protocol):
    """A handler whose ``handle`` streams its response to a sink (``ProxyHandler``), and with
    ``streams_request`` reads its request body from a source as it arrives (``_upload.RequestBody``)."""

    def handle(self, request: CgiRequest, traceparent: str = "", sink: ResponseStream | None = None,
               source: RequestBody | None = None, deadline: float | None = None) -> GuestResult: ...

    def handle_inline(self, request: CgiRequest, traceparent: str = "", budget: float = ...,
                      sink: ResponseStream | None = None) -> tuple[GuestResult | None, float]: ...


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class ResponseStream:
    """One streamed response: filled on the guest's thread, sent on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = QUEUE_BYTES) -> None:
        self._loop = loop
        self._limit = limit
        self._lock = threading.Lock()
        # Made when a writer first has to wait for room (never, for most responses): a Condition
        # costs more to build than a small response's whole queueing.
        self._room: threading.Condition | None = None
        self._head: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self._chunks: deque[bytes] = deque()
        self._queued = 0
        self._ended = False  # the guest finished the body
        self._closed = False  # the guest's call returned (or the request went away): nothing more comes
        self._refused = False  # the server answers instead of the guest (``refuse``)
        self._waiter: asyncio.Future[None] | None = None
        self.started = False  # the guest committed a status (set on its thread)
        self.head_sent = False  # http.response.start went out (the loop's view)
        self.complete = False  # the last body message went out

    # The guest's thread -------------------------------------------------------------------------------------
    def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        with self._lock:
            if self._refused:
                return
            self._head = (status, headers)
            self.started = True
            self._wake_locked()

    def write(self, data: bytes, deadline: float) -> bool:
        """Queue ``data``; wait while the queue is full. False if still full at ``deadline``."""
        with self._lock:
            while self._queued >= self._limit and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                if self._room is None:
                    self._room = threading.Condition(self._lock)
                self._room.wait(left)
            if not self._closed and not self._refused:  # closed: the request went away, nobody will send it
                self._chunks.append(data)
                self._queued += len(data)
                self._wake_locked()
        return True

    def end(self) -> None:
        with self._lock:
            if not self._refused:
                self._ended = True
                self._wake_locked()

    def _notify_writer_locked(self) -> None:
        if self._room is not None:
            self._room.notify_all()

    def _wake_locked(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            self._loop.call_soon_threadsafe(_wake, waiter)

    # The event loop ----------------------------------------------------------------------------------------
    def refuse(self) -> None:
        """Unless the guest has committed a status, drop all it hands over: the server answers instead."""
        with self._lock:
            if not self.started:
                self._refused = True
                self._notify_writer_locked()
                self._wake_locked()

    def close(self) -> None:
        """Nothing more will be written: ``send_to`` sends what is queued and returns; a waiting writer returns."""
        with self._lock:
            self._closed = True
            self._notify_writer_locked()
            self._wake_locked()

    def take_whole(self, limit: int) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        """The whole response, if the guest ended it, nothing of it was sent, and its body is at most
        ``limit`` bytes: (status, headers, body), taken (the stream counts it sent). Else None.

        For an inline run (``_streamed``), whose response is all queued before anything is sent.
        """
        with self._lock:
            if (self._head is None or not self._ended or self._refused or self.head_sent
                    or self._queued > limit):
                return None
            (status, headers), self._head = self._head, None
            body = b"".join(self._chunks)
            self._chunks.clear()
            self._queued = 0
            self.head_sent = self.complete = True
            return status, headers, body

    async def send_to(self, send: Send, extra: list[tuple[bytes, bytes]]) -> None:
        """Send the response as it comes, ``extra`` headers added, until the guest ends it or it is closed.

        Returns with ``complete`` False if it was closed before the end: the caller then
        ends the exchange without the last message, which the client sees as incomplete.
        """
        while not self.complete:  # (taken whole already: nothing more to send)
            with self._lock:
                head, self._head = self._head, None
                body = b"".join(self._chunks) if self._chunks else b""
                if self._chunks:
                    self._chunks.clear()
                    self._queued = 0
                    self._notify_writer_locked()
                ended, closed = self._ended, self._closed or self._refused
                waiter = None
                if head is None and not body and not ended and not closed:
                    waiter = self._waiter = self._loop.create_future()
            if waiter is not None:
                await waiter
                continue
            if head is not None:
                self.head_sent = True
                await send({"type": "http.response.start", "status": head[0], "headers": [*head[1], *extra]})
            if not self.head_sent:
                return
            if body or ended:
                await send({"type": "http.response.body", "body": body, "more_body": not ended})
            if ended:
                self.complete = True
                return
            if closed:
                return
