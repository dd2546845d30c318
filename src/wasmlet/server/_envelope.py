"""What one host sends another over NATS: the forwarding envelope, subjects, and how to connect.

An envelope is one NATS message: ``WLF1``, a 4-byte big-endian length, that
many bytes of JSON metadata (method, path, headers, client address...; status
and headers for an answer), then the body. ``PROGRESS`` (``WLF1+``) is the
"still working" message a serving worker sends while the guest runs.
Everything decoded is checked (sizes, types, CR/LF in headers): any lattice
member can publish. Subjects are made from names that are RFC 1123 labels,
so no name can carry a ``.``, ``*`` or ``>`` into one (subject injection).
Pure but for ``connect_options``, which builds an ``ssl.SSLContext``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import ssl
import struct
from typing import Any

from ..plan import LatticeLink

__all__ = [
    "MAGIC",
    "MAX_META",
    "PROGRESS",
    "ForwardReply",
    "ForwardRequest",
    "MalformedEnvelope",
    "app_subject",
    "connect_options",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "error_reply",
    "is_idempotent",
    "valid_token",
]

MAGIC = b"WLF1"
PROGRESS = b"WLF1+"  # "still working": sent by the serving worker while the guest runs
_HEAD = struct.Struct(">I")
MAX_META = 64 * 1024  # bytes of JSON metadata in one envelope (request headers are capped at 32 KiB)
# RFC 9110 section 9.2.2: methods whose repetition has the effect of one request.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# A subject token made from a name: an RFC 1123 label (app and component names are two of them),
# so no name can carry a '.', '*', '>' or white space into a subject (subject injection).
_LABEL = re.compile(r"^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$")
_PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class MalformedEnvelope(ValueError):
    """A forwarded message that is not a valid envelope (its reason says what is wrong)."""


def valid_token(name: str) -> bool:
    return bool(_LABEL.match(name))


def app_subject(prefix: str, app: str) -> str:
    """``PREFIX.http.APP.COMPONENT`` for ``app`` = ``APP/COMPONENT``; ValueError for any other name."""
    if not _PREFIX.match(prefix):
        raise ValueError(f"lattice subject prefix {prefix!r}: expected letters, digits, '-' or '_' (one token)")
    name, slash, component = app.partition("/")
    if not slash or not valid_token(name) or not valid_token(component):
        raise ValueError(f"{app[:100]!r} is not an APP/COMPONENT name (two lower-case RFC 1123 labels)")
    return f"{prefix}.http.{name}.{component}"


def is_idempotent(method: str) -> bool:
    return method.upper() in _IDEMPOTENT


def connect_options(link: LatticeLink, name: str) -> dict[str, Any]:
    """Keyword arguments of ``nats.connect`` for ``link``: servers, auth and TLS the way NATS users give them.

    Reconnects never stop (a NATS server restarting is routine); a dead
    connection is noticed by the TCP close at once, or by two missed pings.
    """
    options: dict[str, Any] = {
        "servers": list(link.servers),
        "name": name,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.25,
        "connect_timeout": 2,
        "ping_interval": 5,
        "max_outstanding_pings": 2,
    }
    if link.creds:
        options["user_credentials"] = link.creds
    if link.user:
        options["user"], options["password"] = link.user, link.password
    if link.token:
        options["token"] = link.token
    if link.tls_ca or link.tls_cert or any(url.startswith("tls://") for url in link.servers):
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=link.tls_ca or None)
        if link.tls_cert:
            context.load_cert_chain(link.tls_cert, link.tls_key or None)
        options["tls"] = context
    return options


@dataclasses.dataclass(frozen=True)
class ForwardRequest:
    app: str
    method: str
    path: str  # normalised
    raw_path: str
    query: str
    headers: tuple[tuple[str, str], ...]  # latin-1 names (lower case) and values, as received
    scheme: str
    server: tuple[str, int]
    client: tuple[str, int]
    http_version: str
    body: bytes


@dataclasses.dataclass(frozen=True)
class ForwardReply:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    host: str = ""  # the host that answered ("" when the forwarding side answers itself)
    cause: str = ""  # the failure's short name ("" on success), as X-Wasmlet-Error
    retry: bool = False  # the request never reached a guest there: another host may take it


def _pack(meta: dict[str, Any], body: bytes) -> bytes:
    head = json.dumps(meta, separators=(",", ":")).encode()
    return b"".join((MAGIC, _HEAD.pack(len(head)), head, body))


def _unpack(data: bytes) -> tuple[dict[str, Any], bytes]:
    if len(data) < len(MAGIC) + _HEAD.size or not data.startswith(MAGIC):
        raise MalformedEnvelope("not a wasmlet forward envelope (bad magic)")
    (size,) = _HEAD.unpack_from(data, len(MAGIC))
    start = len(MAGIC) + _HEAD.size
    if size > MAX_META or start + size > len(data):
        raise MalformedEnvelope(f"metadata length {size} exceeds the message or {MAX_META} bytes")
    try:
        meta = json.loads(data[start:start + size])
    except ValueError as exc:
        raise MalformedEnvelope(f"metadata is not JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise MalformedEnvelope("metadata is not a JSON object")
    return meta, data[start + size:]


def _str(meta: dict[str, Any], key: str, limit: int = MAX_META) -> str:
    value = meta.get(key)
    if not isinstance(value, str) or len(value) > limit:
        raise MalformedEnvelope(f"{key}: expected a string of at most {limit} characters")
    return value


def _address(meta: dict[str, Any], key: str) -> tuple[str, int]:
    value = meta.get(key)
    if (not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], str) or len(value[0]) > 255
            or isinstance(value[1], bool) or not isinstance(value[1], int) or not 0 <= value[1] <= 65535):
        raise MalformedEnvelope(f"{key}: expected [host, port]")
    return value[0], value[1]


def _headers(meta: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    value = meta.get("headers")
    if not isinstance(value, list) or len(value) > 1000:
        raise MalformedEnvelope("headers: expected a list of at most 1000 [name, value] pairs")
    pairs = []
    for pair in value:
        if (not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], str)
                or not isinstance(pair[1], str)):
            raise MalformedEnvelope("headers: expected [name, value] string pairs")
        if any(ch in pair[0] + pair[1] for ch in "\r\n\0"):
            raise MalformedEnvelope("headers: a name or value holds CR, LF or NUL")
        pairs.append((pair[0], pair[1]))
    return tuple(pairs)


def encode_request(request: ForwardRequest) -> bytes:
    meta = {
        "app": request.app, "method": request.method, "path": request.path, "raw_path": request.raw_path,
        "query": request.query, "headers": [list(h) for h in request.headers], "scheme": request.scheme,
        "server": list(request.server), "client": list(request.client), "http_version": request.http_version,
    }
    return _pack(meta, request.body)


def decode_request(data: bytes) -> ForwardRequest:
    meta, body = _unpack(data)
    method = _str(meta, "method", 32)
    if not method.isalpha():
        raise MalformedEnvelope("method: expected letters")
    path = _str(meta, "path")
    if not path.startswith("/"):
        raise MalformedEnvelope("path: expected an absolute path")
    scheme = _str(meta, "scheme", 8)
    if scheme not in ("http", "https"):
        raise MalformedEnvelope("scheme: expected http or https")
    return ForwardRequest(
        app=_str(meta, "app", 200), method=method.upper(), path=path, raw_path=_str(meta, "raw_path"),
        query=_str(meta, "query"), headers=_headers(meta), scheme=scheme, server=_address(meta, "server"),
        client=_address(meta, "client"), http_version=_str(meta, "http_version", 8), body=body,
    )


def encode_response(reply: ForwardReply) -> bytes:
    meta = {"status": reply.status, "headers": [list(h) for h in reply.headers], "host": reply.host,
            "cause": reply.cause, "retry": reply.retry}
    return _pack(meta, reply.body)


def decode_response(data: bytes) -> ForwardReply:
    meta, body = _unpack(data)
    status = meta.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise MalformedEnvelope("status: expected an HTTP status code")
    retry = meta.get("retry", False)
    if not isinstance(retry, bool):
        raise MalformedEnvelope("retry: expected a boolean")
    return ForwardReply(status, _headers(meta), body, _str(meta, "host", 253), _str(meta, "cause", 64), retry)


def error_reply(status: int, cause: str, message: str, host: str = "", retry: bool = False) -> ForwardReply:
    body = f"{status} {cause}: {message}\n".encode()
    headers = (("content-type", "text/plain; charset=utf-8"), ("content-length", str(len(body))),
               ("x-wasmlet-error", cause))
    return ForwardReply(status, headers, body, host, cause, retry)
