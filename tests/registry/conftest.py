"""Real OCI registries for the registry tests: Debian's ``docker-registry`` on loopback.

Three flavours: anonymous, ``htpasswd`` (basic auth) and ``token`` (the bearer
challenge flow, with a small token service below that signs JWTs the way the
distribution token spec describes). Each registry binds 127.0.0.1 on a free
port, stores into a temporary directory and is stopped when its fixture ends.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
HELLO_WASM = ROOT / "examples" / "hello" / "hello.wasm"
ECHO_WASM = ROOT / "examples" / "echo" / "echo.wasm"
SEED_MANIFEST = ROOT / "examples" / "seed" / "app.yaml"
REGISTRY_BIN = "docker-registry"
USER, PASSWORD = "alice", "wonderland"
TOKEN_SERVICE, TOKEN_ISSUER = "wasmlet-test-registry", "wasmlet-test-token-issuer"




class Registry:
    """One ``docker-registry serve`` process."""

    def __init__(self, workdir: Path, auth: dict[str, Any] | None = None) -> None:
        if shutil.which(REGISTRY_BIN) is None:
            pytest.fail("docker-registry is not installed (apt-get install -y docker-registry)")
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.storage = workdir / "storage"
        self.log = workdir / "registry.log"
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True}},
            "http": {"addr": self.host, "secret": "wasmlet-test-secret"},
        }
        if auth:
            config["auth"] = auth
        self.config = workdir / "config.yml"
        self.config.write_text(json.dumps(config, indent=1))  # JSON is YAML
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Registry:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(self.config)], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"docker-registry exited with {self.process.returncode}:\n{self.log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{self.host}/v2/", timeout=1).status_code in (200, 401):
                    return self
            time.sleep(0.05)
        raise AssertionError(f"docker-registry not ready after 20 s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def ref(self, name: str) -> str:
        return f"oci://{self.host}/{name}"

    def blob_file(self, digest: str) -> Path:
        """Where the registry keeps a blob (distribution's filesystem driver layout)."""
        hex_digest = digest.removeprefix("sha256:")
        return self.storage / "docker" / "registry" / "v2" / "blobs" / "sha256" / hex_digest[:2] / hex_digest / "data"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenService:
    """A distribution-spec token server: ``GET /token?service=&scope=`` -> a signed JWT.

    ``alice`` gets pull and push everywhere; anonymous callers get pull on
    ``public/*`` only (a token with no access elsewhere, as Docker Hub does).
    """

    def __init__(self, workdir: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wasmlet test token signer")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_file = workdir / "token-signer.pem"
        self.cert_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.requests: list[dict[str, Any]] = []
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                service._answer(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(handler.path)
        query = urllib.parse.parse_qs(url.query)
        user = ""
        header = handler.headers.get("Authorization", "")
        if header.startswith("Basic "):
            name, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if (name, password) != (USER, PASSWORD):
                handler.send_response(401)
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                self.requests.append({"user": name, "denied": True})
                return
            user = name
        access = []
        for scope in query.get("scope", []):
            kind, repo, actions = scope.split(":")
            wanted = set(actions.split(","))
            granted = wanted if user else (wanted & {"pull"} if repo.startswith("public/") else set())
            access.append({"type": kind, "name": repo, "actions": sorted(granted)})
        self.requests.append({"user": user, "scope": query.get("scope", []), "access": access})
        token = self._sign({
            "iss": TOKEN_ISSUER, "sub": user, "aud": TOKEN_SERVICE, "access": access,
            "iat": int(time.time()), "nbf": int(time.time()) - 10, "exp": int(time.time()) + 300,
            "jti": hashlib.sha256(os.urandom(16)).hexdigest(),
        })
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _sign(self, claims: dict[str, Any]) -> str:
        # The registry trusts the signer through the x5c chain against its rootcertbundle.
        header = {"typ": "JWT", "alg": "ES256",
                  "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An anonymous registry shared by the tests that only push and pull their own repositories."""
    reg = Registry(tmp_path_factory.mktemp("registry")).start()
    yield reg
    reg.stop()


@pytest.fixture
def fresh_registry(tmp_path: Path) -> Iterator[Registry]:
    """A registry of this test's own, which the test may stop."""
    reg = Registry(tmp_path / "registry").start()
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    workdir = tmp_path_factory.mktemp("basic-registry")
    htpasswd = workdir / "htpasswd"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=6)).decode()
    htpasswd.write_text(f"{USER}:{hashed}\n")
    reg = Registry(workdir, auth={"htpasswd": {"realm": "wasmlet-test", "path": str(htpasswd)}}).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def token_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenService]:
    service = TokenService(tmp_path_factory.mktemp("token-service"))
    yield service
    service.close()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory, token_service: TokenService) -> Iterator[Registry]:
    auth = {"token": {"realm": token_service.realm, "service": TOKEN_SERVICE, "issuer": TOKEN_ISSUER,
                      "rootcertbundle": str(token_service.cert_file)}}
    reg = Registry(tmp_path_factory.mktemp("token-registry"), auth=auth).start()
    yield reg
    reg.stop()


@pytest.fixture
def hanging_registry() -> Iterator[str]:
    """``host:port`` of a server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache and HOME (so ``~/.docker/config.json`` is this test's own); returns the cache dir."""
    cache = tmp_path / "cache"
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("WASMLET_CACHE_DIR", str(cache))
    monkeypatch.setenv("HOME", str(home))
    for name in ("DOCKER_CONFIG", "WASMLET_INSECURE_REGISTRIES", "WASMLET_REGISTRY_TIMEOUT", "SOURCE_DATE_EPOCH"):
        monkeypatch.delenv(name, raising=False)
    return cache


@pytest.fixture
def docker_login(tmp_path: Path) -> Callable[[str, str, str], Path]:
    """Write ``auths.<host>.auth`` into the test HOME's docker config, as ``docker login`` would."""

    def write(host: str, user: str = USER, password: str = PASSWORD) -> Path:
        path = tmp_path / "home" / ".docker" / "config.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
        return path

    return write


def _store_files(cache: Path) -> list[str]:
    if not cache.exists():
        return []
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())


@pytest.fixture
def store_files() -> Callable[[Path], list[str]]:
    """Every file under a cache dir, relative: what the 'nothing half-written' checks compare."""
    return _store_files


def _serve_once(plan: Any, app: str, path: str = "/") -> bytes:
    from wasmlet.guest import CgiRequest
    from wasmlet.server import Host

    host = Host(plan)
    host.start()
    try:
        request = CgiRequest(method="GET", path=path, raw_path=path, query="", headers=(("host", "x"),), body=b"")
        result = host.apps[app].handler.handle(request)
        body: bytes = result.response.body
        return body
    finally:
        host.close()


@pytest.fixture
def serve_once() -> Callable[..., bytes]:
    """Run one GET through a deployed app of a plan, in process; returns the response body."""
    return _serve_once


class TrickleRegistry:
    """A registry that serves one artifact, the blobs named in ``slow`` one byte at a time.

    Every byte comes well within any read timeout (``delay`` apart), so only a bound on
    the whole transfer stops a pull from taking ``delay`` x the blob's size.
    """

    def __init__(self, blobs: dict[str, bytes], manifest: bytes, slow: set[str], delay: float = 0.01) -> None:
        self.blobs, self.manifest, self.slow, self.delay = blobs, manifest, slow, delay
        self.stop = threading.Event()
        self.bytes_sent = 0
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                registry._answer(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        path = handler.path
        name = path.rsplit("/", 1)[1]
        status, body, kind, slow = 200, b"{}", "application/json", False
        if "/manifests/" in path:
            body, kind = self.manifest, "application/vnd.oci.image.manifest.v1+json"
        elif "/blobs/" in path and name in self.blobs:
            body, kind, slow = self.blobs[name], "application/octet-stream", name in self.slow
        elif path.rstrip("/") != "/v2":
            status = 404
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        try:
            if not slow:
                handler.wfile.write(body)
                return
            for position in range(len(body)):
                if self.stop.wait(self.delay):
                    return
                handler.wfile.write(body[position:position + 1])
                handler.wfile.flush()
                self.bytes_sent += 1
        except OSError:
            return  # the client gave up: what it should do

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
