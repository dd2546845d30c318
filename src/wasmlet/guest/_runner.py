"""Running a WAGI guest: one fresh instance per request, from an ``InstancePre``.

``WagiHandler.handle`` blocks while the guest runs. wasmtime-py calls into
the engine through ``ctypes.CDLL``, which releases the GIL for the duration of
the call, so several handlers run truly in parallel on worker threads.

The deadline holds in host calls too: ``poll_oneoff`` is bounded by it
(``_sleep``, bound to the run with ``bind_deadline``), and an outbound request
cut short by it (``_wasi_http``) makes the answer a timeout.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import itertools
import logging
import os
import time
from collections.abc import Sequence

import wasmtime
from wasmtime import _ffi as ffi

from .._errors import (
    GuestError,
    GuestExit,
    GuestMemoryLimit,
    GuestOutputLimit,
    GuestTimeout,
    GuestTrap,
    ModuleError,
)
from ..plan import AllowedHost
from . import _capi as capi
from ._imports import Preopen
from ._sleep import bind_deadline
from ._stdio import ScratchFiles, scratch_files
from ._wagi import CgiRequest, CgiResponse, build_argv, build_environment, parse_cgi_response
from ._wasi_http import OutboundContext, call_depth, outbound_context

log = logging.getLogger("wasmlet.guest")

__all__ = ["GuestLimits", "GuestResult", "GuestRun", "GuestStats", "WagiHandler", "check_module"]

_MAX_STDERR = 1 << 20
_PAGE = 65536


@dataclasses.dataclass(frozen=True)
class GuestLimits:
    memory: int  # bytes of linear memory
    timeout: float  # seconds of wall-clock time
    max_response: int  # bytes of stdout (headers and body)


@dataclasses.dataclass
class GuestStats:
    """What one run cost, for metrics and traces."""

    started_ns: int  # wall clock (time.time_ns) when set-up began
    instantiated_ns: int  # ... when the instance was ready (cold start done)
    finished_ns: int  # ... when the guest returned
    cpu_seconds: float  # CPU time of the guest's thread while it ran
    memory: int  # bytes of linear memory at the end; 0 when not sampled (see WagiHandler.handle)

    @property
    def instantiate_seconds(self) -> float:
        return (self.instantiated_ns - self.started_ns) / 1e9

    @property
    def execute_seconds(self) -> float:
        return (self.finished_ns - self.instantiated_ns) / 1e9


@dataclasses.dataclass
class GuestResult:
    response: CgiResponse
    stderr: bytes
    stats: GuestStats


class _Watch:
    """What the epoch-deadline callback checks while a guest runs long.

    A guest that finishes within ``_CHECK_TICKS`` epoch ticks never calls back
    into Python. One that runs longer is checked once per interval: past its
    deadline, or with stdout or stderr above their caps, it is stopped by
    returning an error from the callback, which wasmtime raises as a trap.
    """

    __slots__ = ("deadline", "files", "max_stderr", "max_stdout", "reason")

    def __init__(self, deadline: float, files: ScratchFiles, max_stdout: int, max_stderr: int) -> None:
        self.deadline = deadline
        self.files = files
        self.max_stdout = max_stdout
        self.max_stderr = max_stderr
        self.reason: str | None = None

    def check(self) -> str | None:
        out, err = self.files.sizes()
        if out > self.max_stdout:
            self.reason = "stdout"
        elif err > self.max_stderr:
            self.reason = "stderr"
        elif time.monotonic() >= self.deadline:
            self.reason = "timeout"
        return self.reason


_watches: dict[int, _Watch] = {}
_watch_ids = itertools.count(1)
_CHECK_TICKS = 2

_DeadlineCallback = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.POINTER(ffi.wasmtime_context_t),
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint64),
    ctypes.POINTER(ffi.wasmtime_update_deadline_kind_t),
)
_Finalizer = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@_DeadlineCallback
def _on_deadline(context, data, delta, kind):  # type: ignore[no-untyped-def]
    watch = _watches.get(data or 0)
    if watch is None or watch.check() is not None:
        error = ffi.wasmtime_error_new(b"wasmlet: guest stopped by the host")
        return ctypes.cast(error, ctypes.c_void_p).value or 0
    delta[0] = _CHECK_TICKS
    kind[0] = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
    return 0


@_Finalizer
def _forget_watch(data):  # type: ignore[no-untyped-def]
    _watches.pop(data or 0, None)


def check_module(module: wasmtime.Module, entrypoint: str, memory_limit: int, name: str) -> None:
    """Refuse at deploy a module that could never answer a request here."""
    exports = {e.name: e.type for e in module.exports}
    if not isinstance(exports.get(entrypoint), wasmtime.FuncType):
        found = ", ".join(sorted(n for n, t in exports.items() if isinstance(t, wasmtime.FuncType))) or "none"
        raise ModuleError(f"{name}: the module exports no function {entrypoint!r} (exported functions: {found})")
    memories = [t for t in exports.values() if isinstance(t, wasmtime.MemoryType)]
    memories += [i.type for i in module.imports if isinstance(i.type, wasmtime.MemoryType)]
    for memory in memories:
        need = memory.limits.min * _PAGE
        if need > memory_limit:
            raise ModuleError(
                f"{name}: the module needs {need} bytes of memory to start, above its memoryLimit of {memory_limit}"
            )


class GuestRun:
    """One request's run of a guest, whatever its ABI: set-up, the watch, and the outcome.

    The handler builds the store with ``store()``, runs the guest, records a
    failure in ``failure``, drops the store, then calls ``finish``, which turns
    the output (or the failure) into a ``GuestResult`` or raises.
    """

    def __init__(self, name: str, limits: GuestLimits, request: CgiRequest, route: str,
                 environment: tuple[tuple[str, str], ...], argv_template: str, traceparent: str) -> None:
        self.name = name
        self.limits = limits
        self.started_ns = time.time_ns()
        self.deadline = time.monotonic() + limits.timeout
        env = build_environment(request, route, environment)
        if traceparent:
            env.append(("TRACEPARENT", traceparent))
        self.wasi = wasmtime.WasiConfig()
        capi.set_argv(self.wasi, build_argv(argv_template, dict(env), request.query))
        capi.set_env(self.wasi, env)
        if request.body:
            capi.set_stdin(self.wasi, request.body)
        self.files = scratch_files()
        try:
            self.wasi.stdout_file = self.files.stdout_path
            self.wasi.stderr_file = self.files.stderr_path
        except wasmtime.WasmtimeError:  # the scratch files were removed under us: make them again
            self.files = scratch_files(renew=True)
            self.wasi.stdout_file = self.files.stdout_path
            self.wasi.stderr_file = self.files.stderr_path
        self.watch = _Watch(self.deadline, self.files, limits.max_response, _MAX_STDERR)
        self.failure: GuestError | None = None
        self.instantiated_ns = 0
        self._cpu_started = 0.0

    def store(self, engine: wasmtime.Engine, instances: int, memories: int, tables: int) -> wasmtime.Store:
        """A store with the limits, the WASI context and the deadline watch; starts the CPU clock."""
        store = wasmtime.Store(engine)
        store.set_limits(memory_size=self.limits.memory, instances=instances, memories=memories, tables=tables)
        store.set_wasi(self.wasi)
        watch_id = next(_watch_ids)
        _watches[watch_id] = self.watch
        ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), _on_deadline, watch_id, _forget_watch)
        store.set_epoch_deadline(_CHECK_TICKS)
        self._cpu_started = time.thread_time()
        return store

    def instantiated(self) -> None:
        self.instantiated_ns = time.time_ns()

    def finish(self, memory: int = 0) -> GuestResult:
        """After the store is dropped: the response, or the failure raised (output caps and timeouts first)."""
        finished_ns = time.time_ns()
        stats = GuestStats(self.started_ns, self.instantiated_ns or finished_ns, finished_ns,
                           time.thread_time() - self._cpu_started, memory)
        files, watch, limits = self.files, self.watch, self.limits
        out_size, err_size = files.sizes()
        stderr = os.pread(files.stderr_fd, min(err_size, _MAX_STDERR), 0) if err_size else b""
        failure = self.failure
        if watch.reason in ("stdout", "stderr") or out_size > limits.max_response:
            failure = GuestOutputLimit(
                f"{self.name}: the guest wrote more than its cap to {watch.reason or 'stdout'} "
                f"(response cap {limits.max_response} bytes, stderr cap {_MAX_STDERR} bytes)"
            )
        elif watch.reason == "timeout":
            failure = GuestTimeout(f"{self.name}: the guest ran past its {limits.timeout:g}s deadline")
        if failure is None:
            try:
                response = parse_cgi_response(os.pread(files.stdout_fd, out_size, 0) if out_size else b"")
            except GuestError as exc:
                failure = exc
            else:
                return GuestResult(response=response, stderr=stderr, stats=stats)
        failure.stderr = stderr
        failure.stats = stats
        raise failure


class WagiHandler:
    """A module compiled and pre-linked, answering requests per WAGI."""

    def __init__(
        self,
        name: str,
        engine: wasmtime.Engine,
        linker: wasmtime.Linker,
        module: wasmtime.Module,
        limits: GuestLimits,
        route: str,
        environment: tuple[tuple[str, str], ...] = (),
        entrypoint: str = "_start",
        argv: str = "${SCRIPT_NAME} ${ARGS}",
        preopens: Sequence[Preopen] = (),
        outbound: tuple[AllowedHost, ...] = (),
    ) -> None:
        self.name = name
        self.preopens = tuple(preopens)
        self.outbound = outbound
        self.engine = engine
        self.limits = limits
        self.route = route
        self.environment = environment
        self.entrypoint = entrypoint
        self._entrypoint = entrypoint.encode()
        self._served = 0
        self.argv = argv
        try:
            self._pre = linker.instantiate_pre(module)
        except wasmtime.WasmtimeError as exc:
            raise ModuleError(
                f"{name}: the module imports what the host does not provide: {str(exc).splitlines()[0]}"
            ) from exc

    def handle(self, request: CgiRequest, traceparent: str = "") -> GuestResult:
        """Run the guest once for ``request``; raise a ``GuestError`` subclass if it fails.

        ``traceparent`` (W3C Trace Context) is handed to the guest as
        ``TRACEPARENT`` so its own spans and outbound calls join the trace.
        """
        run = GuestRun(self.name, self.limits, request, self.route, self.environment, self.argv, traceparent)
        for preopen in self.preopens:  # only what the manifest grants (capabilities.files)
            run.wasi.preopen_dir(preopen.host, preopen.guest, fs_mutable=preopen.writable)
        store = run.store(self.engine, instances=2, memories=1, tables=4)  # 2: the sleep trampoline (_sleep)
        instance = None
        outbound = OutboundContext(self.outbound, deadline=run.deadline, app=self.name, traceparent=traceparent,
                                   depth=call_depth(request.headers)) if self.outbound else None
        egress = outbound_context(outbound) if outbound is not None else contextlib.nullcontext()
        try:
            with bind_deadline(run.watch), egress:
                instance = self._pre.instantiate(store)
                run.instantiated()
                capi.call_export(store, instance, self._entrypoint)
        except wasmtime.ExitTrap as exc:
            if exc.code != 0:
                run.failure = GuestExit(f"{self.name}: the guest exited with status {exc.code}", exc.code)
        except wasmtime.Trap as exc:
            run.failure = self._classify_trap(exc)
        except wasmtime.WasmtimeError as exc:
            run.failure = GuestTrap(f"{self.name}: {_first_line(exc)}")
        if outbound is not None and outbound.timed_out and run.watch.reason is None:
            run.watch.reason = "timeout"  # an outbound request reached the deadline: the guest's answer is late
        # Memory is read on failure (to tell a memory-limit hit apart) and on one
        # request in eight otherwise, for the high-water metric: the export lookup
        # costs ~7 us, a tenth of a hello request.
        self._served += 1
        memory = capi.memory_size(store, instance) if run.failure is not None or self._served % 8 == 1 else 0
        del instance, store  # release the pool slot and WASI's handles on the scratch files now
        if run.failure is not None and self._at_memory_limit(memory):
            run.failure = GuestMemoryLimit(
                f"{self.name}: the guest failed at its memory limit ({memory} of {self.limits.memory} bytes): "
                f"{run.failure}"
            )
        return run.finish(memory)

    def _classify_trap(self, exc: wasmtime.Trap) -> GuestError:
        code = exc.trap_code
        label = code.name.lower().replace("_", " ") if code is not None else "trap"
        log.debug("%s: trap: %s", self.name, exc.message)
        return GuestTrap(f"{self.name}: the guest trapped: {label}")

    def _at_memory_limit(self, memory: int) -> bool:
        # wasmtime's C API does not report a refused memory.grow, so a failure
        # is put down to the limit when the guest ended close to it: within an
        # eighth of the limit or 1 MiB, whichever is larger (a malloc that asks
        # for more than that at once and fails is reported as the trap or exit
        # it caused). See docs/guest-errors.md.
        return memory > 0 and memory >= self.limits.memory - max(self.limits.memory // 8, 1 << 20)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
