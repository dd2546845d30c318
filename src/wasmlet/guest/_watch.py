"""The deadline watch every guest ABI runs under: what wasmtime's epoch callback checks.

A store gets ``on_deadline`` as its epoch-deadline callback with the id of a
``Watch`` registered in ``watches`` (``forget_watch`` drops it with the store).
WAGI (``_runner``), ``wasi:cli`` and ``wasi:http`` components (``_proxy``) share it.
"""

from __future__ import annotations

import ctypes
import itertools
import math
import time
from typing import Protocol

from wasmtime import _ffi as ffi

__all__ = ["CHECK_TICKS", "ON_DEADLINE", "GiveWay", "Sized", "Watch", "forget_watch", "on_deadline",
           "watch_ids", "watches"]


class Sized(Protocol):
    """What a run's output is held in: scratch files (WAGI) or a session (components)."""

    def sizes(self) -> tuple[int, int]: ...


class Watch:
    """What the epoch-deadline callback checks while a guest runs long.

    A guest that finishes within ``CHECK_TICKS`` epoch ticks never calls back
    into Python. One that runs longer is checked once per interval: past its
    deadline, or with stdout or stderr above their caps, it is stopped by
    returning an error from the callback, which wasmtime raises as a trap.

    A run on an event loop's thread (``WagiHandler.handle_inline``, ``ProxyHandler.handle_inline``) has a
    ``yield_at``: past it the guest is stopped the same way with the reason
    ``"yield"``, to be run again on a worker thread.
    """

    __slots__ = ("deadline", "files", "instantiated_ns", "max_stderr", "max_stdout", "reason", "yield_at")

    def __init__(self, deadline: float, files: Sized, max_stdout: int, max_stderr: int) -> None:
        self.deadline = deadline
        self.files = files
        self.max_stdout = max_stdout
        self.max_stderr = max_stderr
        self.reason: str | None = None
        # An inline run gives way once its thread has used this much CPU (time.thread_time()); 0: never.
        # CPU, not wall-clock, time: on a busy machine the thread may wait for a core mid-run.
        self.yield_at = 0.0
        self.instantiated_ns = 0

    def check(self) -> str | None:
        out, err = self.files.sizes()
        now = time.monotonic()
        if out > self.max_stdout:
            self.reason = "stdout"
        elif err > self.max_stderr:
            self.reason = "stderr"
        elif now >= self.deadline:
            self.reason = "timeout"
        elif self.yield_at and time.thread_time() >= self.yield_at:
            self.reason = "yield"
        return self.reason


class GiveWay:
    """What ``poll_oneoff`` sees during an inline run (``_sleep.Deadline``): a deadline already past.

    So a guest that would wait for anything (a sleep, a clock, a descriptor)
    is stopped at once, marked ``"yield"``, and run again on a worker thread,
    never blocking the event loop.
    """

    __slots__ = ("watch",)
    deadline = -math.inf

    def __init__(self, watch: Watch) -> None:
        self.watch = watch

    @property
    def reason(self) -> str | None:
        return self.watch.reason

    @reason.setter
    def reason(self, value: str | None) -> None:
        self.watch.reason = "yield"


watches: dict[int, Watch] = {}
watch_ids = itertools.count(1)
CHECK_TICKS = 2

_DeadlineCallback = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.POINTER(ffi.wasmtime_context_t),
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint64),
    ctypes.POINTER(ffi.wasmtime_update_deadline_kind_t),
)
_Finalizer = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@_DeadlineCallback
def on_deadline(context, data, delta, kind):  # type: ignore[no-untyped-def]
    watch = watches.get(data or 0)
    if watch is None or watch.check() is not None:
        error = ffi.wasmtime_error_new(b"wasmlet: guest stopped by the host")
        return ctypes.cast(error, ctypes.c_void_p).value or 0
    delta[0] = 1 if watch.yield_at else CHECK_TICKS
    kind[0] = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
    return 0


@_Finalizer
def forget_watch(data):  # type: ignore[no-untyped-def]
    watches.pop(data or 0, None)


ON_DEADLINE = ctypes.cast(on_deadline, ctypes.c_void_p).value
