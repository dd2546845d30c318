"""Issue 14, High 2: the request deadline holds inside host calls, and one app cannot hold the guest threads.

Against a real `wasmlet serve` on loopback. The attacks: a guest that sleeps in
`poll_oneoff` past its 2 s timeout (answered after 8 s before), an allowed
upstream that trickles one byte a second (answered after 12 s before: the
outbound timeout was per read), and two apps each sent twelve slow requests
while another app is asked (its `/hello` waited for their guests to end).
Timings are asserted only as generous bounds that prove a deadline holds.
"""

from __future__ import annotations

import concurrent.futures
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import EXAMPLES, GUESTS, Server, write_manifest

Serve = Callable[..., Server]
SECURITY = GUESTS / "security"


class Trickle:
    """An upstream that answers one byte a second: headers, then a 12-byte body (or the headers themselves)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.served = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                request = conn.recv(65536)
                self.served += 1
                head = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"
                if b"/headers" in request:  # trickle the status line and headers too
                    data, pause = head + b"x" * 12, 1.0
                else:
                    conn.sendall(head)
                    data, pause = b"x" * 12, 1.0
                for byte in data:  # bounded: 12 s (or 50 s for the headers) at most, and stops with the test
                    if self.stop.wait(pause):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def trickle() -> Iterator[Trickle]:
    upstream = Trickle()
    yield upstream
    upstream.close()


@pytest.fixture
def host(serve: Serve, tmp_path: Path, trickle: Trickle) -> Server:
    components: list[dict[str, object]] = [
        {"name": "hello", "properties": {"moduleURL": str(EXAMPLES / "hello" / "hello.wasm"), "route": "/hello"}},
        {"name": "sleep", "properties": {"moduleURL": str(SECURITY / "sleep.wasm"), "route": "/sleep",
                                         "timeout": "2s"}},
        {"name": "egress", "properties": {
            "moduleURL": str(SECURITY / "http_get.wasm"), "route": "/egress", "timeout": "2s",
            "capabilities": {"allowedOutboundHosts": [f"http://127.0.0.1:{trickle.port}"]}}},
        # Two apps a client fills with slow requests (each guest sleeps 4 s, within its timeout).
        {"name": "slow-a", "properties": {"moduleURL": str(SECURITY / "sleep.wasm"), "route": "/slow-a",
                                          "timeout": "8s"}},
        {"name": "slow-b", "properties": {"moduleURL": str(SECURITY / "sleep.wasm"), "route": "/slow-b",
                                          "timeout": "8s"}},
    ]
    return serve(str(write_manifest(tmp_path / "deadlines.yaml", components, name="d")), workers=1)


def timed(url: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.get(url, timeout=30)
    return response, time.monotonic() - started


@pytest.mark.parametrize("query", ["rel=8000", "mono=8000", "real=8000"])
def test_a_guest_sleeping_past_its_deadline_gets_504_at_the_deadline(host: Server, query: str) -> None:
    # nanosleep, and clock_nanosleep with an absolute monotonic or wall-clock time: each a poll_oneoff clock.
    response, took = timed(f"{host.url}/sleep?{query}")
    assert response.status_code == 504 and response.headers["x-wasmlet-error"] == "timeout"
    assert 1.5 < took < 4.0, took  # the 2 s deadline, not the guest's 8 s


@pytest.mark.parametrize("query", ["rel=200", "mono=200", "real=200", "stdin=8000"])
def test_sleeps_within_the_deadline_still_answer(host: Server, query: str) -> None:
    # A short sleep sleeps as asked; a poll on stdin (ready at once) returns at once, its 8 s timeout unused.
    response, took = timed(f"{host.url}/sleep?{query}")
    assert response.status_code == 200, response.text
    assert response.text.endswith("rc=1\n" if query.startswith("stdin") else "rc=0\n"), response.text
    assert took < 1.9, took


@pytest.mark.parametrize("path", ["/body", "/headers"])
def test_an_upstream_that_trickles_cannot_stretch_the_deadline(host: Server, trickle: Trickle, path: str) -> None:
    response, took = timed(f"{host.url}/egress?http://127.0.0.1:{trickle.port}{path}")
    assert trickle.served == 1
    assert response.status_code == 504 and response.headers["x-wasmlet-error"] == "timeout", response.text
    assert took < 4.0, took  # the 2 s deadline, not 12 s of one-byte reads


def test_slow_requests_to_two_apps_leave_threads_for_a_third(host: Server) -> None:
    """Twelve 4-second requests to each of two apps (24 for 16 guest threads); /hello answers at once."""
    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        slow = [pool.submit(timed, f"{host.url}/slow-{app}?rel=4000") for app in "ab" for _ in range(12)]
        time.sleep(0.8)  # every slow request has reached its guest, or is waiting for a thread
        assert not any(f.done() for f in slow)
        hello = [timed(f"{host.url}/hello") for _ in range(5)]
        results = [f.result() for f in slow]
    assert all(response.status_code == 200 for response, _ in hello)
    assert max(took for _, took in hello) < 1.5, [round(took, 2) for _, took in hello]  # not ~4 s behind them
    # The slow ones ran (or, past the wait for a thread, were told to come back): none was lost.
    assert {response.status_code for response, _ in results} <= {200, 503}
    assert sum(response.status_code == 200 for response, _ in results) >= 16
