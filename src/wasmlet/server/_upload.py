"""A request body streamed from the event loop to a guest's thread, with bounded back-pressure.

The mirror of ``_stream.ResponseStream``. A task on the event loop
(``pump``) calls ASGI ``receive()`` and queues the chunks; the guest's
worker thread reads them (``read``, ``skip``, ``wait``: the ``BodySource`` of
``wasmlet.guest``'s proxy host) while the rest still arrives. The queue holds
at most ``limit`` bytes (plus the chunk that crossed it): past that the pump
stops calling ``receive()``, so uvicorn stops reading the socket (its flow
control pauses past 64 KiB) and a fast client waits in TCP rather than in
memory. The pump is woken with ``call_soon_threadsafe`` only when it waits for
room; the reader waits on a condition variable, never past the time it gives
(the guest's deadline: then the guest is stopped, 504).

What the queue holds is counted against the worker's ``BodyBudget`` (taken
and given on the event loop only, as the budget has no lock). A body that
ends badly is an ``error`` for the guest's next read and a ``cause`` for the
server: ``body-limit`` (more than the app's ``maxBodySize``), ``body-memory``
(the worker's budget is full), ``client-closed`` (the client left).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, MutableMapping
from typing import Any, Protocol

from ._asgi_types import Receive

__all__ = ["QUEUE_BYTES", "Budget", "RequestBody"]

QUEUE_BYTES = 256 * 1024  # bytes of a request body waiting between the event loop and the guest's thread


class Budget(Protocol):
    """The worker's ``BodyBudget`` (``_body``): bytes of request bodies held at once."""

    def take(self, size: int) -> bool: ...

    def give(self, size: int) -> None: ...


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class RequestBody:
    """One request body: filled on the event loop (``pump``), read on the guest's thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, cap: int, budget: Budget, limit: int = QUEUE_BYTES,
                 reserved: int = 0) -> None:
        self._loop = loop
        self._cap = cap
        self._budget = budget
        self._limit = limit
        self._reserved = reserved  # taken from the budget by the caller, before the pump started
        self._held = reserved  # taken from the budget in all (the event loop's count)
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._chunks: deque[bytes] = deque()
        self._queued = 0
        self._room: asyncio.Future[None] | None = None  # the pump waits for the reader to make room
        self._task: asyncio.Task[None] | None = None
        self._on_failure: Callable[[], None] | None = None
        self.received = 0  # bytes received from the client so far
        self.read_bytes = 0  # ... and taken by the guest
        self.ended = False  # the whole body arrived (it may still be queued)
        self.error: str | None = None  # why the body failed, as the guest's stream error says it
        self.cause: str | None = None  # ... as the server answers and counts it
        self.starved = False  # the guest waited for more of the body until its deadline (set on its thread)

    # The guest's thread -------------------------------------------------------------------------------------
    def read(self, size: int) -> bytes | None:
        """Up to ``size`` queued bytes, ``b""`` if none are there yet, None if no more will come."""
        with self._lock:
            if not self._chunks:
                return None if self.ended or self.error is not None else b""
            parts: list[bytes] = []
            got = 0
            while self._chunks and got < size:
                chunk = self._chunks.popleft()
                if got + len(chunk) > size:
                    keep = size - got
                    self._chunks.appendleft(chunk[keep:])
                    chunk = chunk[:keep]
                parts.append(chunk)
                got += len(chunk)
            self._taken_locked(got)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def skip(self, size: int) -> int | None:
        """As ``read``, the number of bytes dropped rather than the bytes."""
        data = self.read(size)
        return None if data is None else len(data)

    def ready(self) -> bool:
        with self._lock:
            return bool(self._chunks) or self.ended or self.error is not None

    def wait(self, until: float) -> bool:
        """Wait until there is data, the end or an error, or until ``until`` (``time.monotonic()``)."""
        with self._lock:
            while not (self._chunks or self.ended or self.error is not None):
                left = until - time.monotonic()
                if left <= 0:
                    return False
                self._arrived.wait(left)
            return True

    def _taken_locked(self, size: int) -> None:
        self._queued -= size
        self.read_bytes += size
        room = self._room
        if room is not None and self._queued < self._limit:
            self._room = None
            self._loop.call_soon_threadsafe(_wake, room)

    # The event loop ----------------------------------------------------------------------------------------
    def on_failure(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the event loop) when the body fails, now if it already has."""
        self._on_failure = callback
        if self.cause is not None:
            callback()

    def start(self, receive: Receive) -> None:
        """Receive the body (``pump``) in a task of its own, until it ends, fails or ``close`` cancels it."""
        self._task = self._loop.create_task(self.pump(receive))

    async def pump(self, receive: Receive) -> None:
        """Receive the body into the queue until it ends or fails (or the task is cancelled)."""
        while True:
            with self._lock:
                waiter = None
                if self._queued >= self._limit:
                    waiter = self._room = self._loop.create_future()
            if waiter is not None:
                await waiter
                continue
            self._settle()
            if not self.accept(await receive()):
                return

    def accept(self, message: MutableMapping[str, Any]) -> bool:
        """Queue what an ASGI ``receive()`` gave; False once nothing more will come (the end, or a failure)."""
        if message["type"] == "http.disconnect":
            self._fail("client-closed", "the client closed the connection before the request body ended")
            return False
        chunk: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        if chunk:
            if self.received + len(chunk) > self._cap:
                self._fail("body-limit", f"the request body is larger than its cap of {self._cap} bytes")
                return False
            with self._lock:
                want = max(self._reserved, self._queued + len(chunk))
            if want > self._held:
                if not self._budget.take(want - self._held):
                    self._fail("body-memory", "request bodies fill this worker's memory budget")
                    return False
                self._held = want
            self.received += len(chunk)
        with self._lock:
            if chunk:
                self._chunks.append(chunk)
                self._queued += len(chunk)
            if not more:
                self.ended = True
            if chunk or not more:
                self._arrived.notify_all()
        return more

    @property
    def to_blame(self) -> bool:
        """Whether the client, not the guest, made the request fail: its body failed, or never came in time.

        Such a failure is not fed to the app's circuit breaker: a client stalling its uploads
        or sending too much must not open the breaker for everyone else.
        """
        return self.cause is not None or self.starved

    def _settle(self) -> None:
        """Give back to the budget what the guest has read (down to the reservation)."""
        with self._lock:
            want = max(self._reserved, self._queued)
        if self._held > want:
            self._budget.give(self._held - want)
            self._held = want

    def _fail(self, cause: str, error: str) -> None:
        with self._lock:
            self.cause = cause
            self.error = error
            self._chunks.clear()  # a body that failed is not read on: what is queued is dropped
            self._queued = 0
            self._arrived.notify_all()
        self._settle()
        if self._on_failure is not None:
            self._on_failure()

    def close(self) -> None:
        """The guest returned (or the request went away): stop receiving, drop what is queued, give the budget back.

        The rest of a body nobody read is uvicorn's to discard (``_protocol``'s lingering close).
        """
        if self._task is not None:
            self._task.cancel()  # it takes nothing more from the budget: it never runs again
            self._task = None
        with self._lock:
            if not self.ended and self.error is None:
                self.error = "the request is over"
            self._chunks.clear()
            self._queued = 0
            room, self._room = self._room, None
            self._arrived.notify_all()
        if room is not None:
            _wake(room)
        self._budget.give(self._held)
        self._held = 0
