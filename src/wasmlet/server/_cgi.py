"""The CGI view of an ASGI request: what a guest is told about the request it answers."""

from __future__ import annotations

from urllib.parse import quote

from ..guest import CgiRequest
from ._asgi_types import Scope

__all__ = ["cgi_request", "wire_path"]


def wire_path(scope: Scope, path: str) -> str:
    """The request path as sent, unless normalising changed it: then the normalised one, re-encoded,
    so that every view of the request (CGI variables, a forwarded request) agrees with the route taken."""
    raw = scope.get("raw_path")
    return raw.decode("latin-1") if raw and path == scope["path"] else quote(path, safe="/:@!$&'()*+,;=~")


def cgi_request(scope: Scope, headers: list[tuple[bytes, bytes]], path: str, body: bytes) -> CgiRequest:
    """The CGI view of a request routed on ``path``, its normalised form."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    return CgiRequest(
        method=scope["method"],
        path=path,
        raw_path=wire_path(scope, path),
        query=scope.get("query_string", b"").decode("latin-1"),
        headers=tuple([(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers]),
        body=body,
        scheme=scope.get("scheme", "http"),
        server_name=str(server[0]),
        server_port=int(server[1] or 80),
        remote_addr=str(client[0]),
        remote_port=int(client[1] or 0),
        http_version=scope.get("http_version", "1.1"),
    )
