"""The answers the host writes itself (errors, refusals), and the framing every answer gets."""

from __future__ import annotations

import logging

from .._errors import Rejected
from ._asgi_types import Send
from ._body import BodyRefused

__all__ = ["CLIENT_CLOSED", "Send", "framed", "log_stderr", "refuse", "refuse_body", "respond"]

guest_log = logging.getLogger("wasmlet.guest")


CLIENT_CLOSED = 499  # recorded (never sent) when a client leaves before its request is complete, as nginx does

_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
# Responses without content (RFC 9110 section 6.4.1): no body, and no Content-Length for
# 204 (section 8.6); a 304's would have to be the one a 200 would carry, which is unknown here.
_NO_CONTENT = frozenset({204, 304})


async def respond(
    send: Send, status: int, body: bytes, cause: bytes | None = None, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A plain-text answer of the host's own; ``cause`` goes in ``X-Wasmlet-Error``."""
    headers = [*_TEXT, (b"content-length", str(len(body)).encode())]
    if cause is not None:
        headers.append((b"x-wasmlet-error", cause))
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def refuse(send: Send, exc: Rejected, request_id: str) -> None:
    """The answer to a request admission refused (rate limit, open breaker, overload)."""
    await respond(send, exc.status, f"{exc.status} {exc.cause}\n".encode(), cause=exc.cause.encode(),
                  extra=[(b"retry-after", exc.retry_after_header), (b"x-request-id", request_id.encode("latin-1"))])


async def refuse_body(send: Send, refused: BodyRefused, ids: list[tuple[bytes, bytes]]) -> None:
    """The answer to a request whose body was refused (413, 503 or 408)."""
    extra = [(b"retry-after", b"1"), *ids] if refused.retry_after else ids
    await respond(send, refused.status, refused.message, cause=refused.cause.encode(), extra=extra)


def framed(status: int, headers: list[tuple[bytes, bytes]], body: bytes,
           method: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body as they may go on the wire for ``status``.

    Never a body after a response that has none (204, 304): on a kept-alive connection
    the client would read it as the answer to its next request (response splitting).
    HEAD gets the length a GET would have (RFC 9110 section 9.3.2), without the content.
    """
    if status in _NO_CONTENT:
        return headers, b""
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    return headers, b"" if method == "HEAD" else body


def log_stderr(stderr: bytes, fields: dict[str, str]) -> None:
    """A guest's stderr, one log line per line, with the request's fields."""
    for line in stderr.decode("utf-8", "replace").splitlines():
        guest_log.info("app=%s stderr: %s", fields["app"], line, extra=fields)
