"""``wasi:io`` 0.2: ``error``, ``poll`` and ``streams``, on the request's resource table.

An input stream reads either bytes the host already holds (``InputStream``:
an outbound response, read whole by the egress code; a request body the
server buffered: HEAD, HTTP/1.0, app-to-app and lattice calls, in-process
``handle()``) or a request body still arriving (``SourceStream`` over a
``BodySource``: the server's ``RequestBody``, fed by the event loop). An
output stream appends to a sink (the response body, capped at
``maxResponseSize`` and streamed by the server; the log; an outbound
request's body).

Every wait is bounded by the request's deadline: a pollable of a clock
(``wasi:clocks/monotonic-clock.subscribe-*``), a ``blocking-read`` or
``blocking-skip`` on a request body whose client is slow, and ``poll`` on
either. Past the deadline the guest is stopped and the request answered 504,
as a guest spinning in a loop is. ``read`` and ``skip`` never wait: on a body
still arriving they return what is there, possibly nothing (an empty list is
"no data yet" in ``streams.wit``; ``subscribe`` gives a pollable ready when
there is data, the end, or an error). A body that fails (the client left, or
sent more than ``maxBodySize``) reads as ``last-operation-failed`` once, with
an ``error`` saying why, then as ``closed``.

Semantics follow wasmtime's implementation where the WIT leaves room:
``write`` past the budget ``check-write`` gave traps, and so does
``blocking-write-and-flush`` with more than 4096 bytes (``streams.wit``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import wasmtime.component as wc

from . import _abi as abi
from . import _ids as ids
from ._abi import Trap
from ._state import current, drop, get

__all__ = ["BodySource", "InputStream", "IoError", "OutputStream", "Pollable", "SourceStream", "define_error",
           "define_poll", "define_streams", "stream_error", "timer"]

_BUDGET = 1 << 16  # bytes check-write allows at a time
_BLOCKING_MAX = 4096  # streams.wit: blocking-write-and-flush takes at most 4096 bytes
_MAX_READ = 1 << 20  # bytes one read returns at most, whatever the guest asks for (it may ask for 2**64-1)


class IoError:
    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


class Pollable:
    """Ready at once, at a ``time.monotonic_ns()`` instant, when ``check()`` says so, or when ``source`` has data."""

    __slots__ = ("at", "check", "source")

    def __init__(self, at: int = 0, check: Callable[[bool], bool] | None = None,
                 source: BodySource | None = None) -> None:
        self.at = at
        self.check = check
        self.source = source

    def ready(self) -> bool:
        if self.source is not None:
            return self.source.ready()
        if self.check is not None:
            return self.check(False)
        return time.monotonic_ns() >= self.at

    def wait(self) -> None:
        if not self.ready():
            give_way_if_inline()
        if self.source is not None:
            _wait_for(self.source, current().deadline)
            return
        if self.check is not None:
            self.check(True)  # blocking: does the work (an outbound request), bounded by the deadline
            return
        delay = (self.at - time.monotonic_ns()) / 1e9
        if delay <= 0:
            return
        session = current()
        left = session.left()
        if delay >= left:
            # Sleep out what is left, then stop the guest: it will not answer in time.
            time.sleep(max(left, 0.0))
            session.timed_out = True
            raise Trap("wasmlet: the guest waited past its deadline")
        time.sleep(delay)


READY = Pollable()


class BodySource(Protocol):
    """A request body still arriving, read on the guest's thread (the server's ``RequestBody``).

    ``read`` never waits: up to ``size`` bytes, ``b""`` if none are there yet,
    None once there will be no more (the end, or a failure: then ``error``
    says why). ``wait`` blocks until ``ready`` or ``until`` (``time.monotonic()``),
    and says whether it is ready.
    """

    error: str | None
    starved: bool  # set here: the guest was still waiting for the body at its deadline (the client's doing)

    def read(self, size: int) -> bytes | None: ...

    def skip(self, size: int) -> int | None: ...

    def ready(self) -> bool: ...

    def wait(self, until: float) -> bool: ...


def give_way_if_inline() -> None:
    """In a run on the event loop's thread, stop the guest before it waits: it runs again on a worker thread."""
    session = current()
    if session.inline:
        session.gave_way = True
        raise Trap("wasmlet: the guest gives way to a worker thread (it would wait)")


def _wait_for(source: BodySource, until: float) -> bool:
    """Wait for ``source`` until ``until``; past the request's deadline the guest is stopped (504)."""
    give_way_if_inline()
    session = current()
    if source.wait(min(until, session.deadline)):
        return True
    if time.monotonic() >= session.deadline:
        session.timed_out = True
        source.starved = True
        raise Trap("wasmlet: the request body did not arrive before the guest's deadline")
    return False


def timer(at_ns: int) -> int:
    return current().add(Pollable(at=at_ns))


def stream_error(closed: bool, message: str = "") -> tuple[str, object]:
    """A ``stream-error`` value: ``closed``, or ``last-operation-failed`` with a new ``error``."""
    if closed:
        return ("closed", None)
    return ("last-operation-failed", current().add(IoError(message)))


class InputStream:
    """Bytes the host holds: every read is answered at once, and a blocking one never blocks."""

    __slots__ = ("data", "parent", "pos")

    def __init__(self, data: bytes, parent: object = None) -> None:
        self.data = data
        self.pos = 0
        self.parent = parent

    def read(self, size: int, blocking: bool = False) -> tuple[bool, object]:
        if self.pos >= len(self.data):
            return (False, stream_error(True))
        size = min(size, _MAX_READ)
        chunk = self.data[self.pos:self.pos + size]
        self.pos += len(chunk)
        return (True, chunk)

    def skip(self, size: int, blocking: bool = False) -> tuple[bool, object]:
        if self.pos >= len(self.data):
            return (False, stream_error(True))
        size = min(size, len(self.data) - self.pos)
        self.pos += size
        return (True, size)

    def subscribe(self) -> Pollable:
        return READY


class SourceStream(InputStream):
    """A request body read as it arrives (``BodySource``): reads wait only when blocking, up to the deadline.

    ``blocking-read`` with a ``len`` of 0 returns at once (wasmtime does the same).
    A failure is reported once as ``last-operation-failed`` (``streams.wit``: the
    stream is closed after it), then as ``closed``.
    """

    __slots__ = ("failed", "source")

    def __init__(self, source: BodySource, parent: object = None) -> None:
        super().__init__(b"", parent)
        self.source = source
        self.failed = False

    def _end(self) -> tuple[bool, object]:
        error = self.source.error
        if error is None or self.failed:
            return (False, stream_error(True))
        self.failed = True
        return (False, stream_error(False, error))

    def read(self, size: int, blocking: bool = False) -> tuple[bool, object]:
        if self.failed:
            return (False, stream_error(True))
        if blocking and size:
            _wait_for(self.source, float("inf"))
        chunk = self.source.read(min(size, _MAX_READ))
        return self._end() if chunk is None else (True, chunk)

    def skip(self, size: int, blocking: bool = False) -> tuple[bool, object]:
        if self.failed:
            return (False, stream_error(True))
        if blocking and size:
            _wait_for(self.source, float("inf"))
        skipped = self.source.skip(size)
        return self._end() if skipped is None else (True, skipped)

    def subscribe(self) -> Pollable:
        return Pollable(source=self.source)


class OutputStream:
    """Writes go to ``sink`` (a function taking bytes) while ``open``."""

    __slots__ = ("budget", "open", "sink")

    def __init__(self, sink: Callable[[bytes], None]) -> None:
        self.sink = sink
        self.open = True
        self.budget = 0

    def check_write(self) -> tuple[bool, object]:
        if not self.open:
            return (False, stream_error(True))
        self.budget = _BUDGET
        return (True, _BUDGET)

    def write(self, data: bytes) -> tuple[bool, object]:
        if not self.open:
            return (False, stream_error(True))
        if len(data) > self.budget:
            raise Trap(f"wasmlet: output-stream.write of {len(data)} bytes past the {self.budget} check-write allowed")
        self.budget -= len(data)
        self.sink(data)
        return (True, None)

    def write_and_flush(self, data: bytes) -> tuple[bool, object]:
        if len(data) > _BLOCKING_MAX:
            raise Trap(f"wasmlet: blocking-write-and-flush of {len(data)} bytes (at most {_BLOCKING_MAX})")
        if not self.open:
            return (False, stream_error(True))
        self.sink(data)
        return (True, None)

    def flush(self) -> tuple[bool, object]:
        return (True, None) if self.open else (False, stream_error(True))


# -- definitions ---------------------------------------------------------------------------------------------------

_STREAM_ERROR = abi.variant({"last-operation-failed": abi.own(ids.ERROR), "closed": None})
_R_UNIT = abi.result(None, _STREAM_ERROR)
_R_BYTES = abi.result(abi.bytes_list, _STREAM_ERROR)
_R_U64 = abi.result(abi.u64, _STREAM_ERROR)
_POLLABLE = abi.own(ids.POLLABLE)


def define_error(instance: wc.LinkerInstance) -> None:
    abi.add_resource(instance, "error", ids.ERROR, drop)
    abi.add_func(instance, "[method]error.to-debug-string", lambda rep: get(rep, IoError).message, abi.string)


def _poll(reps: list[int]) -> list[int]:
    if not reps:
        raise Trap("wasmlet: poll with an empty list")  # as wasmtime: it would wait forever
    if len(reps) > 0xFFFFFFFF:
        raise Trap("wasmlet: poll with too many pollables")
    pollables = [get(rep, Pollable) for rep in reps]
    while True:
        ready = [i for i, p in enumerate(pollables) if p.ready()]
        if ready:
            return ready
        # Nothing ready: an outbound request does its work when waited on; a request body is
        # waited for up to the earliest timer (and the deadline); else the earliest timer.
        futures = [p for p in pollables if p.check is not None]
        if futures:
            futures[0].wait()
            continue
        timers = [p for p in pollables if p.source is None]
        earliest = min(timers, key=lambda p: p.at) if timers else None
        body = next((p.source for p in pollables if p.source is not None), None)
        if body is not None:
            until = float("inf") if earliest is None else time.monotonic() + (earliest.at - time.monotonic_ns()) / 1e9
            _wait_for(body, until)
            continue
        assert earliest is not None
        earliest.wait()


def define_poll(instance: wc.LinkerInstance) -> None:
    abi.add_resource(instance, "pollable", ids.POLLABLE, drop)
    abi.add_func(instance, "[method]pollable.ready", lambda rep: get(rep, Pollable).ready(), abi.boolean)
    abi.add_func(instance, "[method]pollable.block", lambda rep: get(rep, Pollable).wait())
    abi.add_func(instance, "poll", _poll, abi.list_of(abi.u32))


def _ready(_rep: int) -> int:
    return current().add(READY)


def _splice(rep: int, src: int, size: int, blocking: bool) -> tuple[bool, object]:
    out = get(rep, OutputStream)
    source = get(src, InputStream)
    if not out.open:
        return (False, stream_error(True))
    ok, chunk = source.read(min(size, _BUDGET), blocking)
    if not ok:
        return (False, chunk)
    assert isinstance(chunk, bytes)
    out.sink(chunk)
    return (True, len(chunk))


def _write_zeroes(rep: int, size: int, blocking: bool) -> tuple[bool, object]:
    out = get(rep, OutputStream)
    if blocking:
        return out.write_and_flush(bytes(size) if size <= _BLOCKING_MAX else b"\0" * (_BLOCKING_MAX + 1))
    return out.write(bytes(min(size, out.budget + 1)))


def define_streams(instance: wc.LinkerInstance) -> None:
    abi.add_resource(instance, "input-stream", ids.INPUT_STREAM, drop)
    abi.add_resource(instance, "output-stream", ids.OUTPUT_STREAM, drop)
    f = abi.add_func
    f(instance, "[method]input-stream.read", lambda rep, n: get(rep, InputStream).read(n), _R_BYTES)
    f(instance, "[method]input-stream.blocking-read", lambda rep, n: get(rep, InputStream).read(n, True), _R_BYTES)
    f(instance, "[method]input-stream.skip", lambda rep, n: get(rep, InputStream).skip(n), _R_U64)
    f(instance, "[method]input-stream.blocking-skip", lambda rep, n: get(rep, InputStream).skip(n, True), _R_U64)
    f(instance, "[method]input-stream.subscribe", lambda rep: current().add(get(rep, InputStream).subscribe()),
      _POLLABLE)
    f(instance, "[method]output-stream.check-write", lambda rep: get(rep, OutputStream).check_write(), _R_U64)
    f(instance, "[method]output-stream.write", lambda rep, data: get(rep, OutputStream).write(data), _R_UNIT)
    f(instance, "[method]output-stream.blocking-write-and-flush",
      lambda rep, data: get(rep, OutputStream).write_and_flush(data), _R_UNIT)
    f(instance, "[method]output-stream.flush", lambda rep: get(rep, OutputStream).flush(), _R_UNIT)
    f(instance, "[method]output-stream.blocking-flush", lambda rep: get(rep, OutputStream).flush(), _R_UNIT)
    f(instance, "[method]output-stream.subscribe", _ready, _POLLABLE)
    f(instance, "[method]output-stream.write-zeroes", lambda rep, n: _write_zeroes(rep, n, False), _R_UNIT)
    f(instance, "[method]output-stream.blocking-write-zeroes-and-flush",
      lambda rep, n: _write_zeroes(rep, n, True), _R_UNIT)
    f(instance, "[method]output-stream.splice", lambda rep, src, n: _splice(rep, src, n, False), _R_U64)
    f(instance, "[method]output-stream.blocking-splice", lambda rep, src, n: _splice(rep, src, n, True), _R_U64)
