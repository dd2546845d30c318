"""uvicorn's httptools protocol, with the deadlines and caps it lacks for hostile clients.

uvicorn closes idle keep-alive connections, but nothing bounds a request while
it arrives: a client that sends half a header block, or nothing at all, holds
its connection forever, and a few thousand such clients fill the worker's
``limit_concurrency`` so every new request gets 503 (slowloris). Per worker
process, this protocol adds:

- a header deadline: a request's line and headers must be complete within
  ``header_timeout`` of the connection opening, or of the request's first byte
  on a kept-alive connection; past it a partial request gets 408 (RFC 9110
  section 15.5.9) and the connection closes;
- a cap on the bytes of an unfinished header block (``MAX_HEAD_BYTES``):
  httptools buffers a header until its end, so one endless header would grow
  the worker until the watchdog recycles it;
- a per-client connection cap: past ``client_connections`` open connections
  from one address (one IPv6 /64), a new one gets 503 and is closed at once.
  Trusted proxies (``--forwarded-allow-ips``) are exempt: every client behind
  them shares their address;
- a drain that does not reset a new connection: uvicorn's graceful shutdown closes at
  once every connection with no request under way, and one just accepted has had no
  chance to send its first request yet; if that request is in flight, the close resets
  it (RST: unread data), a failed request in every rolling restart that lands on that
  instant. Such a connection is given ``FRESH_GRACE`` for its request, which is
  answered with ``Connection: close``;
- lingering close: when a response goes out before its request body was read
  (404, 413, a refusal), uvicorn discards the rest of the body for as long as
  the client sends it, each byte postponing the keep-alive timeout. The
  connection is closed once the body ends, and at most ``LINGER`` seconds after
  the response, as nginx's ``lingering_close`` does.

It also writes each response with one system call where uvicorn makes two
(``_CorkedTransport``): uvicorn writes the status line and headers as soon as
the app sends ``http.response.start``, and the body on ``http.response.body``;
on loopback each ``send(2)`` wakes the client, and that wake-up was a tenth of
a hello request's CPU time in ``perf`` (``docs/benchmarks.md``).

The request body's own deadline and size are the ASGI app's (``_body``, ``_upload``).
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ._ratelimit import client_key

__all__ = ["FRESH_GRACE", "LINGER", "MAX_HEAD_BYTES", "TrustedProxies", "guarded_protocol"]

LINGER = 5.0  # seconds a connection stays open to discard an unread request body
FRESH_GRACE = 1.0  # seconds a draining worker waits for the first request of a connection it has just accepted
MAX_HEAD_BYTES = 512 * 1024  # an unfinished request line and headers (the app answers 431 above 32 KiB)


def _canned(status: bytes, cause: bytes, text: bytes, extra: bytes = b"") -> bytes:
    """A whole response written straight to the transport, before (or instead of) the ASGI app."""
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(text)).encode() + b"\r\nx-wasmlet-error: " + cause + b"\r\n" + extra
            + b"connection: close\r\n\r\n" + text)


_TOO_MANY = _canned(b"503 Service Unavailable", b"client-connections",
                    b"503 too many connections from this client\n", b"retry-after: 1\r\n")
_HEADER_TIMEOUT = _canned(b"408 Request Timeout", b"header-timeout", b"request headers not received in time\n")
_HEAD_TOO_LARGE = _canned(b"431 Request Header Fields Too Large", b"header-limit",
                          b"request header fields too large\n")


class TrustedProxies:
    """The proxies of ``--forwarded-allow-ips``: addresses and networks, or ``*`` for any."""

    def __init__(self, items: tuple[str, ...] = ()) -> None:
        self.any = "*" in items
        self.networks = tuple(ipaddress.ip_network(item, strict=False) for item in items if item != "*")

    def __contains__(self, address: str) -> bool:
        if self.any:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def __bool__(self) -> bool:
        return self.any or bool(self.networks)


class _CorkedTransport:
    """A transport whose writes wait for the end of the event loop's iteration.

    Everything written to a connection in one pass of the loop (a response's
    head and body, a pipelined batch of responses) leaves in one
    ``writelines``, i.e. one ``writev(2)`` in uvloop; closing flushes first.
    Anything else is the real transport's.

    A complete response waits for the pass's end too, rather than leaving the
    moment it is complete: the responses of one pass then leave back to back.
    On loopback each send wakes the client from the sender's softirq, and a
    client that has gone back to sleep costs a cross-CPU wake-up (an IPI, a VM
    exit under KVM). Measured with ``perf`` on one worker under ``wrk -t1 -c16``:
    ``writev`` took 13.7 % of the worker's CPU, 7.5 % of it waking the client,
    when every response left on its own; 4.6 % and 1.2 % once they leave
    together (docs/benchmarks.md section 22). A response waits
    at most for the rest of the pass: the other requests that were ready with
    it, each inline guest stopped at ``INLINE_BUDGET``.
    """

    __slots__ = ("_loop", "_pending", "_scheduled", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes) -> None:
        self._pending.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False  # a flush still scheduled finds nothing pending: harmless
        pending = self._pending
        if pending:
            self._pending = []
            if not self.transport.is_closing():
                self.transport.writelines(pending)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class _GuardedProtocol(HttpToolsProtocol):
    header_timeout: float
    client_connections: int
    trusted: TrustedProxies
    open_connections: collections.Counter[str]  # per client key, in this worker

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client_key: str | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._in_head = False  # a request has begun and its headers are not complete
        self._head_started = 0.0  # loop.time() when the current (or last) request's head began
        self._began = False  # a request has begun on this connection
        self._head_bytes = 0
        self._lingering = False
        self._draining = False  # shut down before its first request: that request is the last
        self._grace: asyncio.TimerHandle | None = None

    # Connection -------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _CorkedTransport(transport, self.loop)  # type: ignore[assignment]
        peer = self.client[0] if self.client else ""
        if peer and peer not in self.trusted:
            key = client_key(peer)
            if self.open_connections[key] >= self.client_connections:
                transport.write(_TOO_MANY)
                transport.close()
                return
            self.open_connections[key] += 1
            self._client_key = key
        self._head_started = self.loop.time()
        self._arm_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._deadline, self._linger, self._grace):
            if timer is not None:
                timer.cancel()
        self._deadline = self._linger = self._grace = None
        if self._client_key is not None:
            self.open_connections[self._client_key] -= 1
            if self.open_connections[self._client_key] <= 0:
                del self.open_connections[self._client_key]
            self._client_key = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            # Headers still incomplete after this chunk: it was all head (when the request
            # began in it, the previous request's tail is counted too, well inside the cap).
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(_HEAD_TOO_LARGE)

    # Parser callbacks ---------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        if self._began:  # a later request's head has its own time; the first's counts from the connection
            self._head_started = self.loop.time()
        self._began = True
        self._head_bytes = 0
        if self._deadline is None:
            self._arm_deadline()

    def on_headers_complete(self) -> None:
        # The deadline's timer is left to run: cancelling it here and arming it again at the
        # next request's first byte cost ~1.5 us a request. When it fires it looks at the head
        # under way then, if any (_header_deadline).
        self._in_head = False
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False  # answered with Connection: close, then closed (uvicorn)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._lingering:  # the rest of a body nobody read has arrived: do not reuse the connection
            self.transport.close()

    def on_response_complete(self) -> None:
        # With requests waiting in the pipeline, the cycle that finished is an older one,
        # whose body the parser has already read to its end.
        cycle = None if self.pipeline else self.cycle
        super().on_response_complete()  # the response leaves at the end of the pass (_CorkedTransport)
        if cycle is not None and cycle.more_body and not self.transport.is_closing():
            self._lingering = True
            self._linger = self.loop.call_later(LINGER, self.transport.close)

    def shutdown(self) -> None:
        """The worker drains (uvicorn calls this on each connection once it stops accepting).

        A connection with no request begun yet is not closed at once, as uvicorn would: its
        client may have sent its first request already (see the module's docstring). It gets
        ``FRESH_GRACE`` to start it. A kept-alive connection between requests is closed at once,
        as RFC 9112 section 9.6 lets a server do (its client retries on a new connection).
        """
        if self._began or self.transport.is_closing():
            super().shutdown()
            return
        self._draining = True
        if self._grace is None:
            self._grace = self.loop.call_later(FRESH_GRACE, self._grace_over)

    def _grace_over(self) -> None:
        self._grace = None
        if not self._began and not self.transport.is_closing():
            self.transport.close()

    # Deadlines ----------------------------------------------------------
    def _arm_deadline(self) -> None:
        self._deadline = self.loop.call_later(self.header_timeout, self._header_deadline)

    def _header_deadline(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if not self._in_head:
            if not self._began:  # not a byte of a request since the connection opened: nothing to answer
                self.transport.close()
            return  # between requests, or answering one: the next head arms the deadline again
        remaining = self._head_started + self.header_timeout - self.loop.time()
        if remaining > 0:  # this head began after the timer was armed (for an earlier one): its own time
            self._deadline = self.loop.call_later(remaining, self._header_deadline)
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # An earlier request on this connection is still being answered: finish it, then close.
            self.cycle.keep_alive = False
            return
        self._refuse(_HEADER_TIMEOUT)

    def _refuse(self, response: bytes) -> None:
        # Never in the middle of an earlier request's response (a pipelined request's head):
        # then the connection is only closed.
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(response)
        self.transport.close()


def guarded_protocol(header_timeout: float, client_connections: int,
                     trusted: TrustedProxies) -> type[asyncio.Protocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` with these limits (one worker's own counts)."""
    return type("GuardedHttpToolsProtocol", (_GuardedProtocol,), {
        "header_timeout": header_timeout,
        "client_connections": client_connections,
        "trusted": trusted,
        "open_connections": collections.Counter(),
    })
