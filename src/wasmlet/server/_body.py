"""Request bodies read whole: the worker's memory budget for them, and the answers when they fail.

A guest that takes its body whole (WAGI, ``wasi:cli``, a request forwarded over
the lattice) gets it only once all of it is in: a truncated body never reaches a
guest. Bodies streamed in to a guest are ``_upload``'s; both share the budget.
"""

from __future__ import annotations

import asyncio

from ._asgi_types import Receive, Scope

__all__ = ["BODY_MEMORY", "BODY_TIMEOUT", "BodyBudget", "BodyRefused", "Held", "declared_length",
           "may_carry_body", "read_whole_body"]


BODY_TIMEOUT = 30.0  # seconds to receive a whole request body
BODY_MEMORY = 256 * 1024 * 1024  # bytes of request bodies a worker holds at once (ServeSettings.body_memory)


class BodyBudget:
    """The bytes of request bodies a worker holds at once, over all its requests.

    Each request takes its body's size from it (see ``read_whole_body``) and gives
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


class BodyRefused(Exception):
    """The answer a request gets instead of reaching its guest, because of its body."""

    def __init__(self, status: int, cause: str, message: bytes, retry_after: bool = False) -> None:
        super().__init__(cause)
        self.status = status
        self.cause = cause
        self.message = message
        self.retry_after = retry_after  # the budget is full now, not for good: "Retry-After: 1"

    @classmethod
    def too_large(cls) -> BodyRefused:
        return cls(413, "body-limit", b"request body too large\n")

    @classmethod
    def over_budget(cls) -> BodyRefused:
        return cls(503, "body-memory", b"503 overloaded: request bodies fill this worker's memory budget\n",
                   retry_after=True)

    @classmethod
    def too_slow(cls) -> BodyRefused:
        return cls(408, "body-timeout", b"request body not received in time\n")


class Held:
    """One request's share of the ``BodyBudget``; ``release`` gives it all back."""

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.size = 0

    def take(self, size: int) -> None:
        if not self.budget.take(size):
            raise BodyRefused.over_budget()
        self.size += size

    def release(self) -> None:
        self.budget.give(self.size)
        self.size = 0


def may_carry_body(scope: Scope, headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the request may have a body to wait for.

    HTTP/1 without Content-Length or Transfer-Encoding has none (RFC 9112
    section 6.3): nothing to wait for. Any other HTTP version may carry one.
    """
    return (any(name in (b"content-length", b"transfer-encoding") for name, _ in headers)
            or scope.get("http_version", "1.1") not in ("1.1", "1.0"))


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The request's Content-Length (uvicorn has already refused a malformed or repeated one)."""
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def read_whole_body(scope: Scope, receive: Receive, headers: list[tuple[bytes, bytes]], limit: int,
                          held: Held) -> bytes | None:
    """The whole request body, or ``None`` if the client left before sending all of it.

    Raises ``BodyRefused``: over ``limit`` (413), over the worker's budget
    (503), or not all in within ``BODY_TIMEOUT`` (408: a client trickling its
    body holds a connection, never a guest). A body that cannot exist is not
    waited for, so no timer is set for it.
    """
    if not may_carry_body(scope, headers):
        return await _read_body(receive, headers, limit, held)
    try:
        async with asyncio.timeout(BODY_TIMEOUT):  # a timer, not a task per request as wait_for makes
            return await _read_body(receive, headers, limit, held)
    except TimeoutError:
        raise BodyRefused.too_slow() from None


async def _read_body(receive: Receive, headers: list[tuple[bytes, bytes]], limit: int, held: Held) -> bytes | None:
    # A declared Content-Length is taken from the budget before a byte is read, so a
    # request is admitted whole or refused at once: under contention, uploads under
    # way finish and new ones get 503, rather than every upload failing half-way. A
    # chunked body takes as it arrives. One growing buffer per request rather than a
    # list of chunks: freed at once, in one piece (see ``_worker._return_freed_memory``).
    declared = declared_length(headers)
    if declared is not None:
        if declared > limit:
            raise BodyRefused.too_large()
        held.take(declared)
    body = bytearray()
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            if chunk:
                if len(body) + len(chunk) > limit:
                    raise BodyRefused.too_large()
                if len(body) + len(chunk) > held.size:
                    held.take(len(body) + len(chunk) - held.size)
                body += chunk
            if not message.get("more_body", False):
                return bytes(body)
    finally:
        # Free the buffer now: an exception's traceback keeps this frame, and asyncio's
        # task and future make a reference cycle of it that only a later gc pass breaks.
        body.clear()
