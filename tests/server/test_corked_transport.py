"""Responses leave in one write: what is written in one pass of the event loop goes out together."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from tests.conftest import EXAMPLES, Server

from wasmlet.server._protocol import _CorkedTransport


class _Recorder:
    """The transport calls a ``_CorkedTransport`` makes (a pure test of its logic)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.closing = False

    def writelines(self, data: list[bytes]) -> None:
        self.calls.append(("writelines", list(data)))

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def close(self) -> None:
        self.calls.append(("close", None))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str) -> object:
        return f"extra:{name}"


def test_writes_of_one_pass_leave_in_one_call_at_its_end() -> None:
    async def main() -> list[tuple[str, object]]:
        real = _Recorder()
        corked = _CorkedTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        corked.write(b"HTTP/1.1 200 OK\r\n\r\n")
        corked.write(b"hello")
        assert real.calls == []  # nothing yet: the pass is not over
        await asyncio.sleep(0)
        corked.write(b"next")
        await asyncio.sleep(0)
        return real.calls

    assert asyncio.run(main()) == [("writelines", [b"HTTP/1.1 200 OK\r\n\r\n", b"hello"]),
                                   ("writelines", [b"next"])]


def test_flush_sends_at_once_and_close_flushes_first() -> None:
    async def main() -> list[tuple[str, object]]:
        real = _Recorder()
        corked = _CorkedTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        corked.write(b"a")
        corked.flush()  # out now, not at the end of the pass (what close() does first)
        assert real.calls == [("writelines", [b"a"])]
        corked.write(b"b")
        corked.close()
        await asyncio.sleep(0)  # the flush still scheduled finds nothing
        assert corked.get_extra_info("peername") == "extra:peername"  # the rest is the real transport's
        return real.calls

    assert asyncio.run(main()) == [("writelines", [b"a"]), ("writelines", [b"b"]), ("close", None)]


def test_nothing_is_written_to_a_closing_transport() -> None:
    async def main() -> list[tuple[str, object]]:
        real = _Recorder()
        corked = _CorkedTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        corked.write(b"late")
        real.closing = True  # the peer went away meanwhile
        await asyncio.sleep(0)
        return real.calls

    assert asyncio.run(main()) == []


def test_pipelined_requests_get_their_responses_in_order(serve: Callable[..., Server]) -> None:
    """Several requests in one packet: each response whole and in order, though they leave together."""
    server = serve(str(EXAMPLES / "hello" / "app.yaml"))
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    last = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: the-last\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request * 3 + last)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    responses = data.split(b"HTTP/1.1 ")[1:]
    assert [r.split(b"\r\n", 1)[0] for r in responses] == [b"200 OK"] * 4
    assert all(r.endswith(b"\r\n\r\nHello, world!\n") for r in responses)  # each whole, nothing interleaved
    assert b"x-request-id: the-last" in responses[3]
