"""Running a WASI 0.2 ``wasi:cli`` command component CGI-style.

The same contract as WAGI (``_runner.WagiHandler``): one fresh instance per
request, the request as environment variables, argv and stdin, the CGI
response on stdout. Only the guest's shape differs: a component exporting
``wasi:cli/run@0.2.x`` whose ``run: func() -> result`` is called instead of a
core module's ``_start``. wasmtime's ``WasiConfig`` feeds preview 2 guests
exactly as it feeds preview 1 ones (argv, env, stdin bytes, stdout and stderr
files), so the request plumbing is shared with WAGI.

What wasmtime-py 50 lacks, and what that costs here (docs/guest-abis.md):

* no component ``InstancePre``: the C API has ``wasmtime_linker_instantiate_pre``
  for core modules only, so each request resolves and type-checks the
  component's imports again in ``wasmtime_component_linker_instantiate``;
* no access to a component's core memories: the C API exports no
  ``wasmtime_component_instance_get_memory``, so a failure cannot be put down
  to the memory limit from the size the guest reached, as WAGI does; only an
  instantiation refused by the limit is reported as ``GuestMemoryLimit``;
* a component call reports a trap as a ``wasmtime_error_t``, not a
  ``wasm_trap_t``, so there is no trap code: the label is read from the text.

``wasi:http/incoming-handler`` components cannot be served at all: see
``docs/guest-abis.md``.
"""

from __future__ import annotations

import ctypes
import os
import re
import time

import wasmtime
import wasmtime.component as wc
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
from . import _capi as capi
from ._runner import (
    _CHECK_TICKS,
    _MAX_STDERR,
    GuestLimits,
    GuestResult,
    GuestStats,
    _forget_watch,
    _on_deadline,
    _Watch,
    _watch_ids,
    _watches,
)
from ._stdio import ScratchFiles, scratch_files
from ._wagi import CgiRequest, build_argv, build_environment, parse_cgi_response

__all__ = ["ComponentHandler", "build_component_linker", "find_run_export"]

_RUN_INTERFACE = re.compile(r"^wasi:cli/run@0\.2\.\d+$")
# A component is several core instances (the guest, wit-component's shim and
# fixup modules, the preview 1 adapter when there is one), each with its own
# tables and perhaps memories. These bound the count, not the size: the size
# of every linear memory is capped by ``GuestLimits.memory``.
_MAX_CORE_INSTANCES = 16
_MAX_MEMORIES = 4
_MAX_TABLES = 16
_TRAP_TEXT = re.compile(r"wasm trap: (.+)")


def build_component_linker(engine: wasmtime.Engine) -> wc.Linker:
    """A component linker with wasmtime's WASI 0.2 (``wasi:cli``, ``wasi:io``, ...)."""
    linker = wc.Linker(engine)
    linker.add_wasip2()
    return linker


def find_run_export(component: wc.Component, engine: wasmtime.Engine, name: str) -> wc.ExportIndex:
    """The index of ``wasi:cli/run@0.2.x#run``, or ``ModuleError`` naming what the component exports."""
    exports = component.type.exports(engine)
    interfaces = sorted(n for n in exports if _RUN_INTERFACE.match(n))
    interface = component.get_export_index(interfaces[-1]) if interfaces else None
    run = component.get_export_index("run", interface) if interface is not None else None
    if run is None:
        found = ", ".join(sorted(exports)) or "none"
        raise ModuleError(f"{name}: the component exports no wasi:cli/run@0.2 interface (exports: {found})")
    return run


def _call_run(store: wasmtime.Store, instance: wc.Instance, index: wc.ExportIndex) -> bool:
    """Call ``run: func() -> result``; True for ``ok``. Raises ``wasmtime.WasmtimeError`` on a trap."""
    func = ffi.wasmtime_component_func_t()
    context = store._context()
    if not ffi.wasmtime_component_instance_get_func(
        ctypes.byref(instance._instance), context, index.ptr(), ctypes.byref(func)
    ):
        raise wasmtime.WasmtimeError("the component's wasi:cli/run export is not a function")
    result = ffi.wasmtime_component_val_t()
    error = ffi.wasmtime_component_func_call(ctypes.byref(func), context, None, 0, ctypes.byref(result), 1)
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)
    try:
        return bool(result.kind == ffi.WASMTIME_COMPONENT_RESULT.value and result.of.result.is_ok)
    finally:
        ffi.wasmtime_component_val_delete(ctypes.byref(result))


class ComponentHandler:
    """A ``wasi:cli`` command component, compiled and checked, answering requests CGI-style."""

    def __init__(
        self,
        name: str,
        engine: wasmtime.Engine,
        component: wc.Component,
        limits: GuestLimits,
        route: str,
        environment: tuple[tuple[str, str], ...] = (),
        argv: str = "${SCRIPT_NAME} ${ARGS}",
        linker: wc.Linker | None = None,
    ) -> None:
        self.name = name
        self.engine = engine
        self.limits = limits
        self.route = route
        self.environment = environment
        self.argv = argv
        self._component = component
        self._linker = linker if linker is not None else build_component_linker(engine)
        self._run = find_run_export(component, engine, name)
        self._check_links()

    def _check_links(self) -> None:
        """Refuse at deploy a component whose imports the linker cannot satisfy.

        Without a component ``InstancePre`` the only check wasmtime-py offers
        is an instantiation; it runs no guest code unless the component has a
        start function, and it is bounded like a request.
        """
        files = scratch_files()
        store, watch_id = self._new_store(wasmtime.WasiConfig(), files, time.monotonic())
        try:
            self._linker.instantiate(store, self._component)
        except wasmtime.WasmtimeError as exc:
            if "exceeds memory limits" in str(exc):
                raise ModuleError(
                    f"{self.name}: the component needs more memory to start than its memoryLimit of "
                    f"{self.limits.memory} bytes: {_first_line(exc)}"
                ) from exc
            raise ModuleError(f"{self.name}: cannot link the component: {_first_line(exc)}") from exc
        finally:
            del store
            _watches.pop(watch_id, None)

    def _new_store(self, wasi: wasmtime.WasiConfig, files: ScratchFiles, started: float) -> tuple[wasmtime.Store, int]:
        store = wasmtime.Store(self.engine)
        store.set_limits(
            memory_size=self.limits.memory,
            instances=_MAX_CORE_INSTANCES,
            memories=_MAX_MEMORIES,
            tables=_MAX_TABLES,
        )
        store.set_wasi(wasi)
        watch = _Watch(started + self.limits.timeout, files, self.limits.max_response, _MAX_STDERR)
        watch_id = next(_watch_ids)
        _watches[watch_id] = watch
        ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), _on_deadline, watch_id, _forget_watch)
        store.set_epoch_deadline(_CHECK_TICKS)
        return store, watch_id

    def handle(self, request: CgiRequest, traceparent: str = "") -> GuestResult:
        """Run the component once for ``request``; raise a ``GuestError`` subclass if it fails.

        ``traceparent`` is handed to the guest as ``TRACEPARENT``, as WAGI does.
        """
        started_ns = time.time_ns()
        started = time.monotonic()
        env = build_environment(request, self.route, self.environment)
        if traceparent:
            env.append(("TRACEPARENT", traceparent))
        argv = build_argv(self.argv, dict(env), request.query)
        files = scratch_files()

        wasi = wasmtime.WasiConfig()
        capi.set_argv(wasi, argv)
        capi.set_env(wasi, env)
        if request.body:
            capi.set_stdin(wasi, request.body)
        wasi.stdout_file = files.stdout_path
        wasi.stderr_file = files.stderr_path
        store, watch_id = self._new_store(wasi, files, started)
        watch = _watches[watch_id]

        failure: GuestError | None = None
        instance = None
        instantiated_ns = 0
        cpu_started = time.thread_time()
        try:
            instance = self._linker.instantiate(store, self._component)
            instantiated_ns = time.time_ns()
            if not _call_run(store, instance, self._run):
                failure = GuestExit(f"{self.name}: wasi:cli/run returned an error (exit status 1)", 1)
        except wasmtime.ExitTrap as exc:
            if exc.code != 0:
                failure = GuestExit(f"{self.name}: the guest exited with status {exc.code}", exc.code)
        except wasmtime.WasmtimeError as exc:
            failure = self._classify(exc, instantiated=instance is not None)
        cpu_seconds = time.thread_time() - cpu_started
        finished_ns = time.time_ns()
        # memory=0: the C API gives no access to a component's core memories.
        stats = GuestStats(started_ns, instantiated_ns or finished_ns, finished_ns, cpu_seconds, 0)
        del instance, store  # release the pool slots and WASI's handles on the scratch files now
        out_size, err_size = files.sizes()
        stderr = os.pread(files.stderr_fd, min(err_size, _MAX_STDERR), 0) if err_size else b""
        if watch.reason in ("stdout", "stderr") or out_size > self.limits.max_response:
            failure = GuestOutputLimit(
                f"{self.name}: the guest wrote more than its cap to {watch.reason or 'stdout'} "
                f"(response cap {self.limits.max_response} bytes, stderr cap {_MAX_STDERR} bytes)"
            )
        elif watch.reason == "timeout":
            failure = GuestTimeout(f"{self.name}: the guest ran past its {self.limits.timeout:g}s deadline")
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

    def _classify(self, exc: wasmtime.WasmtimeError, instantiated: bool) -> GuestError:
        text = str(exc)
        if not instantiated and "exceeds memory limits" in text:
            return GuestMemoryLimit(
                f"{self.name}: the component needs more than its memory limit of {self.limits.memory} bytes "
                f"to start: {_first_line(exc)}"
            )
        trap = _TRAP_TEXT.search(text)
        if trap is not None:
            return GuestTrap(f"{self.name}: the guest trapped: {trap.group(1).strip()}")
        return GuestTrap(f"{self.name}: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
