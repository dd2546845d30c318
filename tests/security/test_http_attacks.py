"""The HTTP surface under attack: hostile guest responses and hostile clients (issue 14).

Every test runs the attack against a real ``wasmlet serve`` on loopback, over
raw sockets where an HTTP library would hide or refuse it: response splitting
by a guest, slowloris and endless headers, unfinished uploads, spoofed client
addresses, duplicate Host headers and dot-segment paths, and header names that
collide in the CGI environment. Every wait is bounded; the only timings
asserted are generous bounds proving that a deadline holds.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from tests.conftest import EXAMPLES, GUESTS, Server, serving, write_manifest

Serve = Callable[..., Server]
RAW_CGI = GUESTS / "security" / "rawcgi.wasm"  # writes its query string, percent-decoded, as its CGI output
HELLO = b"Hello, world!\n"
MiB = 1024 * 1024


def components(**raw_properties: object) -> list[dict[str, object]]:
    return [
        {"name": "hello", "properties": {"moduleURL": str(EXAMPLES / "hello" / "hello.wasm"), "route": "/hello"}},
        {"name": "state", "properties": {"moduleURL": str(EXAMPLES / "echo" / "echo.wasm"), "route": "/state",
                                         "environment": [{"name": "HTTP_X_TENANT", "value": "acme"}]}},
        {"name": "raw", "properties": {"moduleURL": str(RAW_CGI), "route": "/raw", **raw_properties}},
    ]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One host, default options, for the tests that need none of their own (each start costs a second)."""
    tmp = tmp_path_factory.mktemp("http-attacks")
    with serving(write_manifest(tmp / "app.yaml", components(), name="t"), tmp) as server:
        yield server


@pytest.fixture
def start(serve: Serve, tmp_path: Path) -> Callable[..., Server]:
    """A host of its own, with options (one worker, so per-worker limits are exact)."""

    def start(*options: str, **raw_properties: object) -> Server:
        manifest = write_manifest(tmp_path / "app.yaml", components(**raw_properties), name="t")
        return serve(str(manifest), *options, workers=1)

    return start


class Connection:
    """A raw HTTP/1.1 connection that reads responses the way RFC 9112 section 6.3 tells a client to."""

    def __init__(self, port: int, source: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, target: str, headers: bytes = b"Host: t\r\n", method: str = "GET") -> None:
        self.send(f"{method} {target} HTTP/1.1\r\n".encode() + headers + b"\r\n")

    def response(self, method: str = "GET") -> tuple[int, dict[str, list[str]], bytes]:
        """One response: no body after HEAD, 1xx, 204 or 304, else as many bytes as Content-Length says."""
        line = self.file.readline()
        if not line:
            raise ConnectionError("the server closed the connection")
        status = int(line.split()[1])
        headers: dict[str, list[str]] = {}
        while (field := self.file.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = field.decode("latin-1").partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        bodiless = method == "HEAD" or status < 200 or status in (204, 304)
        length = 0 if bodiless else int(headers.get("content-length", ["0"])[0])
        return status, headers, self.file.read(length) if length else b""

    def until_closed(self) -> bytes:
        """Everything the server sends until it closes (a socket timeout fails the test)."""
        chunks = []
        with contextlib.suppress(ConnectionResetError):  # closed with bytes of ours unread: a reset
            while chunk := self.file.read1(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@contextlib.contextmanager
def connection(port: int, source: str = "127.0.0.1", timeout: float = 10.0) -> Iterator[Connection]:
    conn = Connection(port, source, timeout)
    try:
        yield conn
    finally:
        conn.close()


def guest_writes(output: bytes) -> str:
    """The target that makes the raw guest write ``output`` as its CGI response."""
    return "/raw?" + quote(output, safe="")


def worker_pid(server: Server) -> int:
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
    # The other child is the zygote that forks workers (issue 13).
    children = [p for p in children if Path(f"/proc/{p}/comm").read_text().strip() != "wasmlet-zygote"]
    assert len(children) == 1, children
    return int(children[0])


def metric(server: Server, series: str) -> float:
    for line in httpx.get(server.admin_url + "/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


# A whole response hidden in a guest's body: if it is ever sent after a body-less
# response, a client (or a proxy pooling connections) reads it as the next answer.
FORGED = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\r\nforged!"


# High 1: response splitting by a guest ------------------------------------------------------------------
@pytest.mark.parametrize("status", [204, 304])
def test_a_body_after_204_or_304_never_answers_the_next_request(host: Server, status: int) -> None:
    with connection(host.port) as conn:
        conn.request(guest_writes(b"Status: %d\nContent-Type: text/plain\n\n" % status + FORGED))
        code, headers, _ = conn.response()
        assert code == status
        assert "content-length" not in headers  # RFC 9110 section 8.6
        conn.request("/hello")  # the next request on the kept-alive connection gets its own answer
        assert conn.response()[::2] == (200, HELLO)


def test_a_head_response_has_no_body(host: Server) -> None:
    with connection(host.port) as conn:
        conn.request(guest_writes(b"Content-Type: text/plain\n\n" + FORGED), method="HEAD")
        code, headers, _ = conn.response(method="HEAD")
        assert code == 200
        assert headers["content-length"] == [str(len(FORGED))]  # what a GET would carry (RFC 9110 section 9.3.2)
        conn.request("/hello")
        assert conn.response()[::2] == (200, HELLO)


@pytest.mark.parametrize("status", [b"100 Continue", b"101 Switching Protocols", b"103 Early Hints"])
def test_an_interim_status_from_a_guest_is_bad_cgi(host: Server, status: bytes) -> None:
    with connection(host.port) as conn:
        conn.request(guest_writes(b"Status: " + status + b"\nContent-Type: text/plain\n\n" + FORGED))
        code, headers, body = conn.response()
        assert (code, headers["x-wasmlet-error"]) == (502, ["bad-cgi"]), body
        conn.request("/hello")
        assert conn.response()[::2] == (200, HELLO)


# Low: headers the host owns, and control characters --------------------------------------------------
def test_a_guest_cannot_set_the_hosts_own_headers(host: Server) -> None:
    with connection(host.port) as conn:
        conn.request(guest_writes(b"Content-Type: text/plain\nX-Request-Id: forged\nX-Wasmlet-Error: timeout\n\nok"),
                     headers=b"Host: t\r\nX-Request-Id: client-chosen-id\r\n")
        code, headers, body = conn.response()
    assert (code, body) == (200, b"ok")
    assert headers["x-request-id"] == ["client-chosen-id"]  # once, and the host's answer
    assert "x-wasmlet-error" not in headers


@pytest.mark.parametrize("value", [b"a\x01b", b"a\x0bb", b"a\x1fb", b"a\x7fb", b"a\rb"])
def test_a_control_character_in_a_guest_header_is_bad_cgi(host: Server, value: bytes) -> None:
    with connection(host.port) as conn:
        conn.request(guest_writes(b"Content-Type: text/plain\nX-A: " + value + b"\n\nbody"))
        code, headers, _ = conn.response()  # an answer, not a dropped connection
        assert (code, headers["x-wasmlet-error"]) == (502, ["bad-cgi"])
        conn.request("/hello")
        assert conn.response()[::2] == (200, HELLO)


# Low: Host headers and paths -------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [
    b"Host: t\r\nHost: evil.example\r\n",  # router and guest (HTTP_HOST) could each take another
    b"Host: t\r\nhost: t\r\n",
    b"Host: a b\r\n",  # not a uri-host
    b"",  # none, in HTTP/1.1 (RFC 9112 section 3.2)
])
def test_bad_host_headers_answer_400(host: Server, headers: bytes) -> None:
    with connection(host.port) as conn:
        conn.request("/state", headers=headers)
        code, fields, _ = conn.response()
    assert (code, fields["x-wasmlet-error"]) == (400, ["bad-host"])


@pytest.mark.parametrize(("target", "app", "path_info"), [
    ("/hello/../state", "state", ""),
    ("/hello/..%2Fstate/x", "state", "/x"),  # decoded, then normalised, as nginx does
    ("/hello/%2e%2e/state", "state", ""),
    ("/%73tate/x", "state", "/x"),
    ("//state", "state", ""),
    ("/x/../../state/./a//b", "state", "/a/b"),
    ("/state/../hello", "hello", None),
    ("/state/..%2f..%2fhello", "hello", None),
])
def test_routing_uses_the_normalised_path(host: Server, target: str, app: str, path_info: str | None) -> None:
    with connection(host.port) as conn:
        conn.request(target)
        code, _, body = conn.response()
    assert code == 200
    if app == "hello":
        assert body == HELLO
    else:  # the echo app says what it was given: the normalised path, consistently
        assert b"script_name: /state\n" in body and f"path_info: {path_info}\n".encode() in body, body


@pytest.mark.parametrize("target", ["/state/%00x", "/state/%0ax", "/state%7f"])
def test_a_control_character_in_the_path_answers_400(host: Server, target: str) -> None:
    # %00 used to cut PATH_INFO short in the guest's environment: it saw another path than was routed.
    with connection(host.port) as conn:
        conn.request(target)
        code, fields, _ = conn.response()
    assert (code, fields["x-wasmlet-error"]) == (400, ["bad-path"])


# Low: the CGI environment -------------------------------------------------------------------------------
def test_header_names_do_not_collide_and_the_manifest_wins(host: Server) -> None:
    with connection(host.port) as conn:
        conn.request("/state", headers=b"Host: t\r\nX-Tenant: evil\r\nX_Tenant: evil2\r\n"
                                        b"X-User: alice\r\nX_User: mallory\r\n")
        code, _, body = conn.response()
    assert code == 200
    headers = [line for line in body.decode().splitlines() if line.startswith("header: ")]
    assert sorted(headers) == ["header: HOST=t", "header: X_TENANT=acme", "header: X_USER=alice"]


# Medium 12: spoofed client addresses ---------------------------------------------------------------------
def test_forwarded_headers_are_ignored_by_default(start: Callable[..., Server]) -> None:
    server = start(rateLimit={"perClient": 0.1, "perClientBurst": 3})
    answers = [httpx.get(server.url + "/raw", headers={"X-Forwarded-For": f"203.0.113.{i}"}) for i in range(8)]
    assert answers[0].text == "remote=127.0.0.1\n"  # not the address the client claimed
    # ... and spoofing does not give a client a fresh rate-limit bucket per request.
    assert sum(a.status_code == 429 for a in answers) >= 4


def test_forwarded_headers_from_a_listed_proxy(start: Callable[..., Server]) -> None:
    server = start("--forwarded-allow-ips", "127.0.0.1", "--max-client-connections", "2")
    response = httpx.get(server.url + "/raw", headers={"X-Forwarded-For": "203.0.113.7"})
    assert response.text == "remote=203.0.113.7\n"
    # Clients behind a trusted proxy share its address: the proxy is exempt from the per-client cap.
    conns = [Connection(server.port) for _ in range(4)]
    try:
        for conn in conns:
            conn.request("/hello")
        assert [conn.response()[0] for conn in conns] == [200] * 4
    finally:
        for conn in conns:
            conn.close()


def test_a_listed_network_that_is_not_the_peer_is_not_trusted(start: Callable[..., Server]) -> None:
    server = start("--forwarded-allow-ips", "10.0.0.0/8,192.0.2.1")
    response = httpx.get(server.url + "/raw", headers={"X-Forwarded-For": "203.0.113.7"})
    assert response.text == "remote=127.0.0.1\n"


def test_a_bad_forwarded_allow_ips_is_refused(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.yaml", components())
    result = subprocess.run([sys.executable, "-m", "wasmlet", "serve", str(manifest), "--listen", "127.0.0.1:0",
                             "--admin-listen", "none", "--forwarded-allow-ips", "10.0.0.1,proxy.local"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "--forwarded-allow-ips" in result.stderr and "'proxy.local'" in result.stderr


# High 4: slowloris, connection caps, memory ---------------------------------------------------------------
def test_half_sent_headers_get_408_at_the_deadline(start: Callable[..., Server]) -> None:
    server = start("--header-timeout", "1")
    partial = [Connection(server.port) for _ in range(20)]
    idle = [Connection(server.port) for _ in range(5)]
    try:
        started = time.monotonic()
        for conn in partial:
            conn.send(b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        assert httpx.get(server.url + "/hello").status_code == 200  # served meanwhile
        for conn in partial:
            answer = conn.until_closed()
            assert answer.startswith(b"HTTP/1.1 408 ") and b"x-wasmlet-error: header-timeout" in answer
        for conn in idle:  # never sent a byte: closed without an answer
            assert conn.until_closed() == b""
        # The deadline is 1 s; it used to be never (the sockets' own 10 s timeout would fail the test).
        assert time.monotonic() - started < 6
        # A kept-alive connection gets the same deadline for its next request.
        with connection(server.port) as conn:
            conn.request("/hello")
            assert conn.response()[0] == 200
            conn.send(b"GET /hello HTTP/1.1\r\nHo")
            assert conn.until_closed().startswith(b"HTTP/1.1 408 ")
    finally:
        for conn in partial + idle:
            conn.close()


def test_a_later_heads_deadline_counts_from_its_own_first_byte(start: Callable[..., Server]) -> None:
    # The deadline's timer outlives the request it was armed for (re-arming it for every
    # request cost ~1.5 us): one still running for an earlier head must not cut a later one short.
    server = start("--header-timeout", "1")
    with connection(server.port) as conn:
        conn.request("/hello")
        assert conn.response()[0] == 200
        time.sleep(0.6)  # the first head's timer is due 0.4 s from now
        began = time.monotonic()
        conn.send(b"GET /hello HTTP/1.1\r\nHo")
        assert conn.until_closed().startswith(b"HTTP/1.1 408 ")
        waited = time.monotonic() - began
    assert 0.9 <= waited < 5, waited  # its own 1 s, not what was left of the first head's


def test_an_idle_kept_alive_connection_is_closed_after_its_keep_alive(host: Server) -> None:
    # uvicorn's keep-alive deadline (5 s in wasmlet's workers): a client that keeps connections
    # open and idle holds none of them for longer.
    with connection(host.port) as conn:
        conn.request("/hello")
        assert conn.response()[0] == 200
        idle = time.monotonic()
        assert conn.until_closed() == b""
        assert 4.5 <= time.monotonic() - idle < 9.5


def test_a_request_longer_than_the_keep_alive_is_not_cut(serve: Serve, tmp_path: Path) -> None:
    slow = [{"name": "slow", "properties": {"moduleURL": str(GUESTS / "slow.wasm"), "route": "/slow"}}]
    server = serve(str(write_manifest(tmp_path / "slow.yaml", slow)), workers=1)
    with connection(server.port) as conn:
        conn.request("/slow?ms=1")
        assert conn.response()[0] == 200
        time.sleep(3)  # the keep-alive's 5 s would end 2 s into the next request if it still ran
        conn.request("/slow?ms=4000")
        status, _, body = conn.response()
        assert (status, body) == (200, b"slept 4000 ms\n")
        conn.request("/slow?ms=1")  # and the connection is still there
        assert conn.response()[0] == 200


def test_an_endless_header_is_cut(start: Callable[..., Server]) -> None:
    server = start()
    with connection(server.port) as conn:
        conn.send(b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: ")
        with contextlib.suppress(OSError):  # the server may close while we still send
            for _ in range(64):  # 4 MiB of one header value, far past the cap
                conn.send(b"a" * 65536)
        answer = conn.until_closed()
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    assert httpx.get(server.url + "/hello").status_code == 200


def test_one_client_cannot_take_every_connection(start: Callable[..., Server]) -> None:
    server = start("--max-client-connections", "8")
    held = [Connection(server.port) for _ in range(8)]
    try:
        with connection(server.port) as extra:  # the ninth from the same address
            answer = extra.until_closed()
        assert answer.startswith(b"HTTP/1.1 503 ") and b"x-wasmlet-error: client-connections" in answer
        with connection(server.port, source="127.0.0.2") as other:  # another client is served
            other.request("/hello")
            assert other.response()[::2] == (200, HELLO)
    finally:
        for conn in held:
            conn.close()
    deadline = time.monotonic() + 10
    while True:  # the closed connections are given back
        with connection(server.port) as again:
            again.request("/hello")
            try:
                if again.response()[0] == 200:
                    break
            except ConnectionError:
                pass
        assert time.monotonic() < deadline, "the client's connections were never given back"
        time.sleep(0.1)


def test_an_unread_body_does_not_hold_the_connection(host: Server) -> None:
    with connection(host.port, timeout=15) as conn:
        conn.send(b"POST /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\nabc")
        assert conn.response()[0] == 404
        started = time.monotonic()
        with contextlib.suppress(OSError):
            while time.monotonic() - started < 15:  # trickle the rest of the body nobody reads
                conn.send(b"x")
                time.sleep(0.2)
        # Closed after at most 5 s of lingering (it used to stay open for as long as bytes came).
        assert conn.until_closed() == b""
        assert time.monotonic() - started < 12


def test_unfinished_uploads_give_their_memory_back(start: Callable[..., Server]) -> None:
    """24 clients each send 10 MiB less one byte, then leave; the issue's 60 are measured in bench/."""
    server = start("--body-memory", "64Mi")
    pid = worker_pid(server)
    for _ in range(5):
        assert httpx.post(server.url + "/state", content=b"warm").status_code == 200
    before = rss(pid)
    size = 10 * MiB
    conns = [Connection(server.port, timeout=30) for _ in range(24)]
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss(pid))
            time.sleep(0.02)

    def upload(conn: Connection) -> None:
        with contextlib.suppress(OSError):  # refused uploads are closed under the sender
            conn.send(b"POST /state HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
            for _ in range(size // MiB - 1):
                conn.send(b"x" * MiB)
            conn.send(b"x" * (MiB - 1))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        uploaders = [threading.Thread(target=upload, args=(conn,)) for conn in conns]
        for thread in uploaders:
            thread.start()
        for thread in uploaders:
            thread.join(60)
        assert not any(thread.is_alive() for thread in uploaders)
        time.sleep(0.5)
        held = rss(pid)
    finally:
        for conn in conns:
            conn.close()
        stop.set()
        sampler.join()
    time.sleep(2)
    after = rss(pid)
    refused = metric(server, 'wasmlet_guest_failures_total{app="t/state",cause="body-memory"}')
    abandoned = metric(server, 'wasmlet_guest_failures_total{app="t/state",cause="client-closed"}')
    print(f"worker RSS: before {before / MiB:.0f} MiB, peak {peak[0] / MiB:.0f}, held {held / MiB:.0f}, "
          f"after the clients left {after / MiB:.0f}; of 24 uploads {refused:.0f} refused, {abandoned:.0f} abandoned")
    assert refused >= 10  # 64 MiB holds six 10 MiB bodies at most: the rest get 503 body-memory
    # A truncated body never reaches the guest: the uploads whose clients left are recorded, not run.
    assert refused + abandoned == 24
    assert peak[0] - before < 64 * MiB + 48 * MiB  # the budget, and slack for buffers and the allocator
    assert after - before < 24 * MiB  # it used to keep all of it (687 MB -> 664 MB in the issue)
    assert httpx.post(server.url + "/state", content=b"after").status_code == 200
