"""Shared fixtures: paths to real guest modules, a private cache, real servers."""

from __future__ import annotations

import collections
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import wasmtime

from wasmlet.plan import Plan

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GUESTS = ROOT / "tests" / "guests"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own module cache, so no test depends on another's."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("WASMLET_CACHE_DIR", str(cache))
    # ... and its own control-plane state (never the user's ~/.local/state).
    monkeypatch.setenv("WASMLET_STATE_DIR", str(tmp_path_factory.mktemp("state")))
    # ... and its own record of running hosts (never the user's $XDG_RUNTIME_DIR/wasmlet).
    monkeypatch.setenv("WASMLET_RUNTIME_DIR", str(tmp_path_factory.mktemp("run")))
    return cache


def free_port() -> int:
    """A loopback port free now, for a server a test starts, below the kernel's ephemeral range.

    A port the kernel hands out for ``bind(0)`` comes from the same range as the local ports of
    outgoing connections: between this call and the server's bind, a client connection elsewhere
    in the test (to NATS, to another server) could take it ("Address already in use", seen once
    in a lattice test). Ports below the range are only ever taken by a bind.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(1000):
        port = random.randrange(max(1024, low - 12000), low)
        if port in _HANDED_OUT:  # free again, but perhaps not yet bound by what it was chosen for
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.append(port)
        return port
    raise RuntimeError(f"no free loopback port below {low} in 1000 tries")


# The ports free_port chose lately: a test often asks for several before it starts anything (a NATS
# cluster's client, monitor and route ports), and two draws of the same port once made a route
# connect to another server's HTTP monitor.
_HANDED_OUT: collections.deque[int] = collections.deque(maxlen=4096)


def label_module(path: Path, label: str) -> Path:
    """A real WAGI module (from WAT) that answers with ``label``: a new label is a new version."""
    body = f"Content-Type: text/plain\n\n{label}\n"
    escaped = "".join(f"\\{b:02x}" for b in body.encode())
    path.write_bytes(wasmtime.wat2wasm(f"""
    (module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 64) "{escaped}")
      (data (i32.const 0) "\\40\\00\\00\\00\\{len(body):02x}\\00\\00\\00")
      (func (export "_start") (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))
    """))
    return path


def write_manifest(path: Path, components: list[dict[str, object]], name: str = "test") -> Path:
    import yaml

    document = {
        "apiVersion": "core.oam.dev/v1beta1",
        "kind": "Application",
        "metadata": {"name": name},
        "spec": {"components": [{"type": "wasm", **c} for c in components]},
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def deploy_plan(manifests: list[Path], cache_dir: Path | None = None, state_dir: Path | None = None) -> Plan:
    """Deploy manifests the way ``wasmlet serve MANIFEST...`` does, and return the plan its workers get.

    It goes through ``ControlPlane.deploy_files`` over a fresh state store (the
    path ``serve`` and ``deploy`` take), not through a shortcut of its own.
    """
    from wasmlet.control import ControlPlane, StateStore
    from wasmlet.engine import default_cache_dir
    from wasmlet.plan import EngineSettings

    state = state_dir or Path(tempfile.mkdtemp(prefix="wasmlet-test-state-"))
    with StateStore(state) as store:
        control = ControlPlane(store, EngineSettings(), cache_dir or default_cache_dir())
        control.deploy_files(list(manifests))
        return control.plan()


class Server:
    """A real ``wasmlet serve`` process on loopback."""

    def __init__(self, args: list[str], port: int, env: dict[str, str], state_dir: Path) -> None:
        self.port = port
        self.state_dir = state_dir
        self.url = f"http://127.0.0.1:{port}"
        admin_port = free_port()
        self.admin_url = f"http://127.0.0.1:{admin_port}"
        self.log = Path(env["WASMLET_TEST_LOG"])
        self._log_handle = self.log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "wasmlet", "serve", *args, "--listen", f"127.0.0.1:{port}",
             "--admin-listen", f"127.0.0.1:{admin_port}", "--state-dir", str(state_dir)],
            stdout=self._log_handle, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"wasmlet serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                # Workers forked from the zygote (issue 13) serve before the admin listener is up: "client
                # commands" is printed once it is, and the host is recorded (or could not be).
                if httpx.get(f"{self.url}/.well-known/wasmlet/ready", timeout=1).status_code == 200 \
                        and "client commands" in self.output():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"wasmlet serve not ready after {timeout}s:\n{self.output()}")

    @property
    def token(self) -> str:
        return (self.state_dir / "admin-token").read_text().strip()

    def admin(self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: object) -> httpx.Response:
        """A call to the admin API with the host's bearer token."""
        headers = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        return httpx.request(method, self.admin_url + path, headers=headers, timeout=120, **kwargs)  # type: ignore[arg-type]

    def output(self) -> str:
        self._log_handle.flush()
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_handle.close()
        return self.process.returncode


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(*args: str, workers: int = 1, ready: bool = True, extra_env: dict[str, str] | None = None,
              state_dir: Path | None = None, port: int | None = None) -> Server:
        env = dict(os.environ)
        env["WASMLET_TEST_LOG"] = str(tmp_path / f"serve-{len(servers)}.log")
        env.update(extra_env or {})
        state = state_dir or tmp_path / f"state-{len(servers)}"
        server = Server([*args, "--workers", str(workers)], port or free_port(), env, state)
        servers.append(server)
        if ready:
            server.wait_ready()
        return server

    yield start
    for server in servers:
        shut_down(server)


def shut_down(server: Server) -> None:
    """Stop ``server``, and whatever the test did, leave no worker of it behind."""
    server.stop(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGKILL)


@contextlib.contextmanager
def serving(manifest: Path, tmp_path: Path, **env: str) -> Iterator[Server]:
    """``wasmlet serve MANIFEST --workers 1`` with its own cache, state and log under ``tmp_path``
    (for a module-scoped host, or a server started inside a test)."""
    environment = dict(os.environ)
    environment.update(WASMLET_TEST_LOG=str(tmp_path / "serve.log"), WASMLET_CACHE_DIR=str(tmp_path / "cache"),
                       WASMLET_RUNTIME_DIR=str(tmp_path / "run"), **env)
    server = Server([str(manifest), "--workers", "1"], free_port(), environment, tmp_path / "state")
    try:
        server.wait_ready()
        yield server
    finally:
        shut_down(server)
