"""An httpcore network backend whose every socket operation ends by one deadline.

httpx's timeouts are per operation: a read timeout of 10 s lets an upstream
that sends one byte a second hold a request for as long as it likes, each
read being quick. An outbound call from a guest must end with the guest's
request, so every connect, TLS handshake, read and write here gets the time
left until ``DeadlineClock.deadline`` (or its own timeout, if shorter), and
fails with httpcore's timeout error once none is left.

A read is one ``recv`` and a TLS handshake is bounded as a whole by CPython
(``ssl``, since 3.5); a write is split into pieces of ``_PIECE`` bytes, each
given the time left, so a reader that stalls cannot stretch a large body.
"""

from __future__ import annotations

import math
import ssl
import time
import typing

import httpcore

__all__ = ["DeadlineBackend", "DeadlineClock"]

_PIECE = 16 * 1024


class DeadlineClock:
    """The ``time.monotonic()`` deadline of the request being sent (set before each send)."""

    __slots__ = ("deadline",)

    def __init__(self, deadline: float = math.inf) -> None:
        self.deadline = deadline

    def left(self, timeout: float | None, error: type[Exception]) -> float:
        """The time an operation may take: ``timeout`` capped by the deadline; ``error`` if none is left."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise error("the guest's deadline has passed")
        return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, clock: DeadlineClock) -> None:
        self._inner = inner
        self._clock = clock

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._clock.left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        view = memoryview(buffer)
        while view:
            piece, view = view[:_PIECE], view[_PIECE:]
            self._inner.write(bytes(piece), self._clock.left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, self._clock.left(timeout, httpcore.ConnectTimeout))
        return DeadlineStream(inner, self._clock)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """``httpcore.SyncBackend`` with every operation bounded by ``clock``."""

    def __init__(self, clock: DeadlineClock) -> None:
        self._clock = clock
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, self._clock.left(timeout, httpcore.ConnectTimeout),
                                         local_address, socket_options)
        return DeadlineStream(stream, self._clock)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None
                            ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("guests reach TCP addresses only")

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, min(seconds, self._clock.deadline - time.monotonic())))
