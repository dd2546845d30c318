"""Running a WAGI guest: one fresh instance per request, from an ``InstancePre``.

``WagiHandler.handle`` blocks while the guest runs. wasmtime-py calls into
the engine through ``ctypes.CDLL``, which releases the GIL for the duration of
the call, so several handlers run truly in parallel on worker threads.

The deadline holds in host calls too: ``poll_oneoff`` is bounded by it
(``_sleep``, bound to the run with ``bind_deadline``), and an outbound request
cut short by it (``_wasi_http``) makes the answer a timeout.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import re
import time
from collections.abc import Sequence

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime._func import maybe_raise_last_exn

from .._errors import (
    GuestCapacity,
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
from . import _native as native
from ._imports import Preopen
from ._sleep import bind_deadline
from ._stdio import ScratchFiles, scratch_files
from ._wagi import (
    ArgvTemplate,
    CgiRequest,
    CgiResponse,
    build_argv,
    build_environment,
    environment,
    parse_cgi_response,
)
from ._wasi_http import OutboundContext, call_depth, outbound_context
from ._watch import (
    CHECK_TICKS,
    ON_DEADLINE,
    GiveWay,
    Watch,
    forget_watch,
    on_deadline,
    watch_ids,
    watches,
)

log = logging.getLogger("wasmlet.guest")

__all__ = ["INLINE_BUDGET", "GuestLimits", "GuestResult", "GuestRun", "GuestStats", "WagiHandler", "check_module",
           "pool_full", "pool_full_at_trial"]

_MAX_STDERR = 1 << 20
# Seconds a guest may run on an event loop's thread before it gives way to a worker thread
# (``WagiHandler.handle_inline``); it is stopped at the first epoch tick after that.
INLINE_BUDGET = 0.001
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


class _Names(dict[str, bytes]):
    """Strings encoded once: most environment names and values are the same on every request.

    At most 4097 strings of 128 characters are kept, whatever clients send.
    """

    def __missing__(self, name: str) -> bytes:
        encoded = name.encode("utf-8", "surrogateescape")
        if len(name) <= 128:  # names and values are the client's choice: keep few, and short ones only
            if len(self) > 4096:
                self.clear()
            self[name] = encoded
        return encoded



_env_name = _Names().__getitem__
_env_value = _Names().__getitem__  # values too: most (the route, the server, usual headers) repeat
_NAME_SETS = 64  # sets of environment names whose C array a handler keeps


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _outcome(name: str, limits: GuestLimits, files: ScratchFiles, watch: Watch, failure: GuestError | None,
             stats: GuestStats) -> GuestResult:
    """After the store is dropped: the response, or the failure raised (output caps and timeouts first)."""
    out_size, err_size = files.sizes()
    stderr = os.pread(files.stderr_fd, min(err_size, _MAX_STDERR), 0) if err_size else b""
    if watch.reason in ("stdout", "stderr") or out_size > limits.max_response:
        failure = GuestOutputLimit(
            f"{name}: the guest wrote more than its cap to {watch.reason or 'stdout'} "
            f"(response cap {limits.max_response} bytes, stderr cap {_MAX_STDERR} bytes)"
        )
    elif watch.reason == "timeout":
        failure = GuestTimeout(f"{name}: the guest ran past its {limits.timeout:g}s deadline")
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
        self.watch = Watch(self.deadline, self.files, limits.max_response, _MAX_STDERR)
        self.failure: GuestError | None = None
        self.instantiated_ns = 0
        self._cpu_started = 0.0

    def store(self, engine: wasmtime.Engine, instances: int, memories: int, tables: int) -> wasmtime.Store:
        """A store with the limits, the WASI context and the deadline watch; starts the CPU clock."""
        store = wasmtime.Store(engine)
        store.set_limits(memory_size=self.limits.memory, instances=instances, memories=memories, tables=tables)
        store.set_wasi(self.wasi)
        watch_id = next(watch_ids)
        watches[watch_id] = self.watch
        ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), on_deadline, watch_id, forget_watch)
        store.set_epoch_deadline(CHECK_TICKS)
        self._cpu_started = time.thread_time()
        return store

    def instantiated(self) -> None:
        self.instantiated_ns = time.time_ns()

    def finish(self, memory: int = 0) -> GuestResult:
        """After the store is dropped: the response, or the failure raised (output caps and timeouts first)."""
        finished_ns = time.time_ns()
        stats = GuestStats(self.started_ns, self.instantiated_ns or finished_ns, finished_ns,
                           time.thread_time() - self._cpu_started, memory)
        return _outcome(self.name, self.limits, self.files, self.watch, self.failure, stats)


class WagiHandler:
    """A module compiled and pre-linked, answering requests per WAGI.

    What does not change between requests is built once here: the argv
    template, the encoded names of the environment, the C prototypes and the
    callbacks. ``handle`` then makes about fifteen C calls per request
    (``_capi``), without wasmtime-py's object layer.
    """

    abi = "WAGI module"

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
        self._argv = ArgvTemplate(argv)
        self._names: dict[tuple[str, ...], tuple[int, int, object, list[bytes]]] = {}
        self._preopens = tuple((os.fsencode(p.host), p.guest.encode(), p.writable) for p in self.preopens)
        # A guest that can reach nothing outside its instance (no outbound HTTP, no directories)
        # can be run again from the start without anyone seeing the first run: see handle_inline.
        self.inline_ok = not outbound and not self.preopens
        # Only poll_oneoff reads the deadline bound to the thread (_sleep): a module that
        # cannot call it runs without the binding (~1 us a request).
        self._sleeps = any(item.name == "poll_oneoff" for item in module.imports)
        try:
            self._pre = linker.instantiate_pre(module)
        except wasmtime.WasmtimeError as exc:
            raise ModuleError(
                f"{name}: the module imports what the host does not provide: {str(exc).splitlines()[0]}"
            ) from exc
        self._engine_ptr = ctypes.cast(engine.ptr(), ctypes.c_void_p).value
        self._pre_ptr = ctypes.cast(self._pre.ptr(), ctypes.c_void_p).value
        # The C helper makes the run's calls in one crossing; it has no preopens (a rare grant).
        self._fast = None if self._preopens else native.fast_path()

    def handle(self, request: CgiRequest, traceparent: str = "", deadline: float | None = None) -> GuestResult:
        """Run the guest once for ``request``; raise a ``GuestError`` subclass if it fails.

        ``traceparent`` (W3C Trace Context) is handed to the guest as
        ``TRACEPARENT`` so its own spans and outbound calls join the trace.
        ``deadline`` (``time.monotonic()``) replaces now + the timeout, for a
        request that already spent some of it (``handle_inline``).
        """
        result = self._run(request, traceparent, deadline, 0.0)
        assert result is not None
        return result

    def handle_inline(self, request: CgiRequest, traceparent: str = "",
                      budget: float = INLINE_BUDGET) -> tuple[GuestResult | None, float]:
        """Run the guest on the calling thread (an event loop's) only while it stays short.

        For handlers with ``inline_ok``. The guest gives way, and this returns
        ``(None, deadline)``, at the first epoch check after it used ``budget``
        seconds of CPU (checked at each epoch tick) or at its first ``poll_oneoff``
        (anything that could wait). The caller then runs the request again
        with ``handle(..., deadline=deadline)`` on a worker thread: the first
        run's output is dropped unseen, and such a guest has no other effect.
        """
        deadline = time.monotonic() + self.limits.timeout
        return self._run(request, traceparent, deadline, budget), deadline

    def _run(self, request: CgiRequest, traceparent: str, deadline: float | None,
             budget: float) -> GuestResult | None:
        limits = self.limits
        started_ns = time.time_ns()
        env = environment(request, self.route, self.environment)
        if traceparent:
            env["TRACEPARENT"] = traceparent  # after the manifest's: its TRACEPARENT, if any, gives way
        argv = self._argv.build(env, request.query)
        files = scratch_files()
        watch = Watch(time.monotonic() + limits.timeout if deadline is None else deadline, files,
                      limits.max_response, _MAX_STDERR)
        outbound = OutboundContext(self.outbound, deadline=watch.deadline, app=self.name,
                                   traceparent=traceparent,
                                   depth=call_depth(request.headers)) if self.outbound else None
        # Memory is read on failure (to tell a memory-limit hit apart) and on one
        # request in eight otherwise, for the high-water metric.
        self._served += 1
        calls = self._calls if self._fast is None else self._calls_native
        cpu_started = time.thread_time()
        if budget:
            watch.yield_at = cpu_started + budget
        if outbound is None and not self._sleeps:
            failure, memory, files = calls(env, argv, request.body, files, watch, budget)
        else:
            with bind_deadline(GiveWay(watch) if budget else watch):
                if outbound is not None:
                    with outbound_context(outbound):
                        failure, memory, files = calls(env, argv, request.body, files, watch, budget)
                else:
                    failure, memory, files = calls(env, argv, request.body, files, watch, budget)
        cpu = time.thread_time() - cpu_started
        if watch.reason == "yield":
            return None
        if outbound is not None and outbound.timed_out and watch.reason is None:
            watch.reason = "timeout"  # an outbound request reached the deadline: the guest's answer is late
        if failure is not None and self._at_memory_limit(memory):
            failure = GuestMemoryLimit(
                f"{self.name}: the guest failed at its memory limit ({memory} of {limits.memory} bytes): {failure}"
            )
        finished_ns = time.time_ns()
        stats = GuestStats(started_ns, watch.instantiated_ns or finished_ns, finished_ns, cpu, memory)
        return _outcome(self.name, limits, files, watch, failure, stats)

    def _calls(self, env: dict[str, str], argv: list[str], body: bytes, files: ScratchFiles, watch: Watch,
               budget: float) -> tuple[GuestError | None, int, ScratchFiles]:
        """The run's wasmtime calls one by one: the guest's failure, if any, its memory (0: not read) and
        the scratch files it wrote to (``files``, or new ones if those were removed under us)."""
        config = capi.wasi_config_new()
        try:
            files = self._configure(config, env, argv, body, files)
        except BaseException:
            capi.wasi_config_delete(config)
            raise
        watch.files = files  # new ones if the old were removed under us
        lane = files.lane
        store = capi.store_new(self._engine_ptr, None, None)
        context = capi.store_context(store)
        watch_id = next(watch_ids)
        watches[watch_id] = watch
        try:
            capi.store_limiter(store, self.limits.memory, -1, 2, 4, 1)  # 2 instances: the sleep trampoline
            error = capi.context_set_wasi(context, config)  # takes the config, also on error
            if error:
                raise capi.error_from(error)
            # No finalizer: the store is deleted below, and the watch forgotten after it (a
            # finalizer would re-enter Python from store_delete, ~1 us a request).
            capi.store_epoch_deadline_callback(store, ON_DEADLINE, watch_id, None)
            capi.context_set_epoch_deadline(context, 1 if budget else CHECK_TICKS)
            failure: GuestError | None = None
            try:
                self._instantiate_and_call(context, lane, watch)
            except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
                failure = self._failure(exc)
            memory = 0
            if watch.instantiated_ns and (failure is not None or self._served % 8 == 1):
                memory = lane.memory_size(context)
        finally:
            capi.store_delete(store)  # release the pool slot and WASI's handles on the scratch files now
            watches.pop(watch_id, None)
        return failure, memory, files

    def _calls_native(self, env: dict[str, str], argv: list[str], body: bytes, files: ScratchFiles, watch: Watch,
                      budget: float) -> tuple[GuestError | None, int, ScratchFiles]:
        """``_calls`` made by the C helper in one crossing (``_native``); the same calls, in the same order."""
        fast = self._fast
        assert fast is not None
        names = self._env_names(env)
        # The values and argv as joined blocks the helper splits (or, for a string holding a NUL, arrays).
        values_joined = native.joined(env.values())
        values_at, values_owner = (0, None) if values_joined is not None else self._env_values(env)
        argv_joined = native.joined(argv)
        argv_at, argv_owner = (0, None) if argv_joined is not None else self._argv_array(argv)
        for _ in range(2):  # a second time with new scratch files if the old were removed under us
            lane = files.lane
            if lane.fast is None:
                lane.fast = native.new_run(lane)
            run, run_at = lane.fast
            run.engine, run.pre = self._engine_ptr, self._pre_ptr
            run.envc, run.names, run.values, run.values_joined = names[0], names[1], values_at, values_joined
            run.argc, run.argv, run.argv_joined = len(argv), argv_at, argv_joined
            if body:
                capi.byte_vec_new(lane.stdin_at, len(body), body)  # copies the bytes; the config takes them
                run.stdin_vec = lane.stdin_at
            else:
                run.stdin_vec = None
            run.stdout_path, run.stderr_path = files.stdout_bytes, files.stderr_bytes
            run.memory = self.limits.memory
            run.epoch_deadline = 1 if budget else CHECK_TICKS
            run.entry, run.entry_len = self._entrypoint, len(self._entrypoint)
            run.want_memory = self._served % 8 == 1
            watch_id = next(watch_ids)
            watches[watch_id] = watch
            run.deadline_data = watch_id
            stage = fast.run(run_at)
            watches.pop(watch_id, None)  # the store is gone: the helper registers no finalizer
            if stage in (native.FILES, native.CONFIG):
                if stage == native.CONFIG:
                    raise wasmtime.WasmtimeError("failed to configure the guest environment or argv")
                watch.files = files = scratch_files(renew=True)
                continue
            break
        else:
            raise wasmtime.WasmtimeError("failed to set stdout file")
        del values_owner, argv_owner
        if stage == native.SET_WASI:
            raise capi.error_from(run.error)
        watch.instantiated_ns = run.instantiated_ns
        failure: GuestError | None = None
        try:
            if stage == native.INSTANTIATE:
                exc: wasmtime.WasmtimeError | wasmtime.Trap = (
                    capi.error_from(run.error) if run.error else capi.trap_from(run.trap or 0))
                maybe_raise_last_exn()  # a wasmtime-py host function's exception, as InstancePre.instantiate does
                raise exc
            if stage == native.NO_ENTRY:
                raise wasmtime.WasmtimeError(f"the module exports no function {self.entrypoint!r}")
            if run.error:
                raise capi.error_from(run.error)
            if run.trap:
                raise capi.trap_from(run.trap)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
            failure = self._failure(exc)
        memory = int(run.memory_size) if run.instantiated_ns and (failure is not None or run.want_memory) else 0
        return failure, memory, files

    def _failure(self, exc: wasmtime.WasmtimeError | wasmtime.Trap) -> GuestError | None:
        """What the guest's ending means for the request: ``None`` for a normal one (an exit with 0)."""
        if isinstance(exc, wasmtime.ExitTrap):
            return None if exc.code == 0 else GuestExit(f"{self.name}: the guest exited with status {exc.code}",
                                                         exc.code)
        if isinstance(exc, wasmtime.Trap):
            return self._classify_trap(exc)
        return pool_full(self.name, exc) or GuestTrap(f"{self.name}: {first_line(exc)}")

    def _configure(self, config: int, env: dict[str, str], argv: list[str], body: bytes,
                   files: ScratchFiles) -> ScratchFiles:
        """Fill ``config``; the scratch files it writes to (``files``, or new ones if those were removed)."""
        names = self._env_names(env)
        values_at, values_owner = self._env_values(env)
        if not capi.wasi_config_set_env(config, names[0], names[1], values_at):
            raise wasmtime.WasmtimeError("failed to configure the guest environment")
        del values_owner
        argv_at, argv_owner = self._argv_array(argv)
        if not capi.wasi_config_set_argv(config, len(argv), argv_at):
            raise wasmtime.WasmtimeError("failed to configure the guest argv")
        del argv_owner
        if body:
            capi.byte_vec_new(files.lane.stdin_at, len(body), body)  # copies the bytes
            capi.wasi_config_set_stdin_bytes(config, files.lane.stdin_at)  # wasmtime takes the vector
        if not (capi.wasi_config_set_stdout_file(config, files.stdout_bytes)
                and capi.wasi_config_set_stderr_file(config, files.stderr_bytes)):
            # The scratch files were removed under us: make them again (and the lane with them).
            files = scratch_files(renew=True)
            if not (capi.wasi_config_set_stdout_file(config, files.stdout_bytes)
                    and capi.wasi_config_set_stderr_file(config, files.stderr_bytes)):
                raise wasmtime.WasmtimeError("failed to set stdout file")
        for host, guest, writable in self._preopens:  # only what the manifest grants (capabilities.files)
            if not capi.wasi_config_preopen_dir(config, host, guest, writable):
                raise wasmtime.WasmtimeError(f"failed to preopen {host!r}")
        return files

    def _env_names(self, env: dict[str, str]) -> tuple[int, int, object, list[bytes]]:
        """The environment's names as a C array: (count, its ``char **``, what owns it, the encoded names)."""
        # The names are the same from one request to the next unless the client's header set
        # changes: their C array is kept per set of names (a few per client kind).
        key = tuple(env)
        names = self._names.get(key)
        if names is None:
            encoded = list(map(_env_name, key))
            names = (len(encoded), *capi.string_array(encoded), encoded)
            if sum(map(len, key)) <= 4096:  # kept small whatever headers clients send: 64 sets of 4 KiB at most
                if len(self._names) >= _NAME_SETS:
                    self._names.clear()
                self._names[key] = names
        return names

    @staticmethod
    def _env_values(env: dict[str, str]) -> tuple[int, object]:
        """The environment's values as a ``char **``, and what owns it and them (keep it until the call)."""
        values = list(map(_env_value, env.values()))
        values_at, values_owner = capi.string_array(values)
        return values_at, (values, values_owner)

    @staticmethod
    def _argv_array(argv: list[str]) -> tuple[int, object]:
        """argv as a ``char **``, and what owns it and the words (keep it until the call)."""
        words = list(map(_encode, argv))
        argv_at, argv_owner = capi.string_array(words)
        return argv_at, (words, argv_owner)

    def _instantiate_and_call(self, context: int, lane: capi.Lane, watch: Watch) -> None:
        """Instantiate into ``context`` and run the entrypoint; the instance's time.time_ns() goes to ``watch``."""
        lane.trap.value = None
        error = capi.instance_pre_instantiate(self._pre_ptr, context, lane.instance_at, lane.trap_at)
        if error or lane.trap.value:
            exc: wasmtime.WasmtimeError | wasmtime.Trap = (
                capi.error_from(error) if error else capi.trap_from(lane.trap.value or 0))
            maybe_raise_last_exn()  # a wasmtime-py host function's exception, as InstancePre.instantiate does
            raise exc
        watch.instantiated_ns = time.time_ns()
        lane.call(context, self._entrypoint)

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


# wasmtime's pooling allocator, out of slots: "maximum concurrent limit of 256 for core instances reached"
# (also memories, tables, component instances, stacks). Only instantiation can meet it.
_POOL_FULL = re.compile(r"maximum concurrent (?:limit of \d+ for [\w -]+|[\w -]+ limit of \d+) reached")


def pool_full(name: str, exc: BaseException) -> GuestCapacity | None:
    """``GuestCapacity`` if ``exc`` says the worker's instance pool had no slot free, else None."""
    found = _POOL_FULL.search(str(exc))
    if found is None:
        return None
    return GuestCapacity(f"{name}: no instance slot free on this worker ({found.group(0)}); try again")


def pool_full_at_trial(name: str, exc: BaseException) -> bool:
    """Whether a deploy's trial instantiation failed only because the worker's instance pool was full.

    wasmtime type-checks a component's imports against the linker before it
    allocates any instance, so such a component links: it is accepted rather
    than served as "unavailable" for having been deployed while requests held
    every slot. What the trial would also have checked (the memory it needs to
    start, start functions that return) shows at its first request instead, as
    ``GuestMemoryLimit`` or ``GuestTimeout``.
    """
    full = pool_full(name, exc)
    if full is not None:
        log.warning("%s: the instance pool was full at deploy: the imports link, the start was not tried (%s)",
                    name, full)
    return full is not None


def first_line(exc: BaseException) -> str:
    """The first line of an error's text (wasmtime's carry a backtrace below it), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
