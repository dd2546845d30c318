"""One request's host-side state: its resource table, its response and its log, bound to the thread.

Host functions are defined once per linker and shared by every request; a call
finds its request through ``current()``, the ``Session`` bound to the calling
thread around the guest call (wasmtime-py runs a guest, and calls its host
functions back, on the thread that called into it), as ``_wasi_http`` does
with its ``OutboundContext``.

Resources are Python objects in ``Session.objects`` keyed by their ``rep``
(the u32 wasmtime hands back with a handle). The canonical ABI checks a
handle's type before the host sees it, so a rep found here has the type the
function expects; ``get`` checks the class again anyway and traps otherwise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ._abi import Trap

if TYPE_CHECKING:
    from .._wagi import CgiRequest
    from .._wasi_http import OutboundContext
    from ._io import BodySource

__all__ = ["MAX_HELD", "MAX_LOG", "MAX_OBJECTS", "OutputLimit", "ResponseSink", "Session", "bind", "current", "enter",
           "get", "leave"]

T = TypeVar("T")

MAX_LOG = 1 << 20  # bytes of stdout + stderr kept for the host log (as WAGI's stderr)
MAX_OBJECTS = 100_000  # live resources per request: a guest minting handles in a loop traps here
# Bytes a request may make the host hold besides its response body and log: header fields and
# outbound request bodies, all together (each is capped on its own too, but a guest could make many).
MAX_HELD = 16 << 20


class OutputLimit(Trap):
    """The response body or the log went past its cap (answered as ``GuestOutputLimit``)."""


class ResponseSink(Protocol):
    """Where a streamed response goes as the guest produces it (the server's side: ``server._stream``).

    Called on the guest's thread: ``start`` once, when the guest sets its
    ``response-outparam``; ``write`` for each write to the body, blocking while
    the client lags (False: still no room at ``deadline``, ``time.monotonic()``);
    ``end`` when the guest finishes the body.
    """

    def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...

    def write(self, data: bytes, deadline: float) -> bool: ...

    def end(self) -> None: ...


# (status, headers) as they go out for an OutgoingResponse; None if it may not (see ProxyHandler._head).
Head = Callable[[Any], "tuple[int, list[tuple[bytes, bytes]]] | None"]
_BODILESS = frozenset({204, 304})


class Session:
    """What one request may touch, and what it produced."""

    __slots__ = (
        "app",
        "bad",
        "body",
        "body_size",
        "deadline",
        "declared",
        "denied",
        "discard",
        "environment",
        "exit",
        "failure",
        "finished",
        "gave_way",
        "head",
        "headers",
        "held",
        "inline",
        "log",
        "log_size",
        "max_body",
        "next_rep",
        "objects",
        "outbound",
        "request",
        "response",
        "sink",
        "source",
        "started",
        "timed_out",
        "traceparent",
    )

    def __init__(self, app: str, request: CgiRequest, headers: list[tuple[str, bytes]], deadline: float,
                 max_body: int, environment: tuple[tuple[str, str], ...],
                 outbound: OutboundContext | None, sink: ResponseSink | None = None,
                 head: Head | None = None, source: BodySource | None = None) -> None:
        self.app = app
        self.request = request
        self.headers = headers  # the incoming request's, as the guest sees them
        self.deadline = deadline  # time.monotonic()
        self.max_body = max_body
        self.environment = environment
        self.outbound = outbound
        self.objects: dict[int, Any] = {}
        self.next_rep = 1
        self.response: Any = None  # the OutgoingResponse set on the outparam, or ("error", text)
        self.body: list[bytes] = []
        self.body_size = 0
        self.finished = False  # the response body was finished
        self.log: list[bytes] = []
        self.log_size = 0
        self.failure: str | None = None  # "output-limit", ...
        self.timed_out = False
        # Run on the event loop's thread (ProxyHandler.handle_inline): the first wait gives way instead.
        self.inline = False
        self.gave_way = False
        self.denied: list[str] = []
        self.traceparent = ""
        self.held = 0  # bytes of fields and outbound bodies made in this request (see MAX_HELD)
        self.exit: Any = None  # the _cli.Exit the guest raised, if it called wasi:cli/exit
        # Streaming (a sink given): the response goes to ``sink`` from the outparam's set on.
        self.sink = sink
        self.source = source  # the request body as it arrives (the server streams it in); None: request.body
        self.head = head
        self.started = False  # the status and headers went to the sink: a failure can no longer change them
        self.declared: int | None = None  # the guest's Content-Length, kept while the body matches it
        self.discard = False  # a 204 or 304: the body is counted against the cap but never sent
        self.bad: str | None = None  # why the response is bad (GuestBadResponse), found while streaming

    # the resource table
    def add(self, obj: object) -> int:
        if len(self.objects) >= MAX_OBJECTS:
            raise Trap(f"wasmlet: more than {MAX_OBJECTS} live resources in one request")
        rep = self.next_rep
        self.next_rep = rep + 1
        self.objects[rep] = obj
        return rep

    def hold(self, size: int) -> bool:
        """Account for ``size`` more bytes held for the guest; False (nothing held) past ``MAX_HELD``."""
        if self.held + size > MAX_HELD:
            return False
        self.held += size
        return True

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def write_body(self, data: bytes) -> None:
        size = self.body_size + len(data)
        if size > self.max_body:
            self.failure = "output-limit"
            raise OutputLimit(f"wasmlet: the response body went past its cap of {self.max_body} bytes")
        self.body_size = size
        if not data:
            return
        if not self.started:
            self.body.append(data)
            return
        if self.declared is not None and size > self.declared:
            self.bad = f"the guest wrote more than the Content-Length of {self.declared} bytes it declared"
            raise Trap(f"wasmlet: {self.bad}")
        if not self.discard:
            self._send(data)

    def _send(self, data: bytes) -> None:
        assert self.sink is not None
        if not self.sink.write(data, self.deadline):
            # The client reads slower than the guest writes: the guest waited for room up to its deadline.
            self.timed_out = True
            raise Trap("wasmlet: the client did not take the response before the deadline")

    def commit(self) -> None:
        """The guest set its response-outparam: stream the status and headers, then what it already wrote.

        A response that may not go out (``head`` says None) is left to the
        handler, which answers 502 after the guest returns, as without a sink.
        """
        if self.sink is None or self.head is None:
            return
        head = self.head(self.response)
        if head is None:
            return
        status, headers = head
        if status in _BODILESS:
            self.discard = True
        else:
            declared = _content_length(self.response.headers.entries, self.max_body)
            if declared is not None:
                self.declared = declared
                headers.append((b"content-length", str(declared).encode("ascii")))
        self.started = True
        self.sink.start(status, headers)
        written, self.body = self.body, []
        if self.declared is not None and self.body_size > self.declared:
            self.bad = f"the guest wrote more than the Content-Length of {self.declared} bytes it declared"
            raise Trap(f"wasmlet: {self.bad}")
        if written and not self.discard:
            self._send(b"".join(written))

    def finish_body(self) -> bool:
        """The guest finished the response body; False if it is shorter than the Content-Length it declared."""
        if self.started and self.declared is not None and self.body_size != self.declared:
            self.bad = (f"the guest finished a body of {self.body_size} bytes after declaring a Content-Length "
                        f"of {self.declared}")
            return False
        self.finished = True
        if self.started:
            assert self.sink is not None
            self.sink.end()
        return True

    def write_log(self, data: bytes) -> None:
        size = self.log_size + len(data)
        if size > MAX_LOG:
            self.failure = "output-limit"
            raise OutputLimit(f"wasmlet: the guest wrote more than {MAX_LOG} bytes to stdout and stderr")
        self.log_size = size
        if data:
            self.log.append(data)

    def sizes(self) -> tuple[int, int]:
        """For the deadline watch (``_watch.Watch``): (response bytes, log bytes)."""
        return self.body_size, self.log_size


def _content_length(entries: list[tuple[str, bytes]], cap: int) -> int | None:
    """The guest's Content-Length if it gave exactly one well-formed value (RFC 9110 section 8.6) within ``cap``."""
    values = {v.strip() for n, v in entries if n.lower() == "content-length"}
    if len(values) != 1:
        return None
    value = values.pop()
    if not value.isdigit() or len(value) > 19 or int(value) > cap:
        return None
    return int(value)


_bound = threading.local()


def current() -> Session:
    session: Session | None = getattr(_bound, "session", None)
    if session is None:
        raise Trap("wasmlet: a wasi:http host function was called outside of a request")
    return session


def get(rep: int, kind: type[T]) -> T:
    """The object behind ``rep``, which must be a ``kind``; a trap otherwise (dropped or foreign handle)."""
    obj = getattr(_bound, "session", None)
    if obj is None:
        raise Trap("wasmlet: a wasi:http host function was called outside of a request")
    found = obj.objects.get(rep)
    if not isinstance(found, kind):
        raise Trap(f"wasmlet: handle {rep} is not a live {kind.__name__}")
    return found


def add(obj: object) -> int:
    return current().add(obj)


def drop(rep: int) -> Any:
    """The guest dropped its handle: forget the object (a no-op outside a request)."""
    session: Session | None = getattr(_bound, "session", None)
    if session is None:
        return None
    return session.objects.pop(rep, None)


def enter(session: Session) -> Session | None:
    """Bind ``session`` to this thread; returns what to give ``leave`` after the guest call."""
    previous: Session | None = getattr(_bound, "session", None)
    _bound.session = session
    return previous


def leave(previous: Session | None) -> None:
    _bound.session = previous


@contextmanager
def bind(session: Session) -> Iterator[Session]:
    previous = getattr(_bound, "session", None)
    _bound.session = session
    try:
        yield session
    finally:
        _bound.session = previous
