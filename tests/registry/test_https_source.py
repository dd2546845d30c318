"""moduleURL over https (pinned by digest) and plain http to loopback, against a real local server."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from wasmlet import ModuleSourceError, UnsupportedSchemeError
from wasmlet.engine import BlobStore
from wasmlet.plan import parse_manifest
from wasmlet.registry import fetch_module

ROOT = Path(__file__).resolve().parents[2]
HELLO = (ROOT / "examples" / "hello" / "hello.wasm").read_bytes()
HELLO_DIGEST = "sha256:" + hashlib.sha256(HELLO).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/hello.wasm":
            self.send_response(200)
            self.send_header("Content-Length", str(len(HELLO)))
            self.end_headers()
            self.wfile.write(HELLO)
        else:
            self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


def _serve(tls: ssl.SSLContext | None) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme = "https" if tls else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture
def http_origin() -> Iterator[str]:
    yield from _serve(None)


@pytest.fixture
def https_origin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust our own CA, as a user would
    yield from _serve(context)


def spec(url: str, digest: str | None = None, base_dir: str = ".") -> object:
    props = f"moduleURL: {url}" + (f", moduleDigest: '{digest}'" if digest else "")
    text = (
        "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata: {name: a}\n"
        f"spec: {{components: [{{name: c, type: wasm, properties: {{{props}}}}}]}}\n"
    )
    (parsed,) = parse_manifest(text, source="m.yaml", base_dir=base_dir)
    return parsed


def test_https_pinned(https_origin: str, tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    fetched = fetch_module(spec(f"{https_origin}/hello.wasm", HELLO_DIGEST), blobs)  # type: ignore[arg-type]
    assert fetched.data == HELLO
    assert blobs.has(fetched.digest)


def test_https_must_be_pinned(https_origin: str, tmp_path: Path) -> None:
    with pytest.raises(ModuleSourceError, match="must be pinned"):
        fetch_module(spec(f"{https_origin}/hello.wasm"), BlobStore(tmp_path))  # type: ignore[arg-type]


def test_wrong_digest_stores_nothing(http_origin: str, tmp_path: Path) -> None:
    wrong = "sha256:" + "0" * 64
    with pytest.raises(ModuleSourceError, match="digest mismatch"):
        fetch_module(spec(f"{http_origin}/hello.wasm", wrong), BlobStore(tmp_path))  # type: ignore[arg-type]
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_404(http_origin: str, tmp_path: Path) -> None:
    with pytest.raises(ModuleSourceError, match="HTTP 404"):
        fetch_module(spec(f"{http_origin}/missing.wasm", HELLO_DIGEST), BlobStore(tmp_path))  # type: ignore[arg-type]


def test_plain_http_only_to_loopback(tmp_path: Path) -> None:
    with pytest.raises(ModuleSourceError, match="only to a loopback host"):
        fetch_module(spec("http://example.com/x.wasm", HELLO_DIGEST), BlobStore(tmp_path))  # type: ignore[arg-type]


def test_pinned_module_already_stored_needs_no_network(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    blobs.put(HELLO)
    # Port 9 (discard) on loopback: nothing listens; the stored blob is used.
    fetched = fetch_module(spec("https://127.0.0.1:9/hello.wasm", HELLO_DIGEST), blobs)  # type: ignore[arg-type]
    assert fetched.data == HELLO


def test_relative_path_and_file_url(tmp_path: Path) -> None:
    (tmp_path / "m.wasm").write_bytes(HELLO)
    blobs = BlobStore(tmp_path / "store")
    assert fetch_module(spec("m.wasm", base_dir=str(tmp_path)), blobs).data == HELLO  # type: ignore[arg-type]
    assert fetch_module(spec(f"file://{tmp_path}/m.wasm"), blobs).data == HELLO  # type: ignore[arg-type]
    pinned_wrong = dataclasses.replace(spec("m.wasm", base_dir=str(tmp_path)),  # type: ignore[type-var]
                                       module_digest="sha256:" + "1" * 64)
    with pytest.raises(ModuleSourceError, match="digest mismatch"):
        fetch_module(pinned_wrong, blobs)


def test_unknown_scheme(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedSchemeError, match="unsupported scheme 'ftp'"):
        fetch_module(spec("ftp://x/y.wasm"), BlobStore(tmp_path))  # type: ignore[arg-type]
