"""A wasi:http/proxy component's request body is streamed in: the guest reads it as it arrives.

A real ``wasmlet serve`` on loopback, ``proxy_stream.wasm`` (``proxy_stream.c``)
and real clients: raw sockets where the client must send part of a body, then
wait (for the echo of what it sent, or forever), then go on; httpx otherwise.
A host that read the whole body before starting the guest fails the echo tests:
the echo of the first chunk would only come after the last one was sent.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import GUESTS, Server, serving, write_manifest

STREAM = GUESTS / "components" / "proxy_stream.wasm"
CAP = 2 << 20  # maxBodySize of the app at /
SMALL_CAP = 64 << 10  # ... and of the one at /small


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp_path = tmp_path_factory.mktemp("proxy-upload")
    manifest = write_manifest(tmp_path / "m.yaml", [
        {"name": "up", "properties": {"moduleURL": str(STREAM), "route": "/", "timeout": "20s",
                                      "maxBodySize": "2Mi", "maxResponseSize": "4Mi"}},
        {"name": "small", "properties": {"moduleURL": str(STREAM), "route": "/small", "timeout": "20s",
                                         "maxBodySize": "64Ki"}},
        # A 2 s deadline: a client that stalls mid-body holds its guest no longer.
        {"name": "stall", "properties": {"moduleURL": str(STREAM), "route": "/stall", "timeout": "2s"}},
    ], name="ul")
    # Two guest threads: a guest that leaked its worker thread would soon leave none for the next requests.
    with serving(manifest, tmp_path, WASMLET_THREADS="2") as server:
        yield server


def _wait_for_log(server: Server, text: str, timeout: float = 10, times: int = 1) -> None:
    deadline = time.monotonic() + timeout
    while server.output().count(text) < times:
        assert time.monotonic() < deadline, f"{text!r} not logged"
        time.sleep(0.05)


def _serves(server: Server) -> None:
    for _ in range(4):  # more requests than guest threads: none is held by an earlier request
        assert httpx.get(server.url + "/hello", timeout=10).text == "hello\n"


def _dechunk(body: bytes) -> bytes:
    """A whole chunked body (RFC 9112 section 7.1), decoded."""
    out = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return out
        out, body = out + body[:size], body[size + 2:]


class _Raw:
    """One HTTP/1.1 request over a raw socket, its body sent in parts, its response read as it comes."""

    def __init__(self, server: Server, path: str, framing: str = "transfer-encoding: chunked") -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
        self.sock.sendall(f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{framing}\r\n\r\n".encode())
        self.received = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def chunk(self, data: bytes) -> None:
        self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))

    def until(self, marker: bytes) -> bytes:
        """What has arrived once ``marker`` is in it (the socket's 15 s timeout bounds the wait)."""
        while marker not in self.received:
            data = self.sock.recv(65536)
            assert data, f"connection closed before {marker!r}; got {self.received!r}"
            self.received += data
        return self.received

    def rest(self) -> bytes:
        """Everything until the server closes the connection cleanly (FIN, not a reset: that raises)."""
        while data := self.sock.recv(65536):
            self.received += data
        return self.received

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("path", ["/echo", "/blocking"])
def test_the_guest_echoes_each_chunk_before_the_next_is_sent(server: Server, path: str) -> None:
    raw = _Raw(server, path)
    try:
        raw.chunk(b"first-chunk\n")
        head = raw.until(b"first-chunk\n")  # echoed while the client has sent nothing more
        assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
        raw.chunk(b"second-chunk\n")
        raw.until(b"second-chunk\n")
        raw.chunk(b"")  # the last chunk: the body ends
        reply = raw.until(b"\r\n0\r\n\r\n")  # ... and so does the response
    finally:
        raw.close()
    body = reply.partition(b"\r\n\r\n")[2]
    assert body.index(b"first-chunk") < body.index(b"second-chunk")


def test_a_sized_body_streams_in_too(server: Server) -> None:
    raw = _Raw(server, "/echo", "content-length: 12")
    try:
        raw.send(b"abcdef")
        raw.until(b"abcdef")
        raw.send(b"ghijkl")
        reply = raw.until(b"\r\n0\r\n\r\n")
    finally:
        raw.close()
    assert reply.partition(b"\r\n\r\n")[2] == b"6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n"


@pytest.mark.parametrize("size", [0, 1 << 20, CAP])
@pytest.mark.parametrize("path", ["/echo", "/blocking"])
def test_bodies_up_to_the_cap_echo(server: Server, path: str, size: int) -> None:
    body = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    reply = httpx.post(server.url + path, content=body, timeout=30)
    assert reply.status_code == 200 and reply.content == body


@pytest.mark.parametrize("chunked", [False, True])
def test_counted_and_skipped_bodies_up_to_the_cap(server: Server, chunked: bool) -> None:
    body = b"y" * CAP
    content = iter([body[i:i + 100_000] for i in range(0, CAP, 100_000)]) if chunked else body
    assert httpx.post(server.url + "/count", content=content, timeout=30).text == f"{CAP} bytes, closed\n"
    content = iter([body[i:i + 100_000] for i in range(0, CAP, 100_000)]) if chunked else body
    assert httpx.post(server.url + "/skip", content=content, timeout=30).text == f"skipped {CAP} bytes, closed\n"


def test_a_declared_length_over_the_cap_is_refused_before_the_guest_starts(server: Server) -> None:
    reply = httpx.post(server.url + "/small/count", content=b"x" * (SMALL_CAP + 1), timeout=30)
    assert reply.status_code == 413 and reply.headers["x-wasmlet-error"] == "body-limit"
    _serves(server)


def test_a_chunked_body_over_the_cap_mid_stream_is_413(server: Server) -> None:
    chunks = iter([b"z" * 16_384] * 8)  # 128 KiB, no length: the cap of 64 KiB is crossed while the guest reads
    reply = httpx.post(server.url + "/small/count", content=chunks, timeout=30)
    assert reply.status_code == 413 and reply.headers["x-wasmlet-error"] == "body-limit"
    _wait_for_log(server, "app=ul/small cause=body-limit the request body failed before the guest answered")
    _serves(server)


def test_a_body_over_the_cap_after_the_response_started_is_a_stream_error_for_the_guest(server: Server) -> None:
    raw = _Raw(server, "/small/echo")
    try:
        raw.chunk(b"a" * 40_000)
        raw.until(b"a" * 100)  # the guest committed its response and echoes
        raw.chunk(b"b" * 40_000)  # 80,000 bytes: past the cap of 65,536
        reply = raw.rest()  # the guest ends its response; the connection closes (the rest was never read)
    finally:
        raw.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    echoed = _dechunk(body)  # what the guest read before the cap was crossed; what was queued then is dropped
    assert echoed.startswith(b"a" * 40_000) and len(echoed) <= SMALL_CAP
    _wait_for_log(server, f"stderr: body error after {len(echoed)} bytes: error: the request body is larger than "
                          f"its cap of {SMALL_CAP} bytes")
    _serves(server)


def test_a_client_that_stalls_mid_body_gets_504_at_the_deadline(server: Server) -> None:
    started = time.monotonic()
    raw = _Raw(server, "/stall/count", "content-length: 1000")
    try:
        raw.send(b"x" * 100)  # and then nothing
        _serves(server)  # meanwhile everything else is served
        head = raw.until(b"\r\n\r\n")
        answered = time.monotonic() - started
    finally:
        raw.close()
    assert head.startswith(b"HTTP/1.1 504") and b"x-wasmlet-error: timeout" in head
    assert answered < 2 + 3  # the deadline is 2 s: the stalled client held the guest no longer
    _wait_for_log(server, "app=ul/stall cause=timeout status=504")
    _serves(server)


def test_a_client_that_leaves_mid_body_is_a_stream_error_and_leaks_no_worker(server: Server) -> None:
    before = server.output().count("body error after 10 bytes: error: the client closed the connection")
    for attempt in range(3):  # more than the worker's two guest threads
        raw = _Raw(server, f"/echo?{attempt}")
        try:
            raw.chunk(b"partial-%d\n" % attempt)
            raw.until(b"partial-%d\n" % attempt)
        finally:
            raw.close()  # mid-body: no last chunk
        _wait_for_log(server, "body error after 10 bytes: error: the client closed the connection",
                      times=before + attempt + 1)
    raw = _Raw(server, "/count")  # the guest has not answered yet: nobody is answered
    try:
        raw.chunk(b"partial")
        time.sleep(0.2)
    finally:
        raw.close()
    _wait_for_log(server, "app=ul/up cause=client-closed the request body failed before the guest answered")
    _serves(server)


def test_a_guest_that_never_reads_the_body_answers_and_the_connection_is_closed_cleanly(server: Server) -> None:
    reply = httpx.post(server.url + "/ignore", content=b"q" * (1 << 20), timeout=30)
    assert reply.status_code == 200 and reply.text == "ignored\n"
    raw = _Raw(server, "/ignore", "content-length: 100000")
    try:
        raw.send(b"q" * 1000)  # the guest answers before the rest of the body is sent
        raw.until(b"ignored\n")
        # The rest is discarded as it comes; once it has all come the connection is closed (the
        # server protocol's lingering close: a connection with an unread body is not reused).
        raw.send(b"q" * 99_000)
        assert raw.rest().count(b"HTTP/1.1") == 1
    finally:
        raw.close()
    _serves(server)


def test_request_trailers_resolve_to_none_and_response_trailers_are_dropped(server: Server) -> None:
    raw = _Raw(server, "/trailers")
    try:
        raw.chunk(b"abc")
        raw.send(b"0\r\nx-sent: 1\r\n\r\n")  # a request trailer section: ASGI carries none to the guest
        reply = raw.until(b"\r\n0\r\n\r\n")
    finally:
        raw.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    # The guest finished its body with trailers: the body is delivered whole, without them.
    assert body == b"17\r\n3 bytes, trailers=none\n\r\n0\r\n\r\n"
    assert b"x-checksum" not in reply


def test_stalled_uploads_hold_a_queue_each_of_the_body_budget_and_give_it_back(
        serve: Callable[..., Server], tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.yaml", [
        {"name": "stall", "properties": {"moduleURL": str(STREAM), "route": "/", "timeout": "3s"}}], name="bm")
    server = serve(str(manifest), "--body-memory", "1Mi")
    stalled = []
    try:
        for _ in range(5):  # each announces 1 MiB, sends a little, then stalls: each holds a 256 KiB queue
            raw = _Raw(server, "/count", f"content-length: {1 << 20}")
            raw.send(b"x" * 1000)
            stalled.append(raw)
        # The budget of 1 MiB holds four queues: the fifth body is refused before its guest starts;
        # the four guests are stopped at their deadline, and give their share back.
        heads = sorted(raw.until(b"\r\n\r\n").split(b"\r\n\r\n")[0] for raw in stalled)
    finally:
        for raw in stalled:
            raw.close()
    assert [head[:12] for head in heads] == [b"HTTP/1.1 503"] + [b"HTTP/1.1 504"] * 4
    assert b"x-wasmlet-error: body-memory" in heads[0]
    assert httpx.post(server.url + "/count", content=b"y" * 1000, timeout=10).text == "1000 bytes, closed\n"


def test_http_1_0_bodies_are_still_read_whole_first(server: Server) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    try:
        sock.sendall(b"POST /echo HTTP/1.0\r\nhost: 127.0.0.1\r\ncontent-length: 11\r\n\r\nhello world")
        received = b""
        while data := sock.recv(65536):  # HTTP/1.0: the server closes after the response
            received += data
    finally:
        sock.close()
    head, _, body = received.partition(b"\r\n\r\n")
    # No chunked coding in HTTP/1.0: the response is buffered too, with its length.
    assert head.startswith(b"HTTP/1.1 200") and b"content-length: 11" in head.lower() and body == b"hello world"


def test_clients_that_stall_their_uploads_do_not_open_the_apps_circuit_breaker(
        serve: Callable[..., Server], tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.yaml", [
        {"name": "stall", "properties": {"moduleURL": str(STREAM), "route": "/", "timeout": "2s"}}], name="cb")
    server = serve(str(manifest))
    # The breaker opens after 5 timeouts or traps in 30 s; these 7 are the clients' doing, not the guest's.
    stalled = [_Raw(server, "/count", "content-length: 1000") for _ in range(7)]
    try:
        for raw in stalled:
            raw.send(b"x" * 10)
        for raw in stalled:
            assert raw.until(b"\r\n\r\n").startswith(b"HTTP/1.1 504")
    finally:
        for raw in stalled:
            raw.close()
    reply = httpx.post(server.url + "/count", content=b"ok", timeout=10)
    assert reply.status_code == 200 and reply.text == "2 bytes, closed\n"  # not 503 circuit-open
