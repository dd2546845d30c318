"""The static-hello floor: a trivial ASGI app answering hello, served by the same HTTP server as wasmlet.

``bench/http_hello.py`` runs it under uvicorn with wasmlet's worker settings
(uvloop, httptools, no access log, Date header) to show what the HTTP stack
alone costs per request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"14")]
_BODY = b"Hello, world!\n"


async def app(scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]],
              send: Callable[[MutableMapping[str, Any]], Awaitable[None]]) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})
