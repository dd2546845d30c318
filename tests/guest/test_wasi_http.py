"""A real C guest calling wasi_experimental_http through the real WAGI runner, against loopback servers."""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import wasmtime
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from wasmlet.engine import EpochTicker, build_engine
from wasmlet.guest import (
    CgiRequest,
    GuestLimits,
    OutboundContext,
    WagiHandler,
    check_imports,
    define_wasi_http,
    outbound_context,
    system_resolver,
)
from wasmlet.plan import Capabilities, EngineSettings, parse_allowed_hosts

ROOT = Path(__file__).resolve().parents[2]
GUEST = ROOT / "tests" / "guests" / "security" / "http_get.wasm"


class _Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        payload = json.dumps({
            "method": self.command, "path": self.path, "host": self.headers.get("host"),
            "x-test": self.headers.get("x-test"), "body": body.decode(),
        }).encode()
        self.send_response(200)
        self.send_header("X-Echo", "yes")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def _serve(context: ssl.SSLContext | None = None) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def upstream() -> Iterator[int]:
    yield from _serve()


@pytest.fixture(scope="module")
def guest() -> Iterator[WagiHandler]:
    engine = build_engine(EngineSettings(pool_instances=8))
    ticker = EpochTicker(engine, 0.005)
    ticker.start()
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    define_wasi_http(linker)
    module = wasmtime.Module(engine, GUEST.read_bytes())
    check_imports(module, Capabilities.model_validate({"allowedOutboundHosts": ["https://x.test"]}), "http_get")
    yield WagiHandler("test/http", engine, linker, module, GuestLimits(64 << 20, 10.0, 1 << 20), route="/")
    ticker.stop()


Run = Callable[..., dict[str, str]]


@pytest.fixture
def run(guest: WagiHandler) -> Run:
    def call(url: str, allowed: Sequence[str] | None, method: str = "GET", body: bytes = b"",
             **options: object) -> dict[str, str]:
        request = CgiRequest(method=method, path="/", raw_path="/", query=url, headers=(), body=body)
        if allowed is None:
            result = guest.handle(request)
        else:
            ctx = OutboundContext(parse_allowed_hosts(allowed), deadline=time.monotonic() + 10, app="test/http",
                                  **options)  # type: ignore[arg-type]
            with outbound_context(ctx):
                result = guest.handle(request)
            call.ctx = ctx  # type: ignore[attr-defined]
        lines = result.response.body.decode().splitlines()
        out = {}
        for line in lines:
            for part in line.split(" ") if not line.startswith("body=") else [line]:
                key, _, value = part.partition("=")
                out[key] = value
        return out

    return call


def test_allowed_request_end_to_end(run: Run, upstream: int) -> None:
    out = run(f"http://127.0.0.1:{upstream}/echo", [f"http://127.0.0.1:{upstream}"])
    assert out["req"] == "0" and out["status"] == "200"
    assert out["header_get"] == "0" and out["x-echo"] == "yes"
    assert out["header_get_missing"] == "5"  # header not found
    assert out["header_get_small"] == "4"  # buffer too small
    assert out["headers_get_all"] == "0" and out["has_x_echo"] == "1"
    echoed = json.loads(out["body"])
    assert echoed == {"method": "GET", "path": "/echo", "host": f"127.0.0.1:{upstream}", "x-test": "from-guest",
                      "body": ""}
    assert out["body_read"] == "0" and int(out["bytes"]) == len(out["body"])
    assert out["close"] == "0" and out["after_close"] == "1"  # invalid handle once closed


def test_post_body(run: Run, upstream: int) -> None:
    out = run(f"http://127.0.0.1:{upstream}/p", [f"http://127.0.0.1:{upstream}"], "POST", b"hello upstream")
    echoed = json.loads(out["body"])
    assert echoed["method"] == "POST" and echoed["body"] == "hello upstream"


def test_forbidden_host(run: Run, upstream: int) -> None:
    out = run("http://example.org/", [f"http://127.0.0.1:{upstream}"])
    assert out == {"req": "7"}  # destination not allowed; nothing was resolved or sent
    assert "no allowedOutboundHosts entry matches" in run.ctx.denied[0]  # type: ignore[attr-defined]


def test_no_policy_means_no_egress(run: Run, upstream: int) -> None:
    assert run(f"http://127.0.0.1:{upstream}/", None) == {"req": "7"}


def test_a_wildcard_does_not_reach_localhost(run: Run, upstream: int) -> None:
    assert system_resolver("localhost", upstream)  # the machine resolves it (to loopback)
    out = run(f"http://localhost:{upstream}/", [f"http://*:{upstream}", "*://*:*"])
    assert out == {"req": "7"}
    assert "internal address" in run.ctx.denied[0]  # type: ignore[attr-defined]
    out = run(f"http://127.0.0.1:{upstream}/", ["*://*:*"])
    assert out == {"req": "7"}


def test_localhost_named_explicitly(run: Run, upstream: int) -> None:
    # localhost may resolve to ::1 first; the server listens on 127.0.0.1 only, so this also
    # checks that the next checked address is tried.
    out = run(f"http://localhost:{upstream}/x", [f"http://localhost:{upstream}"])
    assert out["req"] == "0", out
    assert json.loads(out["body"])["host"] == f"localhost:{upstream}"


def test_the_connection_is_pinned_to_the_checked_address(run: Run, upstream: int) -> None:
    # svc.test exists only in the policy's resolver: had httpx resolved the name again, it would fail.
    resolver = {"svc.test": ["127.0.0.1"]}
    out = run(f"http://svc.test:{upstream}/pinned", [f"http://svc.test:{upstream}"],
              resolver=lambda host, port: resolver[host])
    assert out["req"] == "0", out
    assert json.loads(out["body"])["host"] == f"svc.test:{upstream}"


def test_redirects_are_not_followed(run: Run, upstream: int) -> None:
    out = run(f"http://127.0.0.1:{upstream}/redirect", [f"http://127.0.0.1:{upstream}"])
    assert out["req"] == "0" and out["status"] == "302"


def test_limits(run: Run, upstream: int) -> None:
    allowed = [f"http://127.0.0.1:{upstream}"]
    assert run(f"http://127.0.0.1:{upstream}/", allowed, max_response_body=10) == {"req": "11"}
    assert run(f"http://127.0.0.1:{upstream}/", allowed, max_requests=0) == {"req": "13"}
    assert run("ftp://127.0.0.1/", ["*://*:*"]) == {"req": "10"}
    assert run("not a url", ["*://*:*"]) == {"req": "10"}
    closed = _closed_port()
    assert run(f"http://127.0.0.1:{closed}/", [f"http://127.0.0.1:{closed}"]) == {"req": "11"}


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _self_signed(name: str, tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_checks_the_certificate_against_the_name(run: Run, tmp_path: Path) -> None:
    cert, key = _self_signed("secure.test", tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    served = _serve(server_ctx)
    port = next(served)
    try:
        resolver = {"secure.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]}
        options = {
            "resolver": lambda host, p: resolver[host],
            "verify": client_ctx,
        }
        allowed = [f"https://secure.test:{port}", f"https://other.test:{port}"]
        out = run(f"https://secure.test:{port}/tls", allowed, **options)
        assert out["req"] == "0", out
        assert json.loads(out["body"])["host"] == f"secure.test:{port}"
        # Same address, but the certificate is not for other.test: refused by TLS (a request error).
        assert run(f"https://other.test:{port}/tls", allowed, **options) == {"req": "11"}
    finally:
        next(served, None)


def test_ipv6_literal_is_bracketed(run: Run) -> None:
    assert ipaddress.ip_address("::1").is_loopback
    out = run("http://[::1]:9/", ["http://[::1]:9"])  # port 9 (discard) is closed: a request error, not a crash
    assert out == {"req": "11"}


def test_one_pool_per_name_and_invocation() -> None:
    ctx = OutboundContext(())
    a, b = ctx.client_for("a.test"), ctx.client_for("b.test")
    assert a is not b and ctx.client_for("a.test") is a
    ctx.close_all()
    assert a.is_closed and b.is_closed
