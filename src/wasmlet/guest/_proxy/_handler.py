"""Serving a ``wasi:http/proxy`` component: one fresh instance per request.

The request goes in as host resources (``incoming-request``, whose body
stream reads ``CgiRequest.body``, already buffered and capped by the
server, or with ``source`` the body as it arrives: ``_io.SourceStream``),
``wasi:http/incoming-handler.handle`` is called, and what the
guest set on the ``response-outparam`` comes back as a ``CgiResponse``: the
body is buffered up to ``maxResponseSize`` (past it, ``GuestOutputLimit``).

Limits and failures are WAGI's (``docs/guest-errors.md``): the memory limit
(``Store.set_limits``), the epoch deadline and its watch from ``_runner``
(a guest past its deadline is stopped, 504), a trap is 500, ``wasi:cli/exit``
with an error 501. What only a proxy can get wrong is ``GuestBadResponse``
(502 ``bad-response``): the outparam never set, set to an ``error-code``, a
body not finished, a 1xx status or a header value with a control character.

With a ``sink`` (``handle(..., sink=...)``, the server's streaming path) the
response is not buffered: the status and headers go to the sink when the
guest sets the outparam, each write to the body as it happens, and
``outgoing-body.finish`` ends it. From the set on the status is committed: a
later failure is still raised (and logged, counted), but the server can only
cut the response short. A guest's ``Content-Length`` is kept while streaming
if it is well-formed; writing past it, or finishing short of it, is
``bad-response``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from ctypes import c_bool, c_int64, c_size_t, c_uint64, c_void_p
from typing import Any

import wasmtime
import wasmtime.component as wc
from wasmtime import _ffi as ffi

from ..._errors import (
    GuestBadResponse,
    GuestError,
    GuestExit,
    GuestMemoryLimit,
    GuestOutputLimit,
    GuestTimeout,
    GuestTrap,
    ModuleError,
)
from ...engine import EpochTicker
from ...plan import AllowedHost
from .. import _native as native
from .._runner import GuestLimits, GuestResult, GuestStats, first_line, pool_full, pool_full_at_trial
from .._wagi import CgiRequest, CgiResponse
from .._wasi_http import OutboundContext, call_depth, outbound_context
from .._watch import CHECK_TICKS, ON_DEADLINE, Watch, on_deadline, watch_ids, watches
from . import _abi as abi
from . import _ids as ids
from ._cli import Exit
from ._http import IncomingRequest, OutgoingResponse, ResponseOutparam
from ._io import BodySource
from ._state import MAX_LOG, ResponseSink, Session, bind, enter, leave

__all__ = ["ProxyHandler", "find_handler_export"]

log = logging.getLogger("wasmlet.guest")

_HANDLER = re.compile(r"^wasi:http/incoming-handler@0\.2\.\d+$")
_MAX_CORE_INSTANCES = 16
_MAX_MEMORIES = 4
_MAX_TABLES = 16
_TRAP_TEXT = re.compile(r"wasm trap: (.+)")
_TRIAL_TIMEOUT = 10.0
_TRIAL_TICK = 0.01
# As _wagi: the host owns framing, connection management and its own answers about a request.
_HOST_OWNED = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                         "proxy-connection", "content-length", "x-wasmlet-error", "x-request-id"})
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_BODILESS = frozenset({204, 304})
# The store and the call through wasmtime's C API directly: wasmtime-py's ``Store``, ``Linker.instantiate``
# and ``_ffi`` wrappers cost about 4 us a request (docs/benchmarks.md, section 21). What runs the guest
# (instantiation runs its start functions) or may take long (deleting a store gives its memory back) releases
# the GIL, as wasmtime-py's do; the short others keep it (``abi.SHORT``).
_STORE_NEW = abi.prototype("wasmtime_store_new", c_void_p, c_void_p, c_void_p, c_void_p, library=abi.SHORT)
_STORE_CONTEXT = abi.prototype("wasmtime_store_context", c_void_p, c_void_p, library=abi.SHORT)
_STORE_DELETE = abi.prototype("wasmtime_store_delete", None, c_void_p)
_STORE_LIMITER = abi.prototype("wasmtime_store_limiter", None, c_void_p, c_int64, c_int64, c_int64, c_int64, c_int64,
                               library=abi.SHORT)
_EPOCH_CALLBACK = abi.prototype("wasmtime_store_epoch_deadline_callback", None, c_void_p, c_void_p, c_void_p,
                                c_void_p, library=abi.SHORT)
_SET_EPOCH_DEADLINE = abi.prototype("wasmtime_context_set_epoch_deadline", None, c_void_p, c_uint64,
                                    library=abi.SHORT)
_INSTANTIATE = abi.prototype("wasmtime_component_linker_instantiate", c_void_p, c_void_p, c_void_p, c_void_p,
                             c_void_p)
_GET_FUNC = abi.prototype("wasmtime_component_instance_get_func", c_bool, c_void_p, c_void_p, c_void_p, c_void_p,
                          library=abi.SHORT)
_FUNC_CALL = abi.prototype("wasmtime_component_func_call", c_void_p, c_void_p, c_void_p, c_void_p, c_size_t,
                           c_void_p, c_size_t)
_VAL_DELETE = abi.prototype("wasmtime_component_val_delete", None, c_void_p, library=abi.SHORT)
_OWN_REQUEST = abi.own(ids.INCOMING_REQUEST)
_OWN_OUTPARAM = abi.own(ids.RESPONSE_OUTPARAM)
_PROBE = CgiRequest(method="GET", path="/", raw_path="/", query="", headers=(), body=b"")


def find_handler_export(component: wc.Component, engine: wasmtime.Engine) -> wc.ExportIndex | None:
    """The index of ``wasi:http/incoming-handler@0.2.x#handle``, or None if the component exports none."""
    names = sorted(n for n in component.type.exports(engine) if _HANDLER.match(n))
    interface = component.get_export_index(names[-1]) if names else None
    return component.get_export_index("handle", interface) if interface is not None else None


class ProxyHandler:
    """A ``wasi:http/proxy`` component, linked and checked at deploy, answering requests."""

    abi = "wasi:http/proxy component"
    streams_response = True  # handle() takes a sink (the server streams the response)
    streams_request = True  # ... and a source (the server streams the request body in)

    def __init__(
        self,
        name: str,
        engine: wasmtime.Engine,
        component: wc.Component,
        limits: GuestLimits,
        route: str,
        linker: wc.Linker,
        handle: wc.ExportIndex,
        environment: tuple[tuple[str, str], ...] = (),
        outbound: tuple[AllowedHost, ...] = (),
        contexts: Sequence[Callable[[], AbstractContextManager[Any]]] = (),
    ) -> None:
        self.name = name
        self.engine = engine
        self.limits = limits
        self.route = route
        self.environment = environment
        self.outbound = outbound
        self._component = component
        self._linker = linker
        self._handle = handle
        self._contexts = tuple(contexts)
        # A run that can reach nothing outside its instance (no outbound HTTP, no Spin store or other
        # host context) can be stopped and run again from the start unseen: see handle_inline.
        self.inline_ok = not outbound and not self._contexts
        self._check_links()
        # The C helper makes a request's wasmtime calls in one crossing (``_execute_native``), else
        # ctypes makes them one by one (``_execute``): the same calls, in the same order.
        self._fast = native.fast_path()
        self._runs = threading.local()  # a ComponentRun per thread (requests run on several at once)

    def _store(self, watch_id: int, epoch_deadline: int) -> tuple[int, int]:
        """A new store for one run, under the watch ``watch_id``: (store, its context).

        The caller deletes the store (``_STORE_DELETE``), then forgets the watch
        (``watches.pop``): no finalizer, whose call back into Python from
        ``wasmtime_store_delete`` would cost a crossing per request.
        """
        store: int = _STORE_NEW(self.engine.ptr(), None, None)
        _STORE_LIMITER(store, self.limits.memory, -1, _MAX_CORE_INSTANCES, _MAX_TABLES, _MAX_MEMORIES)
        _EPOCH_CALLBACK(store, on_deadline, watch_id, None)
        context: int = _STORE_CONTEXT(store)
        _SET_EPOCH_DEADLINE(context, epoch_deadline)
        return store, context

    def _instantiate(self, context: int) -> Any:
        """The component instantiated in the store of ``context`` (a ``wasmtime_component_instance_t``)."""
        instance = ffi.wasmtime_component_instance_t()
        error = _INSTANTIATE(self._linker.ptr(), context, self._component.ptr(), ctypes.byref(instance))
        if error:
            raise abi.wasmtime_error(error)
        return instance

    def _check_links(self) -> None:
        """Refuse at deploy what cannot link (as ``ComponentHandler``: a trial instantiation under a deadline)."""
        timeout = min(self.limits.timeout, _TRIAL_TIMEOUT)
        session = Session(self.name, _PROBE, [], time.monotonic() + timeout, self.limits.max_response, (), None)
        watch = Watch(session.deadline, session, self.limits.max_response, MAX_LOG)
        watch_id = next(watch_ids)
        watches[watch_id] = watch
        store, context = self._store(watch_id, CHECK_TICKS)
        try:
            with EpochTicker(self.engine, _TRIAL_TICK), bind(session):
                self._instantiate(context)
        except wasmtime.WasmtimeError as exc:
            if pool_full_at_trial(self.name, exc):
                return
            if watch.reason is not None:
                raise ModuleError(f"{self.name}: the component did not start within {timeout:g}s; refused") from exc
            if "exceeds memory limits" in str(exc):
                raise ModuleError(f"{self.name}: the component needs more memory to start than its memoryLimit of "
                                  f"{self.limits.memory} bytes: {first_line(exc)}") from exc
            raise ModuleError(f"{self.name}: cannot link the component: {first_line(exc)}") from exc
        finally:
            _STORE_DELETE(store)
            watches.pop(watch_id, None)

    def handle(self, request: CgiRequest, traceparent: str = "", sink: ResponseSink | None = None,
               source: BodySource | None = None, deadline: float | None = None) -> GuestResult:
        """Run the component once for ``request``; raise a ``GuestError`` subclass if it fails.

        ``traceparent`` joins the incoming request's headers unless the client sent one. With ``sink``
        the response is streamed to it (see the module's docstring) and the result's body is empty.
        With ``source`` the guest reads the request body from it as it arrives, not ``request.body``.
        ``deadline`` (``time.monotonic()``) replaces now + the timeout, for a request that already
        spent some of it (``handle_inline``).
        """
        result = self._run(request, traceparent, sink, source,
                           time.monotonic() + self.limits.timeout if deadline is None else deadline, 0.0)
        assert result is not None
        return result

    def handle_inline(self, request: CgiRequest, traceparent: str = "", budget: float = 0.001,
                      sink: ResponseSink | None = None) -> tuple[GuestResult | None, float]:
        """Run the component on the calling thread (an event loop's) only while it stays short.

        For handlers with ``inline_ok``, on a request whose body is already whole (``request.body``);
        ``sink`` must never make a write wait (nobody sends from it while this runs). The guest
        gives way, and this returns ``(None, deadline)``, at the first epoch check after it used
        ``budget`` seconds of CPU or at its first wait (a clock, ``poll``): the caller drops what
        reached ``sink`` unseen and runs the request again with ``handle(..., deadline=deadline)``
        on a worker thread. The first run could reach nothing outside its instance.
        """
        deadline = time.monotonic() + self.limits.timeout
        return self._run(request, traceparent, sink, None, deadline, budget), deadline

    def _run(self, request: CgiRequest, traceparent: str, sink: ResponseSink | None, source: BodySource | None,
             deadline: float, budget: float) -> GuestResult | None:
        started_ns = time.time_ns()
        headers = [(n, v.encode("latin-1", "replace")) for n, v in request.headers]
        if traceparent and not any(n == "traceparent" for n, _ in request.headers):
            headers.append(("traceparent", traceparent.encode("latin-1", "replace")))
        outbound = OutboundContext(self.outbound, deadline=deadline, app=self.name, traceparent=traceparent,
                                   depth=call_depth(request.headers)) if self.outbound else None
        session = Session(self.name, request, headers, deadline, self.limits.max_response, self.environment, outbound,
                          sink, None if sink is None else self._head_or_none, source)
        watch = Watch(deadline, session, self.limits.max_response + 1, MAX_LOG + 1)
        watch_id = next(watch_ids)
        watches[watch_id] = watch
        cpu_started = time.thread_time()
        failure: GuestError | None = None
        previous = enter(session)  # not a context manager: this is the hot path (docs/benchmarks.md)
        stack = contextlib.ExitStack() if outbound is not None or self._contexts else None
        try:
            epoch_deadline = CHECK_TICKS
            if budget:
                session.inline = True
                watch.yield_at = cpu_started + budget
                epoch_deadline = 1  # checked at every tick, as WagiHandler's inline runs
            if stack is not None:
                if outbound is not None:
                    stack.enter_context(outbound_context(outbound))
                for context in self._contexts:
                    stack.enter_context(context())
            fast = self._fast
            instantiated_ns, error = (self._execute(session, watch_id, epoch_deadline) if fast is None
                                      else self._execute_native(fast, session, watch_id, epoch_deadline))
            if error is not None:
                failure = self._classify(error, session, watch, instantiated=instantiated_ns != 0)
        finally:
            try:
                if stack is not None:
                    stack.close()
            finally:
                leave(previous)
                watches.pop(watch_id, None)  # the store is gone: no finalizer forgets the watch
        if budget and (session.gave_way or watch.reason == "yield"):
            return None  # run again on a worker thread; nothing of this run was seen
        if failure is None and (session.timed_out or (outbound is not None and outbound.timed_out)):
            failure = GuestTimeout(f"{self.name}: the guest ran past its {self.limits.timeout:g}s deadline")
        finished_ns = time.time_ns()
        stats = GuestStats(started_ns, instantiated_ns or finished_ns, finished_ns, time.thread_time() - cpu_started, 0)
        logged = b"".join(session.log)
        if failure is None:
            try:
                response = self._response(session)
            except GuestError as exc:
                failure = exc
            else:
                if session.started and not session.finished:
                    assert sink is not None
                    sink.end()  # the guest never took the body: an empty one
                return GuestResult(response=response, stderr=logged, stats=stats)
        failure.stderr = logged
        failure.stats = stats
        raise failure

    def _execute(self, session: Session, watch_id: int,
                 epoch_deadline: int) -> tuple[int, wasmtime.WasmtimeError | None]:
        """One run through ctypes: (when the instance was made in ns, or 0; wasmtime's error or None)."""
        store, context = self._store(watch_id, epoch_deadline)
        instantiated_ns = 0
        try:
            instance = self._instantiate(context)
            instantiated_ns = time.time_ns()
            self._call(context, instance, session)
        except wasmtime.WasmtimeError as exc:
            return instantiated_ns, exc
        finally:
            _STORE_DELETE(store)  # the instance with it
        return instantiated_ns, None

    def _execute_native(self, fast: native.FastPath, session: Session, watch_id: int,
                        epoch_deadline: int) -> tuple[int, wasmtime.WasmtimeError | None]:
        """As ``_execute``, through the C helper (``wasmlet_component_run``): one crossing."""
        lane = self._runs.__dict__.get("lane")
        if lane is None:
            lane = self._runs.lane = self._new_run()
        run, run_at = lane
        run.deadline_data = watch_id
        run.epoch_deadline = epoch_deadline
        run.request_rep = session.add(IncomingRequest())
        run.outparam_rep = session.add(ResponseOutparam())
        stage = fast.run_component(run_at)
        if stage == native.C_NO_HANDLER:
            return run.instantiated_ns, wasmtime.WasmtimeError("the component's incoming-handler export is not a "
                                                               "function")
        error = run.error
        if error:
            run.error = None
            return run.instantiated_ns, abi.wasmtime_error(error)
        return run.instantiated_ns, None

    def _new_run(self) -> tuple[native.ComponentRun, int]:
        """This handler's ``ComponentRun`` for one thread, with what is the same for every request, and its address."""
        run = native.ComponentRun()
        run.engine = _address(self.engine.ptr())
        run.linker = _address(self._linker.ptr())
        run.component = _address(self._component.ptr())
        run.handler = _address(self._handle.ptr())
        run.memory = self.limits.memory
        run.instances, run.tables, run.memories = _MAX_CORE_INSTANCES, _MAX_TABLES, _MAX_MEMORIES
        run.deadline_callback = ON_DEADLINE
        run.request_type, run.outparam_type = ids.INCOMING_REQUEST, ids.RESPONSE_OUTPARAM
        run.resource_kind = abi.RESOURCE
        return run, ctypes.addressof(run)

    def _call(self, context: int, instance: Any, session: Session) -> None:
        func = ffi.wasmtime_component_func_t()
        if not _GET_FUNC(ctypes.byref(instance), context, self._handle.ptr(), ctypes.byref(func)):
            raise wasmtime.WasmtimeError("the component's incoming-handler export is not a function")
        args = (ffi.wasmtime_component_val_t * 2)()
        address = ctypes.addressof(args)
        _OWN_REQUEST(context, session.add(IncomingRequest()), address)
        _OWN_OUTPARAM(context, session.add(ResponseOutparam()), address + abi.VAL_SIZE)
        try:
            error = _FUNC_CALL(ctypes.byref(func), context, address, 2, None, 0)
        finally:
            _VAL_DELETE(address)
            _VAL_DELETE(address + abi.VAL_SIZE)
        if error:
            raise abi.wasmtime_error(error)

    def _classify(self, exc: wasmtime.WasmtimeError, session: Session, watch: Watch,
                  instantiated: bool) -> GuestError | None:
        text = str(exc)
        if session.bad is not None:
            return GuestBadResponse(f"{self.name}: {session.bad}")
        exit_ = session.exit
        if isinstance(exit_, Exit) and "wasmlet: the guest exited" in text:
            return None if exit_.ok else GuestExit(f"{self.name}: the guest exited with status {exit_.code or 1}",
                                                   exit_.code or 1)
        if session.failure == "output-limit" or watch.reason in ("stdout", "stderr"):
            return GuestOutputLimit(f"{self.name}: the guest wrote more than its cap (response body cap "
                                    f"{self.limits.max_response} bytes, log cap {MAX_LOG} bytes)")
        if watch.reason == "timeout" or session.timed_out:
            return GuestTimeout(f"{self.name}: the guest ran past its {self.limits.timeout:g}s deadline")
        full = None if instantiated else pool_full(self.name, exc)
        if full is not None:
            return full
        if not instantiated and "exceeds memory limits" in text:
            return GuestMemoryLimit(f"{self.name}: the component needs more than its memory limit of "
                                    f"{self.limits.memory} bytes to start: {first_line(exc)}")
        trap = _TRAP_TEXT.search(text)
        if trap is not None:
            return GuestTrap(f"{self.name}: the guest trapped: {trap.group(1).strip()}")
        return GuestTrap(f"{self.name}: the guest trapped: {_cause(exc)}")

    def _response(self, session: Session) -> CgiResponse:
        response = session.response
        if response is None:
            raise GuestBadResponse(f"{self.name}: the guest returned without setting the response-outparam")
        if not isinstance(response, OutgoingResponse):
            raise GuestBadResponse(f"{self.name}: the guest answered with an error-code: {response[1]!r}")
        if session.bad is not None:
            raise GuestBadResponse(f"{self.name}: {session.bad}")
        if response.body_taken and not session.finished:
            raise GuestBadResponse(f"{self.name}: the guest did not finish the response body "
                                   "(outgoing-body.finish was not called)")
        status, headers = self._head(response)
        body = b"" if status in _BODILESS else b"".join(session.body)
        return CgiResponse(status=status, headers=headers, body=body)

    def _head(self, response: OutgoingResponse) -> tuple[int, list[tuple[bytes, bytes]]]:
        """The status and headers ``response`` goes out with; ``GuestBadResponse`` if it may not."""
        status = response.status
        if status < 200:
            raise GuestBadResponse(f"{self.name}: status {status} is an interim (1xx) response; "
                                   "a guest must answer with a final status, 200-599")
        headers = []
        for name, value in response.headers.entries:
            lower = name.lower()
            if lower in _HOST_OWNED:
                continue
            if _CONTROL.search(value):
                raise GuestBadResponse(f"{self.name}: the value of response header {name!r} holds a control "
                                       "character")
            headers.append((lower.encode("ascii"), value))
        return status, headers

    def _head_or_none(self, response: OutgoingResponse) -> tuple[int, list[tuple[bytes, bytes]]] | None:
        """As ``_head``, None for a response that may not go out (``_response`` says why after the guest returns)."""
        try:
            return self._head(response)
        except GuestBadResponse:
            return None


def _address(pointer: Any) -> int:
    """The address a ctypes pointer holds (the engine's, the linker's, ... kept alive by the handler)."""
    address = ctypes.cast(pointer, c_void_p).value
    assert address, "a NULL wasmtime object"
    return address


def _cause(exc: BaseException) -> str:
    """What wasmtime puts under "Caused by:" (a host function's message), else the first line."""
    text = str(exc)
    if "Caused by:" in text:
        lines = [line.strip() for line in text.split("Caused by:", 1)[1].splitlines() if line.strip()]
        if lines:
            return "; ".join(lines)[:500]
    return first_line(exc)
