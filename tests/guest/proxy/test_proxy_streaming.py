"""A wasi:http/proxy component's response is streamed to the client as the guest writes it.

A real ``wasmlet serve`` on loopback and real clients (httpx, and a raw socket
for a client that does not read). The guest's ``/drip?N`` writes a line, then
sleeps 300 ms on a monotonic-clock pollable, N times: what a buffering host
could only send after the last sleep.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from tests.conftest import GUESTS, Server, serving, write_manifest

PROXY = GUESTS / "components" / "proxy_guest.wasm"
TICK = 0.3  # the guest's sleep between two lines of /drip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp_path = tmp_path_factory.mktemp("proxy-streaming")
    manifest = write_manifest(tmp_path / "m.yaml", [
        {"name": "stream", "properties": {"moduleURL": str(PROXY), "route": "/", "timeout": "20s"}},
        # A 2 s deadline: /drip?100 runs into it mid-stream.
        {"name": "short", "properties": {"moduleURL": str(PROXY), "route": "/short", "timeout": "2s"}},
        # A cap far above what loopback socket buffers hold: a flood to a client that does not
        # read blocks on the full queue and ends at the deadline, not at the cap.
        {"name": "slow", "properties": {"moduleURL": str(PROXY), "route": "/slow", "timeout": "2s",
                                        "maxResponseSize": "256Mi"}},
        {"name": "trap", "properties": {"moduleURL": str(PROXY), "route": "/trap"}},
        {"name": "length", "properties": {"moduleURL": str(PROXY), "route": "/length"}},
    ], name="st")
    with serving(manifest, tmp_path) as server:
        yield server


def _wait_for_log(server: Server, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.output():
        assert time.monotonic() < deadline, f"{text!r} not logged"
        time.sleep(0.05)


def _serves(server: Server) -> None:
    assert httpx.get(server.url + "/hello", timeout=10).text == "hello\n"


def test_the_first_chunk_arrives_while_the_guest_still_runs(server: Server) -> None:
    reads: list[tuple[float, bytes]] = []
    with httpx.stream("GET", server.url + "/drip?5", timeout=30) as reply:
        headers_at = time.monotonic()
        assert reply.status_code == 200
        assert reply.headers["transfer-encoding"] == "chunked" and "content-length" not in reply.headers
        reads.extend((time.monotonic(), chunk) for chunk in reply.iter_raw())
    body = b"".join(chunk for _, chunk in reads)
    assert body == b"".join(b"tick %d\n" % i for i in range(5))
    assert reads[0][1] == b"tick 0\n"  # alone: the rest was not written yet
    # After the first line the guest sleeps at least 4 x 300 ms before it finishes: a host that
    # buffered would have sent all five lines at once, after those sleeps.
    assert reads[-1][0] - reads[0][0] >= 4 * TICK * 0.9
    assert reads[0][0] - headers_at < 4 * TICK * 0.9
    assert len(reads) >= 5


def test_a_trap_mid_stream_cuts_the_response_short_and_the_host_serves_on(server: Server) -> None:
    with httpx.stream("GET", server.url + "/trap/driptrap", timeout=30) as reply:
        assert reply.status_code == 200
        chunks = reply.iter_raw()
        assert next(chunks) == b"partial\n"  # sent before the guest trapped, 300 ms later
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in chunks:
                pass
    _wait_for_log(server, "app=st/trap cause=trap status=500")
    assert "mid-stream; the response was cut short" in server.output()
    _serves(server)


def test_a_deadline_mid_stream_cuts_the_response_short(server: Server) -> None:
    started = time.monotonic()
    got = b""
    with httpx.stream("GET", server.url + "/short/drip?100", timeout=30) as reply:
        assert reply.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            for chunk in reply.iter_raw():
                got += chunk
    assert time.monotonic() - started < 8  # the deadline is 2 s; 100 lines would take 30 s
    assert got.startswith(b"tick 0\ntick 1\n")
    _wait_for_log(server, "app=st/short cause=timeout status=504")
    _serves(server)


def test_a_client_that_does_not_read_holds_the_guest_only_until_its_deadline(server: Server) -> None:
    started = time.monotonic()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(20)
    sock.connect(("127.0.0.1", server.port))
    try:
        sock.sendall(b"GET /slow/flood HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        _serves(server)  # the guest blocks on the full queue: everything else is served meanwhile
        # The guest waits for room up to its 2 s deadline, then is stopped: not at the 256 MiB cap.
        _wait_for_log(server, "app=st/slow cause=timeout status=504")
        assert time.monotonic() - started < 10
        received = bytearray()
        while chunk := sock.recv(1 << 20):  # the connection closes once what was queued is read
            received += chunk
        assert time.monotonic() - started < 20
    finally:
        sock.close()
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head
    assert 0 < len(body) < 64 << 20  # what the buffers held, far below the cap
    assert not body.endswith(b"0\r\n\r\n")  # no last chunk: the client can tell it is incomplete
    _serves(server)


def test_an_honest_content_length_is_kept(server: Server) -> None:
    reply = httpx.get(server.url + "/length/length?6", timeout=10)
    assert reply.status_code == 200 and reply.content == b"hello\n"
    assert reply.headers["content-length"] == "6" and "transfer-encoding" not in reply.headers


@pytest.mark.parametrize("written", [3, 12])
def test_a_body_that_does_not_match_its_content_length_is_cut_short(server: Server, written: int) -> None:
    with httpx.stream("GET", f"{server.url}/length/length?{written}", timeout=10) as reply:
        assert reply.status_code == 200 and reply.headers["content-length"] == "6"
        with pytest.raises(httpx.RemoteProtocolError):
            reply.read()
    _wait_for_log(server, "app=st/length cause=bad-response status=502")
    _serves(server)


def test_head_keeps_the_length_a_get_would_have(server: Server) -> None:
    reply = httpx.head(server.url + "/hello", timeout=10)
    assert reply.status_code == 200 and reply.headers["content-length"] == "6" and reply.content == b""


def test_bodiless_statuses_stream_no_body(server: Server) -> None:
    for status in (204, 304):
        reply = httpx.get(f"{server.url}/status?{status}", timeout=10)
        assert reply.status_code == status and reply.content == b""
        assert "transfer-encoding" not in reply.headers and "content-length" not in reply.headers
    _serves(server)  # the kept-alive connection is not confused by a stray body
