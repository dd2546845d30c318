"""WASI preview 1 ``poll_oneoff`` under the request deadline.

wasmtime's epoch deadline stops a guest only while it runs Wasm code (at
function entries and loop back-edges); a guest that sleeps in a host call is
out of its reach, so a ``sleep(8)`` under a 2 s deadline used to answer
after 8 s (wasmtime issue 9188: cancelling host calls needs wasmtime's async
support, which wasmtime-py does not expose).

So ``poll_oneoff`` is defined again on the serving linker, shadowing
wasmtime's (``Linker.allow_shadowing``). The replacement reads the guest's
subscriptions (WASI preview 1 ``subscription``: 48 bytes, ``userdata`` u64 at
0, tag u8 at 8, for a clock: ``id`` u32 at 16, ``timeout`` u64 at 24,
``precision`` u64 at 32, ``flags`` u16 at 40, bit 0 ``abstime``) and turns
every clock that would fire after the deadline into a relative monotonic
clock that fires at the deadline. It then calls wasmtime's own
``poll_oneoff`` (from a second, unshadowed linker) with the guest's
arguments, so fd subscriptions, errors and the events written keep
wasmtime's exact semantics, and puts the guest's bytes back. If the call
returned because the deadline came, the guest is stopped with a trap and
the run is marked as timed out (504).

The function is a raw C callback (``wasmtime_linker_define_func``), not a
wasmtime-py ``define_func``: a Python exception raised from a wasmtime-py
host function is kept in a process-wide ``LAST_EXCEPTION`` that another
thread's next trap may pick up; a C callback returns its trap directly.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import math
import struct
import threading
import time
from typing import Protocol, cast

import wasmtime
from wasmtime import _ffi as ffi

__all__ = ["Deadline", "bind_deadline", "define_deadline_poll"]

log = logging.getLogger("wasmlet.guest")

_MODULE = b"wasi_snapshot_preview1"
_SUBSCRIPTION = 48
_CLOCK_TAG = 0
_REALTIME, _MONOTONIC = 0, 1
_ABSTIME = 1
_MAX_SUBSCRIPTIONS = 4096  # more in one call: EINVAL (wasmtime's own limit is the guest's memory)
_EINVAL = 28


class Deadline(Protocol):
    """What the run being served exposes: its ``time.monotonic()`` deadline, and where to say it passed."""

    deadline: float
    reason: str | None


class _Bound:
    __slots__ = ("clock", "poll", "run")

    def __init__(self, run: Deadline) -> None:
        self.run = run
        # wasmtime's own functions, called through the trampoline instance of this run's store.
        self.poll: ffi.wasmtime_func_t | None = None
        self.clock: ffi.wasmtime_func_t | None = None


class _NoDeadline:
    deadline = math.inf
    reason: str | None = None


_local = threading.local()


class bind_deadline:  # lower case: used like a function, ``with bind_deadline(run):``
    """While the block runs, ``poll_oneoff`` calls on this thread are bounded by ``run.deadline``.

    The guest runs synchronously on the thread that calls into it, and host
    functions are called back on that thread, so a thread-local is exact. A
    class rather than ``contextlib.contextmanager``: it is on every request's path.
    """

    __slots__ = ("_bound", "_previous")

    def __init__(self, run: Deadline) -> None:
        self._bound = _Bound(run)
        self._previous: _Bound | None = None

    def __enter__(self) -> None:
        self._previous = getattr(_local, "bound", None)
        _local.bound = self._bound

    def __exit__(self, *exc: object) -> None:
        _local.bound = self._previous


# wasmtime's WASI functions read the guest's memory through their caller's
# ``memory`` export, so a host function cannot call them directly (the call
# fails with "missing required memory export"). They are called through this
# trampoline, instantiated once per request that sleeps, in the guest's store,
# with the guest's memory imported and exported again.
_TRAMPOLINE = """
(module
  (import "guest" "memory" (memory 0))
  (import "wasi" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (export "memory" (memory 0))
  (func (export "poll") (param i32 i32 i32 i32) (result i32)
    (call $poll (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "clock") (param i32 i64 i32) (result i32)
    (call $clock (local.get 0) (local.get 1) (local.get 2))))
"""


class _Originals:
    def __init__(self, engine: wasmtime.Engine) -> None:
        self.linker = wasmtime.Linker(engine)  # unshadowed: wasmtime's own WASI
        self.linker.define_wasi()
        self.trampoline = wasmtime.Module(engine, _TRAMPOLINE)


# By the id passed to the callback as its ``env``.
_originals: dict[int, _Originals] = {}
_ids = itertools.count(1)


def define_deadline_poll(linker: wasmtime.Linker, engine: wasmtime.Engine) -> None:
    """Shadow ``wasi_snapshot_preview1::poll_oneoff`` on ``linker`` (which has ``define_wasi()``).

    An instance that calls it sleeping needs room for one more core instance
    in its store (the trampoline).
    """
    key = next(_ids)
    _originals[key] = _Originals(engine)
    i32 = wasmtime.ValType.i32()
    functype = wasmtime.FuncType([i32, i32, i32, i32], [i32])
    name = b"poll_oneoff"
    linker.allow_shadowing = True
    try:
        error = ffi.wasmtime_linker_define_func(
            linker.ptr(), _MODULE, len(_MODULE), name, len(name), functype.ptr(), _poll_oneoff, key, _forget,
        )
    finally:
        linker.allow_shadowing = False
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)


@ffi.wasmtime_func_callback_t
def _poll_oneoff(env, caller, args, nargs, results, nresults):  # type: ignore[no-untyped-def]
    try:
        return _poll(env or 0, caller, args, results)
    except Exception:  # never unwind through wasmtime's frames
        log.exception("poll_oneoff: host error")
        return _trap("wasmlet: poll_oneoff failed in the host")


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _forget(env):  # type: ignore[no-untyped-def]
    _originals.pop(env or 0, None)


def _poll(env: int, caller, args, results) -> int:  # type: ignore[no-untyped-def]
    context = ffi.wasmtime_caller_context(caller)
    bound: _Bound | None = getattr(_local, "bound", None)
    if bound is None:  # not serving a request (a direct use of the linker): wasmtime's semantics
        bound = _Bound(_NoDeadline())
    if bound.poll is None:
        error = _trampoline(env, caller, context, bound)
        if error:
            return _trap(f"wasmlet: poll_oneoff: {error}")
    assert bound.poll is not None
    run = bound.run
    left = run.deadline - time.monotonic()
    if left <= 0:
        return _timed_out(run)
    if math.isinf(left):
        return _call(context, bound.poll, args, results)
    in_ptr, out_ptr, count = (args[i].of.i32 & 0xFFFFFFFF for i in range(3))
    memory = _memory(caller, context)
    size = _SUBSCRIPTION * count
    if count > _MAX_SUBSCRIPTIONS:  # each is read here, in Python, where no epoch deadline reaches
        results[0].kind, results[0].of.i32 = ffi.WASMTIME_I32, _EINVAL
        return 0
    if memory is None or count == 0 or in_ptr + size > memory[1]:
        return _call(context, bound.poll, args, results)  # wasmtime refuses it (EINVAL, EFAULT) before waiting
    saved = ctypes.string_at(memory[0] + in_ptr, size)
    left_ns = int(left * 1e9)
    changed = bytearray(saved)
    clamped = False
    for offset in range(0, size, _SUBSCRIPTION):
        if saved[offset + 8] != _CLOCK_TAG:
            continue
        clock, timeout = struct.unpack_from("<IxxxxQ", saved, offset + 16)
        flags = struct.unpack_from("<H", saved, offset + 40)[0]
        if clock not in (_REALTIME, _MONOTONIC):
            continue  # wasmtime refuses other clocks with EINVAL before waiting
        if flags & _ABSTIME:
            now = time.time_ns() if clock == _REALTIME else _guest_monotonic(context, bound, out_ptr, memory)
            # A clock that cannot be read is taken to fire late: the deadline holds either way.
            timeout = left_ns + 1 if now is None else timeout - now
        if timeout > left_ns:  # would fire after the deadline: fire at the deadline instead
            struct.pack_into("<IxxxxQ", changed, offset + 16, _MONOTONIC, left_ns)
            struct.pack_into("<H", changed, offset + 40, 0)
            clamped = True
    if not clamped:
        return _call(context, bound.poll, args, results)
    ctypes.memmove(memory[0] + in_ptr, bytes(changed), size)
    try:
        trap = _call(context, bound.poll, args, results)
    finally:
        restore = _memory(caller, context)  # poll_oneoff does not grow memory; read it again all the same
        if restore is not None and in_ptr + size <= restore[1]:
            ctypes.memmove(restore[0] + in_ptr, saved, size)
    if trap or time.monotonic() < run.deadline:
        return trap  # the guest's own event came first
    return _timed_out(run)


def _timed_out(run: Deadline) -> int:
    run.reason = "timeout"
    return _trap("wasmlet: the guest slept past its deadline")


def _memory(caller, context) -> tuple[int, int] | None:  # type: ignore[no-untyped-def]
    """The address and size of the caller's exported ``memory``."""
    item = ffi.wasmtime_extern_t()
    if not ffi.wasmtime_caller_export_get(caller, b"memory", 6, ctypes.byref(item)):
        return None
    if cast(int, item.kind) != ffi.WASMTIME_EXTERN_MEMORY.value:
        return None
    base = ffi.wasmtime_memory_data(context, ctypes.byref(item.of.memory))
    address = ctypes.cast(base, ctypes.c_void_p).value
    if not address:
        return None
    return address, int(ffi.wasmtime_memory_data_size(context, ctypes.byref(item.of.memory)))


def _guest_monotonic(context, bound: _Bound, out_ptr: int,  # type: ignore[no-untyped-def]
                     memory: tuple[int, int]) -> int | None:
    """The guest's monotonic clock now (its origin is wasmtime's), read with wasmtime's ``clock_time_get``.

    It writes its answer into guest memory; the events buffer is the guest's
    to be overwritten by this very call, so the 8 bytes go there.
    """
    if out_ptr + 8 > memory[1] or bound.clock is None:
        return None
    args = (ffi.wasmtime_val_t * 3)()
    args[0].kind, args[0].of.i32 = ffi.WASMTIME_I32, _MONOTONIC
    args[1].kind, args[1].of.i64 = ffi.WASMTIME_I64, 1
    args[2].kind, args[2].of.i32 = ffi.WASMTIME_I32, out_ptr
    result = ffi.wasmtime_val_t()
    trap = ctypes.POINTER(ffi.wasm_trap_t)()
    error = ffi.wasmtime_func_call(context, ctypes.byref(bound.clock), args, 3, ctypes.byref(result), 1,
                                   ctypes.byref(trap))
    if error:
        ffi.wasmtime_error_delete(error)
        return None
    if trap:
        ffi.wasm_trap_delete(trap)
        return None
    if result.of.i32 != 0:
        return None
    now: int = struct.unpack("<Q", ctypes.string_at(memory[0] + out_ptr, 8))[0]
    return now


def _trampoline(env: int, caller, context, bound: _Bound) -> str:  # type: ignore[no-untyped-def]
    """Instantiate the trampoline in the calling store; set ``bound.poll`` and ``bound.clock``, or say why not."""
    originals = _originals[env]
    imports = (ffi.wasmtime_extern_t * 3)()
    if not ffi.wasmtime_caller_export_get(caller, b"memory", 6, ctypes.byref(imports[0])) or \
            cast(int, imports[0].kind) != ffi.WASMTIME_EXTERN_MEMORY.value:
        return "the module exports no memory"
    for slot, name in ((1, b"poll_oneoff"), (2, b"clock_time_get")):
        if not ffi.wasmtime_linker_get(originals.linker.ptr(), context, _MODULE, len(_MODULE), name, len(name),
                                       ctypes.byref(imports[slot])):
            return f"wasi_snapshot_preview1::{name.decode()} is not defined"
    instance = ffi.wasmtime_instance_t()
    trap = ctypes.POINTER(ffi.wasm_trap_t)()
    error = ffi.wasmtime_instance_new(context, originals.trampoline.ptr(), imports, 3, ctypes.byref(instance),
                                      ctypes.byref(trap))
    if error:
        return str(wasmtime.WasmtimeError._from_ptr(error)).splitlines()[0]
    if trap:
        return str(wasmtime.Trap._from_ptr(trap)).splitlines()[0]
    found = []
    for name in (b"poll", b"clock"):
        item = ffi.wasmtime_extern_t()
        if not ffi.wasmtime_instance_export_get(context, ctypes.byref(instance), name, len(name),
                                                ctypes.byref(item)):
            return "the trampoline has no export " + name.decode()
        found.append(ffi.wasmtime_func_t.from_buffer_copy(item.of.func))
    bound.poll, bound.clock = found
    return ""


def _call(context, func: ffi.wasmtime_func_t, args, results) -> int:  # type: ignore[no-untyped-def]
    """Call ``func`` with the guest's arguments into ``results``; a trap pointer (owned by the caller) or 0."""
    trap = ctypes.POINTER(ffi.wasm_trap_t)()
    error = ffi.wasmtime_func_call(context, ctypes.byref(func), args, 4, results, 1, ctypes.byref(trap))
    if error:
        message = str(wasmtime.WasmtimeError._from_ptr(error))
        return _trap(message)
    return ctypes.cast(trap, ctypes.c_void_p).value or 0


def _trap(message: str) -> int:
    data = message.encode()
    return ctypes.cast(ffi.wasmtime_trap_new(data, len(data)), ctypes.c_void_p).value or 0
