"""deislabs' ``wasi_experimental_http`` for WASI preview 1 guests, behind the egress policy.

The host ABI (``deislabs/wasi-experimental-http``, ``witx/wasi_experimental_http.witx``
and the wasmtime host crate), all parameters and results ``i32``; pointers
and lengths are offsets into the guest's exported ``memory``; every function
returns an error code, 0 for success::

    req(url_ptr, url_len, method_ptr, method_len, headers_ptr, headers_len,
        body_ptr, body_len, status_code_ptr, res_handle_ptr) -> err
        status written as u16 LE, handle as u32 LE; headers are "Name:value\\n" lines
    close(handle) -> err
    header_get(handle, name_ptr, name_len, value_ptr, value_len, value_written_ptr) -> err
    headers_get_all(handle, buf_ptr, buf_len, buf_written_ptr) -> err      "name:value\\n" lines
    body_read(handle, buf_ptr, buf_len, buf_read_ptr) -> err                0 bytes read at the end

Error codes (``HttpError``): 1 invalid handle, 2 memory not found, 3 memory
access error, 4 buffer too small, 5 header not found, 6 UTF-8 error,
7 destination not allowed, 8 invalid method, 9 invalid encoding, 10 invalid
URL, 11 request error, 12 runtime error, 13 too many sessions.

**Per-request context.** The functions are defined once on the (shared)
``Linker``; what a call may do comes from the ``OutboundContext`` bound to the
calling thread with ``outbound_context(ctx)``. wasmtime-py runs a guest
synchronously on the thread that called into it, and a host function is
called back on that same thread, so a thread-local is exact (no lookup in
``Store.data``, which wasmtime-py exposes only through private helpers). With
no context bound, every ``req`` is refused with 7.

**Pinning.** ``req`` resolves the host once (``resolve_and_check``), then
connects to a checked address: the URL is rewritten to the address, the
``Host`` header keeps the name, and for HTTPS the TLS server name (SNI and
certificate check) is the name, through httpcore's ``sni_hostname``
extension. The name is never resolved again, so DNS rebinding between the
check and the connection cannot redirect it. Connections are pooled per host
name and per invocation only (``OutboundContext.client_for``): a connection
authenticated for one name never carries a request for another. Redirects are not followed
(a 3xx goes back to the guest, whose next ``req`` is checked again), and
proxies from the environment are ignored (``trust_env=False``).

**Deadline.** A request ends by the guest's deadline, whatever the upstream
does: every connect, handshake, read and write is given the time left
(``_deadline_io``), not a per-read timeout an upstream trickling one byte a
second could renew forever. A request cut short by the deadline returns 11 and
marks the context ``timed_out``: the runner answers 504, as for any guest
still running at its deadline.

**Start-up.** httpx and httpcore (with rich, pygments and h11 behind them,
about 0.15 s of imports) load on first use: a worker whose apps may make no
outbound request never loads them, and one that serves an app that may calls
``preload_http_client`` while loading it, so no guest's first request pays.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import enum
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import wasmtime

from .._errors import EgressDenied
from ..plan import AllowedHost, Target, parse_target
from ._egress import CheckedTarget, Resolver, resolve_and_check, system_resolver

if TYPE_CHECKING:  # loaded on first use (see "Start-up" above); ssl by httpx, ~5 ms the supervisor saves
    import ssl

    import httpx

    from ._deadline_io import DeadlineClock

__all__ = [
    "CALL_DEPTH_HEADER",
    "INTERNAL_SUFFIX",
    "MAX_CALL_DEPTH",
    "MODULE",
    "HttpError",
    "InternalCall",
    "call_depth",
    "OutboundContext",
    "current_context",
    "default_client",
    "define_wasi_http",
    "outbound_context",
    "preload_http_client",
    "set_internal_caller",
]

log = logging.getLogger("wasmlet.egress")

MODULE = "wasi_experimental_http"
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_HOST_OWNED = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"})
# Cross-app calls (docs/lattice.md): ``http://APP.COMPONENT.wasmlet/PATH`` reaches another app by name,
# wherever it runs, through the hook the worker installs (``set_internal_caller``); egress rules apply.
INTERNAL_SUFFIX = ".wasmlet"
CALL_DEPTH_HEADER = "x-wasmlet-call-depth"
MAX_CALL_DEPTH = 8  # apps calling apps: a loop ends here (508), not in a pool of threads all waiting
_LABEL = re.compile(r"^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$")
# (app "APP/COMPONENT", method, path and query, headers, body, seconds left) -> (status, headers, body)
InternalCall = Callable[[str, str, str, list[tuple[str, str]], bytes, float], tuple[int, list[tuple[str, str]], bytes]]


class HttpError(enum.IntEnum):
    SUCCESS = 0
    INVALID_HANDLE = 1
    MEMORY_NOT_FOUND = 2
    MEMORY_ACCESS_ERROR = 3
    BUFFER_TOO_SMALL = 4
    HEADER_NOT_FOUND = 5
    UTF8_ERROR = 6
    DESTINATION_NOT_ALLOWED = 7
    INVALID_METHOD = 8
    INVALID_ENCODING = 9
    INVALID_URL = 10
    REQUEST_ERROR = 11
    RUNTIME_ERROR = 12
    TOO_MANY_SESSIONS = 13


class _Fail(Exception):
    def __init__(self, code: HttpError) -> None:
        self.code = code


@dataclasses.dataclass
class _Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    pos: int = 0


def preload_http_client() -> None:
    """Import the HTTP client now (a worker loading an app with ``allowedOutboundHosts`` does)."""
    import httpcore  # noqa: F401
    import httpx  # noqa: F401

    from . import _deadline_io  # noqa: F401


def _new_clock() -> DeadlineClock:
    from ._deadline_io import DeadlineClock

    return DeadlineClock()


@dataclasses.dataclass
class OutboundContext:
    """What one guest invocation may do over ``wasi_experimental_http``.

    ``allowed`` is the component's parsed ``allowedOutboundHosts``
    (``Capabilities.outbound``); ``deadline`` the guest's ``time.monotonic()``
    deadline, by which every request ends (``timeout`` caps each one as a
    whole, too); the limits bound what one invocation can make the host do.
    ``verify`` replaces the system's CA certificates (tests).
    """

    allowed: tuple[AllowedHost, ...]
    deadline: float | None = None
    timeout: float = 10.0  # per request, seconds, from connect to the last byte (also capped by the deadline)
    max_requests: int = 32  # per invocation; past it, req returns 13
    max_open: int = 16  # responses not yet closed; past it, req returns 13
    max_response_body: int = 10 << 20  # bytes; a larger body is a request error (11)
    resolver: Resolver = system_resolver
    verify: ssl.SSLContext | None = None  # None: the system's CA certificates
    app: str = ""  # for log lines
    traceparent: str = ""  # the guest's request's trace context, passed on by calls to other apps
    depth: int = 0  # how many app-to-app calls led to this invocation
    requests: int = 0
    timed_out: bool = False  # a request was cut short by ``deadline``
    denied: list[str] = dataclasses.field(default_factory=list)  # EgressDenied messages, for the caller
    _responses: dict[int, _Response] = dataclasses.field(default_factory=dict)
    _next_handle: int = 1
    _clients: dict[str, httpx.Client] = dataclasses.field(default_factory=dict)
    _clock: DeadlineClock = dataclasses.field(default_factory=_new_clock)  # the request being sent

    def client_for(self, name: str) -> httpx.Client:
        """One client (connection pool) per host name, for this invocation only.

        URLs carry the checked address, so a pool keys its connections by
        address; one pool per name keeps a connection opened (and, for HTTPS,
        authenticated) for one name from serving another name at the same
        address, and nothing is reused by another invocation, whose policy
        and DNS answers may differ.
        """
        client = self._clients.get(name)
        if client is None:
            client = default_client(self._clock, self.verify)
            self._clients[name] = client
        return client

    def close_all(self) -> None:
        self._responses.clear()
        for client in self._clients.values():
            client.close()
        self._clients.clear()


_bound = threading.local()
_internal: list[InternalCall | None] = [None]


def call_depth(headers: tuple[tuple[str, str], ...]) -> int:
    """How many app-to-app calls led to a request (its ``x-wasmlet-call-depth``; 0 if none or garbled)."""
    for name, value in headers:
        if name.lower() == CALL_DEPTH_HEADER:
            return int(value) if value.isdigit() and len(value) < 4 else MAX_CALL_DEPTH
    return 0


def set_internal_caller(call: InternalCall | None) -> None:
    """Install how ``http://APP.COMPONENT.wasmlet/`` reaches an app (the worker's, see ``wasmlet.server``)."""
    _internal[0] = call


def current_context() -> OutboundContext | None:
    ctx: OutboundContext | None = getattr(_bound, "ctx", None)
    return ctx


@contextmanager
def outbound_context(ctx: OutboundContext) -> Iterator[OutboundContext]:
    """Bind ``ctx`` to this thread for the guest call inside the block."""
    previous = current_context()
    _bound.ctx = ctx
    try:
        yield ctx
    finally:
        _bound.ctx = previous
        ctx.close_all()


_ssl_lock = threading.Lock()
_ssl_context: ssl.SSLContext | None = None


def default_client(clock: DeadlineClock | None = None, verify: ssl.SSLContext | None = None) -> httpx.Client:
    """No proxies from the environment, no redirects, one CA context for the process, and ``clock``'s deadline.

    Loading the CA bundle costs milliseconds, so the ``SSLContext`` (thread-safe
    for new connections) is built once and shared; clients are not.
    """
    import httpcore
    import httpx

    from ._deadline_io import DeadlineBackend

    global _ssl_context
    if verify is None:
        with _ssl_lock:
            if _ssl_context is None:
                _ssl_context = httpx.create_ssl_context()
            verify = _ssl_context
    transport = httpx.HTTPTransport(verify=verify, trust_env=False)
    if clock is not None:
        # httpx 0.28 hands httpcore no network backend: the same pool as its own, with one.
        transport._pool = httpcore.ConnectionPool(
            ssl_context=verify, max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0,
            network_backend=DeadlineBackend(clock),
        )
    return httpx.Client(transport=transport, trust_env=False, follow_redirects=False)


# Guest memory ----------------------------------------------------------------
def _memory(caller: wasmtime.Caller) -> wasmtime.Memory:
    memory = caller.get("memory")
    if not isinstance(memory, wasmtime.Memory):
        raise _Fail(HttpError.MEMORY_NOT_FOUND)
    return memory


def _read(caller: wasmtime.Caller, memory: wasmtime.Memory, ptr: int, length: int) -> bytes:
    ptr &= 0xFFFFFFFF
    length &= 0xFFFFFFFF
    if ptr + length > memory.data_len(caller):
        raise _Fail(HttpError.BUFFER_TOO_SMALL)
    return bytes(memory.read(caller, ptr, ptr + length)) if length else b""


def _text(caller: wasmtime.Caller, memory: wasmtime.Memory, ptr: int, length: int) -> str:
    try:
        return _read(caller, memory, ptr, length).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Fail(HttpError.UTF8_ERROR) from exc


def _write(caller: wasmtime.Caller, memory: wasmtime.Memory, ptr: int, data: bytes) -> None:
    ptr &= 0xFFFFFFFF
    if ptr + len(data) > memory.data_len(caller):
        raise _Fail(HttpError.MEMORY_ACCESS_ERROR)
    if data:
        memory.write(caller, data, ptr)


def _u32(value: int) -> bytes:
    return (value & 0xFFFFFFFF).to_bytes(4, "little")


def _parse_headers(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.match(name) or any(c in value for c in "\r\n\0"):
            raise _Fail(HttpError.INVALID_ENCODING)
        out.append((name, value.strip()))
    return out


def _guarded(func: Callable[..., None]) -> Callable[..., int]:
    """Map a host function's outcome to the ABI's error code; never raise into the guest."""

    def call(*args: Any) -> int:
        try:
            func(*args)
        except _Fail as fail:
            return int(fail.code)
        except Exception:
            log.exception("wasi_experimental_http: host function failed")
            return int(HttpError.RUNTIME_ERROR)
        return 0

    call.__name__ = func.__name__
    return call


def _response(ctx: OutboundContext | None, handle: int) -> _Response:
    if ctx is None:
        raise _Fail(HttpError.INVALID_HANDLE)
    response = ctx._responses.get(handle & 0xFFFFFFFF)
    if response is None:
        raise _Fail(HttpError.INVALID_HANDLE)
    return response


# The host functions ------------------------------------------------------------
def _req(caller: wasmtime.Caller, url_ptr: int, url_len: int, method_ptr: int, method_len: int,
         headers_ptr: int, headers_len: int, body_ptr: int, body_len: int,
         status_ptr: int, handle_ptr: int) -> None:
    memory = _memory(caller)
    url = _text(caller, memory, url_ptr, url_len)
    ctx = current_context()
    if ctx is None:
        log.warning("wasi_experimental_http: req to %s refused: no outbound policy for this guest", url)
        raise _Fail(HttpError.DESTINATION_NOT_ALLOWED)
    method = _text(caller, memory, method_ptr, method_len).upper()
    if not _TOKEN.match(method):
        raise _Fail(HttpError.INVALID_METHOD)
    headers = _parse_headers(_text(caller, memory, headers_ptr, headers_len))
    body = _read(caller, memory, body_ptr, body_len)
    if ctx.requests >= ctx.max_requests or len(ctx._responses) >= ctx.max_open:
        raise _Fail(HttpError.TOO_MANY_SESSIONS)
    ctx.requests += 1
    try:
        target = parse_target(url)
    except ValueError as exc:
        raise _Fail(HttpError.INVALID_URL) from exc
    if target.scheme not in ("http", "https"):
        raise _Fail(HttpError.INVALID_URL)
    if target.host.endswith(INTERNAL_SUFFIX):  # another app, by name: no DNS, no socket
        _answer(caller, memory, ctx, _call_app(ctx, target, url, method, headers, body), status_ptr, handle_ptr)
        return
    try:
        checked = _resolve(ctx, target)
    except EgressDenied as exc:
        ctx.denied.append(str(exc))
        log.warning("app=%s egress denied: %s", ctx.app, exc)
        raise _Fail(HttpError.DESTINATION_NOT_ALLOWED) from exc
    response = _send(ctx, checked, url, method, headers, body)
    handle = ctx._next_handle
    ctx._next_handle += 1
    ctx._responses[handle] = response
    _write(caller, memory, status_ptr, response.status.to_bytes(2, "little"))
    _write(caller, memory, handle_ptr, _u32(handle))


def _answer(caller: wasmtime.Caller, memory: wasmtime.Memory, ctx: OutboundContext, response: _Response,
            status_ptr: int, handle_ptr: int) -> None:
    handle = ctx._next_handle
    ctx._next_handle += 1
    ctx._responses[handle] = response
    _write(caller, memory, status_ptr, response.status.to_bytes(2, "little"))
    _write(caller, memory, handle_ptr, _u32(handle))


def _call_app(ctx: OutboundContext, target: Target, url: str, method: str, headers: list[tuple[str, str]],
              body: bytes) -> _Response:
    """A call to ``http://APP.COMPONENT.wasmlet/PATH``: allowed as any egress is, then made by the hook."""
    if not any(pattern.allows(target) for pattern in ctx.allowed):
        message = f"{target.host} is not in allowedOutboundHosts (grant it as http://{target.host})"
        ctx.denied.append(message)
        log.warning("app=%s egress denied: %s", ctx.app, message)
        raise _Fail(HttpError.DESTINATION_NOT_ALLOWED)
    labels = target.host.removesuffix(INTERNAL_SUFFIX).split(".")
    if len(labels) != 2 or not all(_LABEL.match(label) for label in labels) or target.port is not None:
        raise _Fail(HttpError.INVALID_URL)
    call = _internal[0]
    if call is None:
        log.info("app=%s outbound to %s: this host does not route calls between apps", ctx.app, target.host)
        raise _Fail(HttpError.REQUEST_ERROR)
    if ctx.depth >= MAX_CALL_DEPTH:
        return _Response(508, [("content-type", "text/plain")], f"508 loop detected: {MAX_CALL_DEPTH} nested calls "
                         "between apps\n".encode())
    left = ctx.timeout if ctx.deadline is None else min(ctx.timeout, ctx.deadline - time.monotonic())
    if left <= 0:
        ctx.timed_out = ctx.deadline is not None
        raise _Fail(HttpError.REQUEST_ERROR)
    import httpx

    parsed = httpx.URL(url)
    path = parsed.raw_path.decode("ascii", "replace") or "/"
    sent = [(n, v) for n, v in headers if n.lower() not in _HOST_OWNED | {"traceparent", CALL_DEPTH_HEADER}]
    sent += [("host", target.host), (CALL_DEPTH_HEADER, str(ctx.depth + 1))]
    if ctx.traceparent:  # the trace goes on through the call (W3C Trace Context)
        sent.append(("traceparent", ctx.traceparent))
    try:
        status, out_headers, out_body = call(f"{labels[0]}/{labels[1]}", method, path, sent, body, left)
    except TimeoutError as exc:
        ctx.timed_out = ctx.deadline is not None and time.monotonic() >= ctx.deadline
        raise _Fail(HttpError.REQUEST_ERROR) from exc
    except Exception as exc:
        log.info("app=%s call to %s failed: %s", ctx.app, target.host, exc)
        raise _Fail(HttpError.REQUEST_ERROR) from exc
    if len(out_body) > ctx.max_response_body:
        raise _Fail(HttpError.REQUEST_ERROR)
    return _Response(status, out_headers, out_body)


# getaddrinfo cannot be interrupted: a name server that never answers would hold
# the guest's thread past its deadline, so lookups run here and are waited for
# until the deadline only (a lookup left behind ends with the resolver's own timeout).
_lookups = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="wasmlet-dns")


def _resolve(ctx: OutboundContext, target: Target) -> CheckedTarget:
    if target.ip is not None:  # nothing to look up
        return resolve_and_check(target, ctx.allowed, ctx.resolver)
    left = ctx.timeout if ctx.deadline is None else min(ctx.timeout, ctx.deadline - time.monotonic())
    if left <= 0:
        ctx.timed_out = ctx.deadline is not None
        raise _Fail(HttpError.REQUEST_ERROR)
    lookup = _lookups.submit(resolve_and_check, target, ctx.allowed, ctx.resolver)
    try:
        return lookup.result(timeout=left)
    except concurrent.futures.TimeoutError as exc:
        log.info("app=%s outbound: no DNS answer for %s in time", ctx.app, target.host)
        ctx.timed_out = ctx.deadline is not None and time.monotonic() >= ctx.deadline
        raise _Fail(HttpError.REQUEST_ERROR) from exc


def _send(ctx: OutboundContext, checked: CheckedTarget, url: str, method: str,
          headers: list[tuple[str, str]], body: bytes) -> _Response:
    import httpx

    now = time.monotonic()
    deadline = now + ctx.timeout if ctx.deadline is None else min(now + ctx.timeout, ctx.deadline)
    timeout = deadline - now
    if timeout <= 0:
        ctx.timed_out = True
        raise _Fail(HttpError.RUNTIME_ERROR)
    ctx._clock.deadline = deadline
    original = httpx.URL(url)
    target = checked.target
    host_header = target.authority if target.port is not None else (
        f"[{target.host}]" if ":" in target.host else target.host
    )
    # The host owns framing and routing: the guest's Host, Content-Length,
    # Transfer-Encoding and Connection would contradict what is actually sent.
    sent = [(n, v) for n, v in headers if n.lower() not in _HOST_OWNED]
    sent.append(("Host", host_header))
    client = ctx.client_for(target.host)
    last_error: Exception | None = None
    for address in checked.addresses:
        pinned = original.copy_with(host=address, port=checked.port)
        extensions: dict[str, Any] = {"timeout": httpx.Timeout(timeout).as_dict()}
        if target.scheme == "https" and target.ip is None:
            extensions["sni_hostname"] = target.host
        request = httpx.Request(method, pinned, headers=sent, content=body, extensions=extensions)
        try:
            reply = client.send(request, stream=True, follow_redirects=False)
        except httpx.ConnectError as exc:  # try the next checked address
            last_error = exc
            continue
        except httpx.HTTPError as exc:
            log.info("app=%s outbound %s %s failed: %s", ctx.app, method, url, exc)
            _note_deadline(ctx, exc)
            raise _Fail(HttpError.REQUEST_ERROR) from exc
        try:
            chunks = []
            size = 0
            for chunk in reply.iter_raw():
                size += len(chunk)
                if size > ctx.max_response_body:
                    log.info("app=%s outbound %s %s: response body above %d bytes",
                             ctx.app, method, url, ctx.max_response_body)
                    raise _Fail(HttpError.REQUEST_ERROR)
                chunks.append(chunk)
        except httpx.HTTPError as exc:
            log.info("app=%s outbound %s %s: response failed: %s", ctx.app, method, url, exc)
            _note_deadline(ctx, exc)
            raise _Fail(HttpError.REQUEST_ERROR) from exc
        finally:
            reply.close()
        return _Response(reply.status_code, list(reply.headers.multi_items()), b"".join(chunks))
    log.info("app=%s outbound %s %s: cannot connect: %s", ctx.app, method, url, last_error)
    raise _Fail(HttpError.REQUEST_ERROR)


def _note_deadline(ctx: OutboundContext, exc: httpx.HTTPError) -> None:
    import httpx

    if isinstance(exc, httpx.TimeoutException) and ctx.deadline is not None and time.monotonic() >= ctx.deadline:
        ctx.timed_out = True


def _close(caller: wasmtime.Caller, handle: int) -> None:
    ctx = current_context()
    if ctx is not None:
        ctx._responses.pop(handle & 0xFFFFFFFF, None)  # as deislabs: closing an unknown handle is not an error


def _header_get(caller: wasmtime.Caller, handle: int, name_ptr: int, name_len: int,
                value_ptr: int, value_len: int, written_ptr: int) -> None:
    response = _response(current_context(), handle)
    memory = _memory(caller)
    name = _text(caller, memory, name_ptr, name_len).lower()
    for key, value in response.headers:
        if key == name:
            data = value.encode("latin-1", "replace")
            if len(data) > (value_len & 0xFFFFFFFF):
                raise _Fail(HttpError.BUFFER_TOO_SMALL)
            _write(caller, memory, value_ptr, data)
            _write(caller, memory, written_ptr, _u32(len(data)))
            return
    raise _Fail(HttpError.HEADER_NOT_FOUND)


def _headers_get_all(caller: wasmtime.Caller, handle: int, buf_ptr: int, buf_len: int, written_ptr: int) -> None:
    response = _response(current_context(), handle)
    memory = _memory(caller)
    data = "".join(f"{k}:{v}\n" for k, v in response.headers).encode("latin-1", "replace")
    if len(data) > (buf_len & 0xFFFFFFFF):
        raise _Fail(HttpError.BUFFER_TOO_SMALL)
    _write(caller, memory, buf_ptr, data)
    _write(caller, memory, written_ptr, _u32(len(data)))


def _body_read(caller: wasmtime.Caller, handle: int, buf_ptr: int, buf_len: int, read_ptr: int) -> None:
    response = _response(current_context(), handle)
    memory = _memory(caller)
    chunk = response.body[response.pos:response.pos + (buf_len & 0xFFFFFFFF)]
    _write(caller, memory, buf_ptr, chunk)
    _write(caller, memory, read_ptr, _u32(len(chunk)))
    response.pos += len(chunk)


_FUNCTIONS: tuple[tuple[str, Callable[..., None], int], ...] = (
    ("req", _req, 10),
    ("close", _close, 1),
    ("header_get", _header_get, 6),
    ("headers_get_all", _headers_get_all, 4),
    ("body_read", _body_read, 4),
)


def define_wasi_http(linker: wasmtime.Linker) -> None:
    """Define the five ``wasi_experimental_http`` functions on ``linker`` (once per linker)."""
    i32 = wasmtime.ValType.i32()
    for name, func, params in _FUNCTIONS:
        linker.define_func(MODULE, name, wasmtime.FuncType([i32] * params, [i32]), _guarded(func),
                           access_caller=True)
