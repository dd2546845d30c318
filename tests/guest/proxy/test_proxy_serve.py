"""wasi:http/proxy components over real HTTP: a ``wasmlet serve`` process on loopback.

One server for the module (starting one costs seconds): the tests only read
from it, and each checks that the host still serves after its failure.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from tests.conftest import GUESTS, Server, serving, write_manifest

PROXY = GUESTS / "components" / "proxy_guest.wasm"
CAP = 2 << 20  # maxBodySize below
# Each failure gets a component of its own (the same guest under another route): failures of one
# component open its circuit breaker (docs/guest-errors.md), which must not hide the next case.
# Failures before the guest set its response-outparam: an error response with their status.
FAILURES = [
    ("/noout", 502, "bad-response"),
    ("/loop", 504, "timeout"),
    ("/sleep", 504, "timeout"),
    ("/dropped", 500, "trap"),
    ("/foreign", 500, "trap"),
]
# Failures after it: the response is streamed, its status already committed (200), so the
# response is cut short (no last chunk) and the failure only logged and counted.
MID_STREAM = [
    ("/trap", "trap"),
    ("/unfinished", "bad-response"),
    ("/flood", "output-limit"),
    ("/twice", "trap"),
    ("/overwrite", "trap"),
]
FAILING: list[str] = [*(path for path, _, _ in FAILURES), *(path for path, _ in MID_STREAM), "/exit-err"]


class _Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        payload = f"upstream saw {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, upstream: int) -> Iterator[Server]:
    tmp_path = tmp_path_factory.mktemp("proxy-serve")
    manifest = write_manifest(tmp_path / "m.yaml", [
        {"name": "proxy", "properties": {
            "moduleURL": str(PROXY), "route": "/", "timeout": "20s", "maxBodySize": "2Mi",
            "maxResponseSize": "3Mi",
            "capabilities": {"allowedOutboundHosts": [f"http://127.0.0.1:{upstream}"]}}},
        *({"name": f"fail-{path[1:]}", "properties": {
            "moduleURL": str(PROXY), "route": f"/fail-{path[1:]}", "timeout": "1s", "maxResponseSize": "1Mi"}}
          for path in FAILING),
        {"name": "wagi", "properties": {"moduleURL": str(GUESTS.parent.parent / "examples" / "hello" / "hello.wasm"),
                                        "route": "/wagi"}},
    ], name="px")
    with serving(manifest, tmp_path) as server:
        yield server


@pytest.mark.parametrize("size", [0, 1 << 20, CAP])
def test_post_bodies_up_to_the_cap_echo(server: Server, size: int) -> None:
    body = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    reply = httpx.post(server.url + "/echo?q=1", content=body, timeout=30)
    assert reply.status_code == 200
    assert reply.content == body
    assert reply.headers["x-echo-method"] == "POST"
    assert reply.headers["x-echo-path"] == "/echo?q=1"
    assert reply.headers["x-echo-authority"] == f"127.0.0.1:{server.port}"


def test_body_over_the_cap_never_reaches_the_guest(server: Server) -> None:
    reply = httpx.post(server.url + "/echo", content=b"x" * (CAP + 1), timeout=30)
    assert reply.status_code == 413


def test_get_with_many_headers(server: Server) -> None:
    headers = {f"x-h{i}": f"value-{i}" for i in range(60)}
    reply = httpx.get(server.url + "/echo", headers=headers, timeout=30)
    assert reply.status_code == 200
    assert reply.content == b""
    assert all(reply.headers[f"echo-x-h{i}"] == f"value-{i}" for i in range(60))
    assert "traceparent" not in headers and int(reply.headers["x-echo-headers"]) >= 61


def test_streamed_response(server: Server) -> None:
    reply = httpx.get(server.url + "/stream?1000", timeout=30)
    assert reply.status_code == 200
    assert reply.text.splitlines()[-1] == "chunk 999"


# /stream?N writes N lines of 8-12 bytes, one host call each: a short one answers inline, its
# whole response sent as two messages (``_streamed.DIRECT_BYTES``); the long ones give way to a
# thread and are sent as they come. The client sees the same framing either way.
@pytest.mark.parametrize("lines", [1, 5000, 6000, 30000])
def test_a_whole_response_goes_out_whole_and_chunked_at_any_size(server: Server, lines: int) -> None:
    reply = httpx.get(server.url + f"/stream?{lines}", timeout=30)
    assert reply.status_code == 200
    assert reply.headers["transfer-encoding"] == "chunked" and "content-length" not in reply.headers
    assert reply.content == b"".join(b"chunk %d\n" % i for i in range(lines))
    assert reply.headers["x-request-id"]


@pytest.mark.parametrize(("path", "status", "cause"), FAILURES)
def test_failures_answer_with_their_status_and_the_host_serves_on(server: Server, path: str, status: int,
                                                                   cause: str) -> None:
    started = time.monotonic()
    reply = httpx.get(f"{server.url}/fail-{path[1:]}{path}", timeout=30)
    assert reply.status_code == status
    assert reply.headers["x-wasmlet-error"] == cause
    assert time.monotonic() - started < 5
    assert httpx.get(server.url + "/hello", timeout=30).text == "hello\n"
    assert httpx.get(server.url + "/wagi", timeout=30).status_code == 200


@pytest.mark.parametrize(("path", "cause"), MID_STREAM)
def test_failures_mid_stream_cut_the_response_short_and_the_host_serves_on(server: Server, path: str,
                                                                           cause: str) -> None:
    started = time.monotonic()
    with httpx.stream("GET", f"{server.url}/fail-{path[1:]}{path}", timeout=30) as reply:
        assert reply.status_code == 200
        assert "x-wasmlet-error" not in reply.headers
        with pytest.raises(httpx.RemoteProtocolError):
            reply.read()
    assert time.monotonic() - started < 5
    _wait_for_log(server, f"app=px/fail-{path[1:]} cause={cause} ")
    assert httpx.get(server.url + "/hello", timeout=30).text == "hello\n"
    assert httpx.get(server.url + "/wagi", timeout=30).status_code == 200


def test_exit_after_the_body_was_finished_keeps_the_response_and_logs_the_failure(server: Server) -> None:
    reply = httpx.get(f"{server.url}/fail-exit-err/exit-err", timeout=30)
    assert reply.status_code == 200 and reply.text == "bye\n"  # outgoing-body.finish ended the response
    _wait_for_log(server, "app=px/fail-exit-err cause=exit status=501")


def _wait_for_log(server: Server, text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in server.output():
        assert time.monotonic() < deadline, f"{text!r} not logged"
        time.sleep(0.05)


def test_outgoing_allowed_and_denied(server: Server, upstream: int) -> None:
    allowed = httpx.get(server.url + "/fetch", headers={"x-target-authority": f"127.0.0.1:{upstream}",
                                                        "x-target-path": "/there"}, timeout=30)
    assert allowed.status_code == 200 and allowed.text == "upstream saw /there\n"
    denied = httpx.get(server.url + "/fetch", headers={"x-target-authority": "127.0.0.2:9",
                                                       "x-target-path": "/"}, timeout=30)
    assert denied.status_code == 502 and denied.headers["x-fetch-error"] == "15"  # HTTP-request-denied
    assert "egress denied" in server.output()


def test_denials_over_http(server: Server) -> None:
    assert httpx.get(server.url + "/deny", timeout=30).text == "dirs=0 tcp=err:1 dns=err:1\n"
