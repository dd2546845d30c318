"""``wasi:http/outgoing-handler`` 0.2 behind wasmlet's egress policy.

An outbound request goes through the very code WAGI's
``wasi_experimental_http`` uses (``_wasi_http``): the component's
``allowedOutboundHosts``, the DNS check, connections pinned to the checked
addresses, calls to other apps by name (``http://APP.COMPONENT.wasmlet``),
and every byte bounded by the request's deadline. A refusal is the WIT's
``error-code.HTTP-request-denied``.

A guest writes an outbound body *after* calling ``handle`` (it gets the
body's stream from the request before, and finishes it after), so ``handle``
only returns a ``future-incoming-response``; the request is sent when the
guest first waits on or asks the future for its answer (``get``,
``subscribe`` + ``block``/``poll``), by which time the body is finished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import wasmtime.component as wc

from ..._errors import EgressDenied
from ...plan import parse_target
from .. import _wasi_http as egress
from . import _abi as abi
from . import _ids as ids
from ._http import (
    ERROR_CODE,
    METHOD,
    SCHEME,
    Fields,
    IncomingBody,
    OutgoingBody,
    method_value,
    parse_method,
    parse_scheme,
    scheme_value,
    take_fields,
)
from ._io import Pollable
from ._state import current, drop, get

__all__ = ["define_outgoing_handler", "define_outgoing_types"]

log = logging.getLogger("wasmlet.egress")


class OutgoingRequest:
    __slots__ = ("authority", "body", "body_taken", "headers", "method", "path", "scheme")

    def __init__(self, headers: Fields) -> None:
        self.headers = headers
        self.method = "GET"
        self.path: str | None = None
        self.scheme: str | None = None
        self.authority: str | None = None
        self.body: OutgoingBody | None = None
        self.body_taken = False


class RequestOptions:
    __slots__ = ("between", "connect", "first")

    def __init__(self) -> None:
        self.connect: int | None = None
        self.first: int | None = None
        self.between: int | None = None


class IncomingResponse:
    __slots__ = ("body", "consumed", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[str, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.consumed = False


class FutureResponse:
    """The answer to one outbound request, fetched when first waited for."""

    __slots__ = ("outcome", "request", "taken")

    def __init__(self, request: OutgoingRequest) -> None:
        self.request = request
        self.outcome: tuple[bool, object] | None = None  # (True, IncomingResponse) or (False, error-code)
        self.taken = False

    def check(self, blocking: bool) -> bool:
        if self.outcome is not None:
            return True
        body = self.request.body
        if not blocking and body is not None and not body.finished:
            return False  # the guest is still writing the body
        self.outcome = _send(self.request)
        return True


def _send(request: OutgoingRequest) -> tuple[bool, object]:
    session = current()
    ctx = session.outbound
    scheme = request.scheme or "https"
    authority = request.authority
    if not authority:
        return (False, ("HTTP-request-URI-invalid", None))
    url = f"{scheme}://{authority}{request.path or '/'}"
    if ctx is None:
        session.denied.append(f"{url}: no allowedOutboundHosts")
        log.warning("app=%s egress denied: %s: the component has no allowedOutboundHosts", session.app, url)
        return (False, ("HTTP-request-denied", None))
    headers = [(n, v.decode("latin-1")) for n, v in request.headers.entries]
    sink = request.body.sink if request.body is not None else None
    body = bytes(sink) if sink is not None else b""
    try:
        if ctx.requests >= ctx.max_requests:
            return (False, ("internal-error", f"more than {ctx.max_requests} outbound requests in one invocation"))
        ctx.requests += 1
        try:
            target = parse_target(url)
        except ValueError:
            return (False, ("HTTP-request-URI-invalid", None))
        if target.scheme not in ("http", "https"):
            return (False, ("HTTP-request-URI-invalid", None))
        if target.host.endswith(egress.INTERNAL_SUFFIX):
            answer = egress._call_app(ctx, target, url, request.method, headers, body)
        else:
            try:
                checked = egress._resolve(ctx, target)
            except EgressDenied as exc:
                ctx.denied.append(str(exc))
                session.denied.append(str(exc))
                log.warning("app=%s egress denied: %s", ctx.app, exc)
                return (False, ("HTTP-request-denied", None))
            answer = egress._send(ctx, checked, url, request.method, headers, body)
    except egress._Fail as fail:
        if ctx.timed_out or time.monotonic() >= session.deadline:
            session.timed_out = True
            return (False, ("connection-timeout", None))
        code = fail.code
        if code == egress.HttpError.DESTINATION_NOT_ALLOWED:
            return (False, ("HTTP-request-denied", None))
        if code == egress.HttpError.INVALID_URL:
            return (False, ("HTTP-request-URI-invalid", None))
        return (False, ("destination-unavailable", None))
    encoded = [(n.lower(), v.encode("latin-1", "replace")) for n, v in answer.headers]
    return (True, IncomingResponse(answer.status, encoded, answer.body))


def _new_request(headers: int) -> int:
    return current().add(OutgoingRequest(take_fields(headers)))


def _request_body(rep: int) -> tuple[bool, object]:
    request = get(rep, OutgoingRequest)
    if request.body_taken:
        return (False, None)
    request.body_taken = True
    request.body = OutgoingBody(bytearray())
    return (True, current().add(request.body))


def _setter(attribute: str, parse: Callable[[Any], str] | None = None) -> Callable[[int, Any], tuple[bool, None]]:
    def set_(rep: int, value: Any) -> tuple[bool, None]:
        request = get(rep, OutgoingRequest)
        if parse is not None and value is not None:
            value = parse(value)
        if attribute == "method" and not egress._TOKEN.match(str(value)):
            return (False, None)
        setattr(request, attribute, value)
        return (True, None)

    return set_


def _handle(rep: int, options: int | None) -> tuple[bool, object]:
    session = current()
    request = get(rep, OutgoingRequest)
    session.objects.pop(rep, None)
    if options is not None:
        session.objects.pop(options, None)
    return (True, session.add(FutureResponse(request)))


def _future_get(rep: int) -> object:
    future = get(rep, FutureResponse)
    if future.outcome is None and not future.check(False):
        return None
    if future.taken:
        return (False, None)
    future.taken = True
    ok, value = future.outcome  # type: ignore[misc]
    if ok:
        return (True, (True, current().add(value)))
    return (True, (False, value))


def _response_consume(rep: int) -> tuple[bool, object]:
    response = get(rep, IncomingResponse)
    if response.consumed:
        return (False, None)
    response.consumed = True
    return (True, current().add(IncomingBody(response.body)))


def _get_timeout(attribute: str) -> Callable[[int], int | None]:
    return lambda rep: getattr(get(rep, RequestOptions), attribute)


def _set_timeout(attribute: str) -> Callable[[int, int | None], tuple[bool, None]]:
    def set_(rep: int, value: int | None) -> tuple[bool, None]:
        setattr(get(rep, RequestOptions), attribute, value)  # the deadline bounds every request anyway
        return (True, None)

    return set_


def define_outgoing_types(instance: wc.LinkerInstance) -> None:
    """The outbound half of ``wasi:http/types``."""
    r = abi.add_resource
    f = abi.add_func
    r(instance, "outgoing-request", ids.OUTGOING_REQUEST, drop)
    r(instance, "request-options", ids.REQUEST_OPTIONS, drop)
    r(instance, "incoming-response", ids.INCOMING_RESPONSE, drop)
    r(instance, "future-incoming-response", ids.FUTURE_INCOMING_RESPONSE, drop)
    unit = abi.result(None, None)
    f(instance, "[constructor]outgoing-request", _new_request, abi.own(ids.OUTGOING_REQUEST))
    f(instance, "[method]outgoing-request.body", _request_body, abi.result(abi.own(ids.OUTGOING_BODY), None))
    f(instance, "[method]outgoing-request.method",
      lambda rep: method_value(get(rep, OutgoingRequest).method), METHOD)
    f(instance, "[method]outgoing-request.set-method", _setter("method", parse_method), unit)
    f(instance, "[method]outgoing-request.path-with-query", lambda rep: get(rep, OutgoingRequest).path,
      abi.option(abi.string))
    f(instance, "[method]outgoing-request.set-path-with-query", _setter("path"), unit)
    f(instance, "[method]outgoing-request.scheme",
      lambda rep: (lambda s: None if s is None else scheme_value(s))(get(rep, OutgoingRequest).scheme),
      abi.option(SCHEME))
    f(instance, "[method]outgoing-request.set-scheme", _setter("scheme", parse_scheme), unit)
    f(instance, "[method]outgoing-request.authority", lambda rep: get(rep, OutgoingRequest).authority,
      abi.option(abi.string))
    f(instance, "[method]outgoing-request.set-authority", _setter("authority"), unit)
    f(instance, "[method]outgoing-request.headers", lambda rep: current().add(get(rep, OutgoingRequest).headers),
      abi.own(ids.FIELDS))
    f(instance, "[constructor]request-options", lambda: current().add(RequestOptions()), abi.own(ids.REQUEST_OPTIONS))
    for name, attribute in (("connect-timeout", "connect"), ("first-byte-timeout", "first"),
                            ("between-bytes-timeout", "between")):
        f(instance, f"[method]request-options.{name}", _get_timeout(attribute), abi.option(abi.u64))
        f(instance, f"[method]request-options.set-{name}", _set_timeout(attribute), unit)
    f(instance, "[method]incoming-response.status", lambda rep: get(rep, IncomingResponse).status, abi.u16)
    f(instance, "[method]incoming-response.headers",
      lambda rep: current().add(Fields(list(get(rep, IncomingResponse).headers), immutable=True)),
      abi.own(ids.FIELDS))
    f(instance, "[method]incoming-response.consume", _response_consume, abi.result(abi.own(ids.INCOMING_BODY), None))
    f(instance, "[method]future-incoming-response.subscribe",
      lambda rep: current().add(Pollable(check=get(rep, FutureResponse).check)), abi.own(ids.POLLABLE))
    f(instance, "[method]future-incoming-response.get", _future_get,
      abi.option(abi.result(abi.result(abi.own(ids.INCOMING_RESPONSE), ERROR_CODE), None)))


def define_outgoing_handler(instance: wc.LinkerInstance) -> None:
    abi.add_func(instance, "handle", _handle, abi.result(abi.own(ids.FUTURE_INCOMING_RESPONSE), ERROR_CODE))


