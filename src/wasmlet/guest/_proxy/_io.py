"""``wasi:io`` 0.2: ``error``, ``poll`` and ``streams``, on the request's resource table.

Streams are in memory: an input stream reads bytes the host already holds
(the request body, buffered and capped by the server; an outbound response,
read whole by the egress code), an output stream appends to a sink (the
response body, capped at ``maxResponseSize``; the log; an outbound request's
body). So nothing here ever waits for I/O, except a pollable of a clock
(``wasi:clocks/monotonic-clock.subscribe-*``), whose wait is bounded by the
request's deadline: past it the guest is stopped and the request answered
504, as a guest spinning in a loop is.

Semantics follow wasmtime's implementation where the WIT leaves room:
``write`` past the budget ``check-write`` gave traps, and so does
``blocking-write-and-flush`` with more than 4096 bytes (``streams.wit``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import wasmtime.component as wc

from . import _abi as abi
from . import _ids as ids
from ._abi import Trap
from ._state import current, drop, get

__all__ = ["InputStream", "IoError", "OutputStream", "Pollable", "define_error", "define_poll", "define_streams",
           "stream_error", "timer"]

_BUDGET = 1 << 16  # bytes check-write allows at a time
_BLOCKING_MAX = 4096  # streams.wit: blocking-write-and-flush takes at most 4096 bytes
_MAX_READ = 1 << 20  # bytes one read returns at most, whatever the guest asks for (it may ask for 2**64-1)


class IoError:
    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


class Pollable:
    """Ready at once, at a ``time.monotonic_ns()`` instant, or when ``check()`` says so."""

    __slots__ = ("at", "check")

    def __init__(self, at: int = 0, check: Callable[[bool], bool] | None = None) -> None:
        self.at = at
        self.check = check

    def ready(self) -> bool:
        if self.check is not None:
            return self.check(False)
        return time.monotonic_ns() >= self.at

    def wait(self) -> None:
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


def timer(at_ns: int) -> int:
    return current().add(Pollable(at=at_ns))


def stream_error(closed: bool, message: str = "") -> tuple[str, object]:
    """A ``stream-error`` value: ``closed``, or ``last-operation-failed`` with a new ``error``."""
    if closed:
        return ("closed", None)
    return ("last-operation-failed", current().add(IoError(message)))


class InputStream:
    __slots__ = ("data", "parent", "pos")

    def __init__(self, data: bytes, parent: object = None) -> None:
        self.data = data
        self.pos = 0
        self.parent = parent

    def read(self, size: int) -> tuple[bool, object]:
        if self.pos >= len(self.data):
            return (False, stream_error(True))
        size = min(size, _MAX_READ)
        chunk = self.data[self.pos:self.pos + size]
        self.pos += len(chunk)
        return (True, chunk)

    def skip(self, size: int) -> tuple[bool, object]:
        if self.pos >= len(self.data):
            return (False, stream_error(True))
        size = min(size, len(self.data) - self.pos)
        self.pos += size
        return (True, size)


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
        # Nothing ready: wait for the earliest timer (a future does its work when waited on).
        futures = [p for p in pollables if p.check is not None]
        if futures:
            futures[0].wait()
            continue
        min(pollables, key=lambda p: p.at).wait()


def define_poll(instance: wc.LinkerInstance) -> None:
    abi.add_resource(instance, "pollable", ids.POLLABLE, drop)
    abi.add_func(instance, "[method]pollable.ready", lambda rep: get(rep, Pollable).ready(), abi.boolean)
    abi.add_func(instance, "[method]pollable.block", lambda rep: get(rep, Pollable).wait())
    abi.add_func(instance, "poll", _poll, abi.list_of(abi.u32))


def _ready(_rep: int) -> int:
    return current().add(READY)


def _splice(rep: int, src: int, size: int) -> tuple[bool, object]:
    out = get(rep, OutputStream)
    source = get(src, InputStream)
    if not out.open:
        return (False, stream_error(True))
    ok, chunk = source.read(min(size, _BUDGET))
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
    f(instance, "[method]input-stream.blocking-read", lambda rep, n: get(rep, InputStream).read(n), _R_BYTES)
    f(instance, "[method]input-stream.skip", lambda rep, n: get(rep, InputStream).skip(n), _R_U64)
    f(instance, "[method]input-stream.blocking-skip", lambda rep, n: get(rep, InputStream).skip(n), _R_U64)
    f(instance, "[method]input-stream.subscribe", _ready, _POLLABLE)
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
    f(instance, "[method]output-stream.splice", _splice, _R_U64)
    f(instance, "[method]output-stream.blocking-splice", _splice, _R_U64)
