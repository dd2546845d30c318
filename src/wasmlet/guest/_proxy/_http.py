"""``wasi:http/types`` 0.2: fields, the incoming request, the response and their bodies.

What a guest gets and gives maps onto wasmlet's request/response shapes
(``CgiRequest`` in, ``CgiResponse`` out) in ``_handler``; here are the
resources. Header rules follow RFC 9110 (section 5.1: a name is a token;
section 5.5: a value has no CR, LF or NUL) and wasmtime's: ``fields``
taken from a request or response are immutable (``header-error.immutable``),
and the headers a host owns (framing, connection management; wasmtime's
``DEFAULT_FORBIDDEN_HEADERS``) are ``header-error.forbidden``.

Trailers: ASGI has none on requests, and the HTTP/1.1 server wasmlet runs
(uvicorn's httptools protocol) announces no ``http.response.trailers``
extension. So ``incoming-body.finish`` gives a ``future-trailers`` that is
ready at once with ``none``, and trailers a guest hands to
``outgoing-body.finish`` are checked (a live ``fields`` handle, else a trap)
and dropped, with a debug line on the ``wasmlet.guest`` log; the body is
delivered as without them (``docs/guest-abis.md``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import wasmtime.component as wc

from . import _abi as abi
from . import _ids as ids
from ._abi import Trap
from ._io import READY, BodySource, InputStream, OutputStream, SourceStream
from ._state import current, drop, get

__all__ = ["ERROR_CODE", "Fields", "IncomingBody", "IncomingRequest", "OutgoingBody", "OutgoingResponse",
           "ResponseOutparam", "define_types", "method_value", "scheme_value", "parse_method", "parse_scheme",
           "take_fields"]

log = logging.getLogger("wasmlet.guest")

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_BAD_VALUE = re.compile(rb"[\r\n\0]")
FORBIDDEN = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host",
                       "http2-settings"})
MAX_FIELDS = 1000  # entries in one fields resource
MAX_FIELD_BYTES = 256 * 1024  # their names and values together

_METHODS = {"GET": "get", "HEAD": "head", "POST": "post", "PUT": "put", "DELETE": "delete", "CONNECT": "connect",
            "OPTIONS": "options", "TRACE": "trace", "PATCH": "patch"}
_METHOD_NAMES = {v: k for k, v in _METHODS.items()}


def method_value(method: str) -> tuple[str, str | None]:
    case = _METHODS.get(method)
    return (case, None) if case is not None else ("other", method)


def parse_method(value: tuple[str, object]) -> str:
    case, payload = value
    return str(payload) if case == "other" else _METHOD_NAMES[case]


def scheme_value(scheme: str) -> tuple[str, str | None]:
    lower = scheme.lower()
    return ("HTTP", None) if lower == "http" else ("HTTPS", None) if lower == "https" else ("other", scheme)


def parse_scheme(value: tuple[str, object]) -> str:
    case, payload = value
    return str(payload) if case == "other" else case.lower()


class Fields:
    __slots__ = ("entries", "immutable", "size")

    def __init__(self, entries: list[tuple[str, bytes]] | None = None, immutable: bool = False) -> None:
        self.entries = entries if entries is not None else []
        self.immutable = immutable
        self.size = sum(len(n) + len(v) for n, v in self.entries)

    def check(self, name: str, values: list[bytes]) -> tuple[str, None] | None:
        """The header-error for setting ``name`` to ``values``, or None."""
        if self.immutable:
            return ("immutable", None)
        if not _TOKEN.match(name) or any(_BAD_VALUE.search(v) for v in values):
            return ("invalid-syntax", None)
        if name.lower() in FORBIDDEN:
            return ("forbidden", None)
        added = sum(len(name) + len(v) for v in values)
        if len(self.entries) + len(values) > MAX_FIELDS or self.size + added > MAX_FIELD_BYTES:
            return ("invalid-syntax", None)  # no better case in 0.2.0; the cap is documented
        if not current().hold(added):
            return ("invalid-syntax", None)  # the request's MAX_HELD
        return None

    def get(self, name: str) -> list[bytes]:
        lower = name.lower()
        return [v for n, v in self.entries if n.lower() == lower]

    def delete(self, name: str) -> None:
        lower = name.lower()
        kept = [(n, v) for n, v in self.entries if n.lower() != lower]
        self.entries[:] = kept
        self.size = sum(len(n) + len(v) for n, v in kept)

    def append(self, name: str, value: bytes) -> None:
        self.entries.append((name, value))
        self.size += len(name) + len(value)


def _new_fields() -> int:
    return current().add(Fields())


def _from_list(entries: list[tuple[str, bytes]]) -> tuple[bool, object]:
    fields = Fields()
    for name, value in entries:
        error = fields.check(name, [value])
        if error is not None:
            return (False, error)
        fields.append(name, value)
    return (True, current().add(fields))


def _unit(error: tuple[str, None] | None) -> tuple[bool, object]:
    return (True, None) if error is None else (False, error)


def _set(rep: int, name: str, values: list[bytes]) -> tuple[bool, object]:
    fields = get(rep, Fields)
    error = fields.check(name, values)
    if error is None:
        fields.delete(name)
        for value in values:
            fields.append(name, value)
    return _unit(error)


def _delete(rep: int, name: str) -> tuple[bool, object]:
    fields = get(rep, Fields)
    error = ("immutable", None) if fields.immutable else None
    if error is None:
        fields.delete(name)
    return _unit(error)


def _append(rep: int, name: str, value: bytes) -> tuple[bool, object]:
    fields = get(rep, Fields)
    error = fields.check(name, [value])
    if error is None:
        fields.append(name, value)
    return _unit(error)


def _clone(rep: int) -> int:
    fields = get(rep, Fields)
    session = current()
    if not session.hold(fields.size):
        raise Trap("wasmlet: fields.clone past the request's cap on header bytes")
    return session.add(Fields(list(fields.entries)))


class IncomingRequest:
    __slots__ = ("consumed",)

    def __init__(self) -> None:
        self.consumed = False


class IncomingBody:
    """A body the guest reads: ``data`` the host holds, or ``source``, a request body still arriving."""

    __slots__ = ("data", "source", "streamed")

    def __init__(self, data: bytes, source: BodySource | None = None) -> None:
        self.data = data
        self.source = source
        self.streamed = False


class FutureTrailers:
    __slots__ = ("taken",)

    def __init__(self) -> None:
        self.taken = False


def _consume(rep: int) -> tuple[bool, object]:
    request = get(rep, IncomingRequest)
    if request.consumed:
        return (False, None)
    request.consumed = True
    session = current()
    return (True, session.add(IncomingBody(session.request.body, session.source)))


def _path_with_query(rep: int) -> str:
    get(rep, IncomingRequest)
    request = current().request
    return request.raw_path + (f"?{request.query}" if request.query else "")


def _authority(rep: int) -> str | None:
    get(rep, IncomingRequest)
    for name, value in current().headers:
        if name == "host":
            return value.decode("latin-1")
    return None


def _request_headers(rep: int) -> int:
    get(rep, IncomingRequest)
    session = current()
    return session.add(Fields(list(session.headers), immutable=True))


def body_stream(body: IncomingBody) -> tuple[bool, object]:
    if body.streamed:
        return (False, None)
    body.streamed = True
    stream = InputStream(body.data, body) if body.source is None else SourceStream(body.source, body)
    return (True, current().add(stream))


def _trailers_get(rep: int) -> object:
    future = get(rep, FutureTrailers)
    if future.taken:
        return (False, None)  # some(err): already taken
    future.taken = True
    return (True, (True, None))  # some(ok(ok(none))): no trailers


class OutgoingResponse:
    __slots__ = ("body_taken", "headers", "status")

    def __init__(self, headers: Fields) -> None:
        self.status = 200
        self.headers = headers
        self.body_taken = False


class OutgoingBody:
    """The response's body, or an outbound request's (``sink`` says where writes go)."""

    __slots__ = ("finished", "sink", "stream", "written")

    def __init__(self, sink: bytearray | None = None) -> None:
        self.sink = sink  # None: the response; a bytearray: an outbound request's body
        self.stream: OutputStream | None = None
        self.finished = False
        self.written = False


class ResponseOutparam:
    __slots__ = ()


def take_fields(rep: int) -> Fields:
    """An owned ``fields`` handed to a constructor: it leaves the table and becomes immutable."""
    fields = get(rep, Fields)
    current().objects.pop(rep, None)
    fields.immutable = True
    return fields


def _new_response(headers: int) -> int:
    return current().add(OutgoingResponse(take_fields(headers)))


def _set_status(rep: int, status: int) -> tuple[bool, None]:
    response = get(rep, OutgoingResponse)
    if not 100 <= status <= 599:
        return (False, None)
    response.status = status
    return (True, None)


def _response_body(rep: int) -> tuple[bool, object]:
    response = get(rep, OutgoingResponse)
    if response.body_taken:
        return (False, None)
    response.body_taken = True
    return (True, current().add(OutgoingBody()))


def _body_write(rep: int) -> tuple[bool, object]:
    body = get(rep, OutgoingBody)
    if body.written:
        return (False, None)
    body.written = True
    session = current()
    body.stream = OutputStream(session.write_body if body.sink is None else _capped(body.sink))
    return (True, session.add(body.stream))


MAX_OUTBOUND_BODY = 10 << 20  # bytes of one outbound request's body


def _capped(buffer: bytearray) -> Callable[[bytes], None]:
    def sink(data: bytes) -> None:
        if len(buffer) + len(data) > MAX_OUTBOUND_BODY or not current().hold(len(data)):
            raise Trap(f"wasmlet: an outbound request body went past {MAX_OUTBOUND_BODY} bytes "
                       "(or the request's bodies together past their cap)")
        buffer.extend(data)

    return sink


def _body_finish(rep: int, trailers: int | None) -> tuple[bool, object]:
    body = get(rep, OutgoingBody)
    session = current()
    session.objects.pop(rep, None)
    if trailers is not None:
        # Not sent: no trailers go out over the ASGI server wasmlet runs (see the module's docstring).
        dropped = get(trailers, Fields)
        session.objects.pop(trailers, None)
        log.debug("app=%s trailers dropped: %d field(s); responses carry no trailers", session.app,
                  len(dropped.entries))
    if not finish_body(body):
        return (False, ("HTTP-response-body-size", session.body_size))
    return (True, None)


def finish_body(body: OutgoingBody) -> bool:
    """Finish ``body``; False if the response's body does not match the Content-Length its guest declared."""
    body.finished = True
    if body.stream is not None:
        body.stream.open = False
    if body.sink is None:
        return current().finish_body()
    return True


def _drop_body(rep: int) -> None:
    body = drop(rep)
    if isinstance(body, OutgoingBody) and body.stream is not None:
        body.stream.open = False  # dropped without finish: the body is incomplete (see _handler)


def _outparam_set(rep: int, response: tuple[bool, object]) -> None:
    session = current()
    get(rep, ResponseOutparam)
    session.objects.pop(rep, None)
    if session.response is not None:
        raise Trap("wasmlet: response-outparam.set called twice")
    is_ok, payload = response
    if is_ok:
        assert isinstance(payload, int)
        session.response = get(payload, OutgoingResponse)
        session.objects.pop(payload, None)
        session.commit()  # streaming: the status and headers go out now
    else:
        session.response = ("error", payload)


# error-code: the cases this host produces (a variant is written by case name).
ERROR_CODE = abi.variant({
    "DNS-timeout": None,
    "destination-not-found": None,
    "destination-unavailable": None,
    "connection-refused": None,
    "connection-timeout": None,
    "HTTP-request-denied": None,
    "HTTP-request-method-invalid": None,
    "HTTP-request-URI-invalid": None,
    "HTTP-request-body-size": abi.option(abi.u64),
    "HTTP-response-body-size": abi.option(abi.u64),
    "HTTP-protocol-error": None,
    "internal-error": abi.option(abi.string),
})
HEADER_ERROR = abi.variant({"invalid-syntax": None, "forbidden": None, "immutable": None})
METHOD = abi.variant({name: None for name in _METHODS.values()} | {"other": abi.string})
SCHEME = abi.variant({"HTTP": None, "HTTPS": None, "other": abi.string})
_FIELDS = abi.own(ids.FIELDS)
_R_HEADER = abi.result(None, HEADER_ERROR)


def _entries(rep: int) -> list[tuple[str, bytes]]:
    return get(rep, Fields).entries


def _finish_incoming(rep: int) -> int:
    get(rep, IncomingBody)
    session = current()
    session.objects.pop(rep, None)
    return session.add(FutureTrailers())


def define_types(instance: wc.LinkerInstance) -> None:
    from ._outgoing import define_outgoing_types  # outbound resources share this interface

    r = abi.add_resource
    f = abi.add_func
    r(instance, "fields", ids.FIELDS, drop)
    r(instance, "incoming-request", ids.INCOMING_REQUEST, drop)
    r(instance, "incoming-body", ids.INCOMING_BODY, drop)
    r(instance, "future-trailers", ids.FUTURE_TRAILERS, drop)
    r(instance, "outgoing-response", ids.OUTGOING_RESPONSE, drop)
    r(instance, "outgoing-body", ids.OUTGOING_BODY, _drop_body)
    r(instance, "response-outparam", ids.RESPONSE_OUTPARAM, drop)
    f(instance, "http-error-code", lambda rep: None, abi.option(ERROR_CODE))
    f(instance, "[constructor]fields", _new_fields, _FIELDS)
    f(instance, "[static]fields.from-list", _from_list, abi.result(_FIELDS, HEADER_ERROR))
    f(instance, "[method]fields.get", lambda rep, name: get(rep, Fields).get(name), abi.list_of(abi.bytes_list))
    f(instance, "[method]fields.has", lambda rep, name: bool(get(rep, Fields).get(name)), abi.boolean)
    f(instance, "[method]fields.set", _set, _R_HEADER)
    f(instance, "[method]fields.delete", _delete, _R_HEADER)
    f(instance, "[method]fields.append", _append, _R_HEADER)
    f(instance, "[method]fields.entries", _entries, abi.list_of(abi.tuple_of(abi.string, abi.bytes_list)))
    f(instance, "[method]fields.clone", _clone, _FIELDS)
    f(instance, "[method]incoming-request.method",
      lambda rep: (get(rep, IncomingRequest), method_value(current().request.method))[1], METHOD)
    f(instance, "[method]incoming-request.path-with-query", _path_with_query, abi.option(abi.string))
    f(instance, "[method]incoming-request.scheme",
      lambda rep: (get(rep, IncomingRequest), scheme_value(current().request.scheme))[1], abi.option(SCHEME))
    f(instance, "[method]incoming-request.authority", _authority, abi.option(abi.string))
    f(instance, "[method]incoming-request.headers", _request_headers, _FIELDS)
    f(instance, "[method]incoming-request.consume", _consume, abi.result(abi.own(ids.INCOMING_BODY), None))
    f(instance, "[method]incoming-body.stream", lambda rep: body_stream(get(rep, IncomingBody)),
      abi.result(abi.own(ids.INPUT_STREAM), None))
    f(instance, "[static]incoming-body.finish", _finish_incoming, abi.own(ids.FUTURE_TRAILERS))
    f(instance, "[method]future-trailers.subscribe", lambda rep: current().add(READY), abi.own(ids.POLLABLE))
    f(instance, "[method]future-trailers.get", _trailers_get,
      abi.option(abi.result(abi.result(abi.option(_FIELDS), ERROR_CODE), None)))
    f(instance, "[constructor]outgoing-response", _new_response, abi.own(ids.OUTGOING_RESPONSE))
    f(instance, "[method]outgoing-response.status-code", lambda rep: get(rep, OutgoingResponse).status, abi.u16)
    f(instance, "[method]outgoing-response.set-status-code", _set_status, abi.result(None, None))
    f(instance, "[method]outgoing-response.headers",
      lambda rep: current().add(get(rep, OutgoingResponse).headers), _FIELDS)
    f(instance, "[method]outgoing-response.body", _response_body, abi.result(abi.own(ids.OUTGOING_BODY), None))
    f(instance, "[method]outgoing-body.write", _body_write, abi.result(abi.own(ids.OUTPUT_STREAM), None))
    f(instance, "[static]outgoing-body.finish", _body_finish, abi.result(None, ERROR_CODE))
    f(instance, "[static]response-outparam.set", _outparam_set)
    define_outgoing_types(instance)

