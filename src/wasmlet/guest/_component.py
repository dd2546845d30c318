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

The sandbox is WAGI's: the imports are checked against the capabilities at
deploy (``_imports.check_component_imports``), ``files`` grants are the only
directories the instance gets, and a component may not sleep (its waits are
out of the deadline's reach; see ``_imports``). The trial instantiation at
deploy runs the component's start functions, so it runs under an epoch
deadline with its own ticker: a start function that loops fails the deploy
instead of hanging it.
"""

from __future__ import annotations

import ctypes
import dataclasses
import re
from collections.abc import Sequence

import wasmtime
import wasmtime.component as wc
from wasmtime import _ffi as ffi

from .._errors import (
    GuestError,
    GuestExit,
    GuestMemoryLimit,
    GuestTrap,
    ModuleError,
)
from ..engine import EpochTicker
from ._imports import Preopen
from ._runner import GuestLimits, GuestResult, GuestRun, first_line, pool_full, pool_full_at_trial
from ._wagi import CgiRequest

__all__ = ["ComponentHandler", "build_component_linker", "find_run_export"]

# The request of the deploy-time trial instantiation (no guest code runs).
_PROBE = CgiRequest(method="GET", path="/", raw_path="/", query="", headers=(), body=b"")

_RUN_INTERFACE = re.compile(r"^wasi:cli/run@0\.2\.\d+$")
# A component is several core instances (the guest, wit-component's shim and
# fixup modules, the preview 1 adapter when there is one), each with its own
# tables and perhaps memories. These bound the count, not the size: the size
# of every linear memory is capped by ``GuestLimits.memory``.
_MAX_CORE_INSTANCES = 16
_MAX_MEMORIES = 4
_MAX_TABLES = 16
_TRAP_TEXT = re.compile(r"wasm trap: (.+)")
# The trial instantiation at deploy: at most this long (or the component's own
# timeout, if shorter), with the epoch advanced this often by its own ticker.
_TRIAL_TIMEOUT = 10.0
_TRIAL_TICK = 0.01


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

    abi = "wasi:cli component"

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
        preopens: Sequence[Preopen] = (),
    ) -> None:
        self.name = name
        self.engine = engine
        self.limits = limits
        self.route = route
        self.environment = environment
        self.argv = argv
        self.preopens = tuple(preopens)
        self._component = component
        self._linker = linker if linker is not None else build_component_linker(engine)
        self._run = find_run_export(component, engine, name)
        self._check_links()

    def _check_links(self) -> None:
        """Refuse at deploy a component whose imports the linker cannot satisfy.

        Without a component ``InstancePre`` the only check wasmtime-py offers
        is an instantiation; it runs no guest code unless the component has a
        start function, and then under a deadline (the component's timeout, at
        most ``_TRIAL_TIMEOUT``) with a ticker of its own: the caller's engine
        may have none running yet (deploy, a worker loading its plan).
        """
        limits = dataclasses.replace(self.limits, timeout=min(self.limits.timeout, _TRIAL_TIMEOUT))
        run = GuestRun(self.name, limits, _PROBE, self.route, (), self.argv, "")
        store = run.store(self.engine, instances=_MAX_CORE_INSTANCES, memories=_MAX_MEMORIES, tables=_MAX_TABLES)
        try:
            with EpochTicker(self.engine, _TRIAL_TICK):
                self._linker.instantiate(store, self._component)
        except wasmtime.WasmtimeError as exc:
            if pool_full_at_trial(self.name, exc):
                return
            if run.watch.reason is not None:
                raise ModuleError(
                    f"{self.name}: the component did not start within {limits.timeout:g}s "
                    "(a start function that does not return); refused"
                ) from exc
            if "exceeds memory limits" in str(exc):
                raise ModuleError(
                    f"{self.name}: the component needs more memory to start than its memoryLimit of "
                    f"{self.limits.memory} bytes: {first_line(exc)}"
                ) from exc
            raise ModuleError(f"{self.name}: cannot link the component: {first_line(exc)}") from exc
        finally:
            del store

    def handle(self, request: CgiRequest, traceparent: str = "") -> GuestResult:
        """Run the component once for ``request``; raise a ``GuestError`` subclass if it fails.

        ``traceparent`` is handed to the guest as ``TRACEPARENT``, as WAGI does.
        """
        run = GuestRun(self.name, self.limits, request, self.route, self.environment, self.argv, traceparent)
        for preopen in self.preopens:  # only what the manifest grants (capabilities.files)
            run.wasi.preopen_dir(preopen.host, preopen.guest, fs_mutable=preopen.writable)
        store = run.store(self.engine, instances=_MAX_CORE_INSTANCES, memories=_MAX_MEMORIES, tables=_MAX_TABLES)
        instance = None
        try:
            instance = self._linker.instantiate(store, self._component)
            run.instantiated()
            if not _call_run(store, instance, self._run):
                run.failure = GuestExit(f"{self.name}: wasi:cli/run returned an error (exit status 1)", 1)
        except wasmtime.ExitTrap as exc:
            if exc.code != 0:
                run.failure = GuestExit(f"{self.name}: the guest exited with status {exc.code}", exc.code)
        except wasmtime.WasmtimeError as exc:
            run.failure = self._classify(exc, instantiated=instance is not None)
        del instance, store  # release the pool slots and WASI's handles on the scratch files now
        # memory=0: the C API gives no access to a component's core memories.
        return run.finish(0)

    def _classify(self, exc: wasmtime.WasmtimeError, instantiated: bool) -> GuestError:
        text = str(exc)
        full = None if instantiated else pool_full(self.name, exc)
        if full is not None:
            return full
        if not instantiated and "exceeds memory limits" in text:
            return GuestMemoryLimit(
                f"{self.name}: the component needs more than its memory limit of {self.limits.memory} bytes "
                f"to start: {first_line(exc)}"
            )
        trap = _TRAP_TEXT.search(text)
        if trap is not None:
            return GuestTrap(f"{self.name}: the guest trapped: {trap.group(1).strip()}")
        return GuestTrap(f"{self.name}: {first_line(exc)}")
