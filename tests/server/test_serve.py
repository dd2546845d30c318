"""Real ``wasmlet serve`` processes on loopback, real HTTP clients."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.conftest import EXAMPLES, GUESTS, Server, write_manifest

Serve = Callable[..., Server]


def test_demo_app(serve: Serve) -> None:
    server = serve(str(EXAMPLES / "demo" / "app.yaml"))
    hello = httpx.get(server.url + "/")
    assert hello.status_code == 200
    assert hello.text == "Hello, world!\n"
    assert hello.headers["content-type"] == "text/plain"
    echo = httpx.post(server.url + "/echo/items?x=1", content=b"ping", headers={"X-Demo": "1"})
    assert echo.status_code == 200
    assert "method: POST" in echo.text
    assert "script_name: /echo" in echo.text and "path_info: /items" in echo.text
    assert "header: X_DEMO=1" in echo.text
    assert "env: GREETING=hello from the manifest" in echo.text
    assert "body: ping" in echo.text
    assert httpx.get(server.url + "/.well-known/wasmlet/health").text == "ok\n"


def test_seed_application_serves(serve: Serve) -> None:
    server = serve(str(EXAMPLES / "seed" / "app-local.yaml"))
    response = httpx.get(server.url + "/anything")
    assert response.status_code == 200
    assert "env: QUALITY=85" in response.text


def test_several_manifests_on_one_host(serve: Serve, tmp_path: Path) -> None:
    a = write_manifest(tmp_path / "a.yaml", [
        {"name": "hello", "properties": {"moduleURL": str(EXAMPLES / "hello" / "hello.wasm")}}], name="a")
    b = write_manifest(tmp_path / "b.yaml", [
        {"name": "echo", "properties": {"moduleURL": str(EXAMPLES / "echo" / "echo.wasm"),
                                         "host": "echo.test"}}], name="b")
    server = serve(str(a), str(b))
    assert httpx.get(server.url + "/hello").text == "Hello, world!\n"
    assert "method: GET" in httpx.get(server.url + "/echo", headers={"Host": "echo.test"}).text
    assert httpx.get(server.url + "/nothing").status_code == 404


HOSTILE = [
    # (module, properties, status, cause)
    ("loop.wasm", {"timeout": "500ms"}, 504, "timeout"),
    ("membomb.wasm", {"memoryLimit": "8Mi"}, 507, "memory-limit"),
    ("recursion.wasm", {}, 500, "trap"),
    ("flood.wasm", {"maxResponseSize": "1Mi"}, 502, "output-limit"),
    ("exit3.wasm", {}, 501, "exit"),
    ("badcgi.wasm", {}, 502, "bad-cgi"),
]


@pytest.fixture
def hostile_host(serve: Serve, tmp_path: Path) -> Server:
    components: list[dict[str, object]] = [
        {"name": "hello", "properties": {"moduleURL": str(EXAMPLES / "hello" / "hello.wasm"), "route": "/hello",
                                          "maxBodySize": "64Ki"}},
    ]
    for module, properties, _, _ in HOSTILE:
        name = module.removesuffix(".wasm")
        components.append({"name": name, "properties": {"moduleURL": str(GUESTS / module), **properties}})
    return serve(str(write_manifest(tmp_path / "hostile.yaml", components)), workers=2)


@pytest.mark.parametrize(("module", "status", "cause"), [(m, s, c) for m, _, s, c in HOSTILE])
def test_hostile_guest_is_contained(hostile_host: Server, module: str, status: int, cause: str) -> None:
    name = module.removesuffix(".wasm")
    stop = threading.Event()
    asking = threading.Event()
    hello_results: list[tuple[int, float]] = []

    def keep_asking() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                started = time.monotonic()
                response = client.get(hostile_host.url + "/hello")
                hello_results.append((response.status_code, time.monotonic() - started))
                asking.set()

    watcher = threading.Thread(target=keep_asking)
    watcher.start()
    try:
        # The hostile requests start only once the well-behaved app is being asked, and the watcher
        # goes on until a hello was answered after the last of them (a fast failure such as the
        # memory bomb's could otherwise finish before the watcher's first request).
        assert asking.wait(10), "the well-behaved app never answered"
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(lambda _: httpx.get(f"{hostile_host.url}/{name}", timeout=30), range(4)))
        answered = len(hello_results)
        deadline = time.monotonic() + 10
        while len(hello_results) == answered and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(hello_results) > answered, "the well-behaved app stopped answering"
    finally:
        stop.set()
        watcher.join()
    for response in responses:
        assert response.status_code == status, response.text
        assert response.headers["x-wasmlet-error"] == cause
    assert {code for code, _ in hello_results} == {200}
    assert max(t for _, t in hello_results) < 2.0
    # The log names the app and the cause.
    time.sleep(0.2)
    assert f"app=test/{name} cause={cause}" in hostile_host.output()


def test_huge_request_body(hostile_host: Server) -> None:
    too_big = b"x" * (64 * 1024 + 1)
    response = httpx.post(hostile_host.url + "/hello", content=too_big)
    assert response.status_code == 413
    assert response.headers["x-wasmlet-error"] == "body-limit"

    def chunks():  # type: ignore[no-untyped-def]  # no Content-Length: chunked transfer
        for _ in range(17):
            yield b"y" * 4096

    assert httpx.post(hostile_host.url + "/hello", content=chunks()).status_code == 413
    assert httpx.post(hostile_host.url + "/hello", content=b"small").status_code == 200


def test_guest_stderr_goes_to_the_log(serve: Serve, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.yaml", [{"name": "talker", "properties": {
        "moduleURL": str(GUESTS / "stderr.wasm")}}])
    server = serve(str(manifest))
    assert httpx.get(server.url + "/").status_code == 201
    time.sleep(0.2)
    assert "app=test/talker stderr: stderr guest: first line" in server.output()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wasmlet", *args], capture_output=True, text=True, timeout=60)


def test_bad_manifest_starts_nothing(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "bad.yaml", [{"name": "web", "properties": {
        "moduleURL": "web.wasm", "memoryLimit": "lots"}}])
    result = run_cli("serve", str(manifest), "--listen", "127.0.0.1:0", "--admin-listen", "none")
    assert result.returncode == 1
    assert f"{manifest}: invalid manifest" in result.stderr
    assert "spec.components[0].properties.memoryLimit: expected a quantity" in result.stderr
    assert "serving" not in result.stdout


def test_seed_manifest_with_unreachable_registry_fails_clearly() -> None:
    # The seed's registry.acme.com cannot be reached from here and was never pulled:
    # deploy stops with the reference named (tests/registry deploys it from a local registry).
    result = run_cli("serve", str(EXAMPLES / "seed" / "app.yaml"), "--listen", "127.0.0.1:0",
                     "--admin-listen", "none")
    assert result.returncode == 1
    assert "image-processor/resizer" in result.stderr
    assert "registry.acme.com" in result.stderr and "never pulled" in result.stderr


def test_missing_module_names_the_file(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.yaml", [{"name": "web", "properties": {"moduleURL": "nope.wasm"}}])
    result = run_cli("serve", str(manifest), "--listen", "127.0.0.1:0", "--admin-listen", "none")
    assert result.returncode == 1
    assert "component test/web" in result.stderr and "nope.wasm" in result.stderr


def test_validate_command() -> None:
    ok = run_cli("validate", str(EXAMPLES / "demo" / "app.yaml"))
    assert ok.returncode == 0
    assert "demo/echo  route=/echo" in ok.stdout


def wait_inflight(server: Server, count: int, timeout: float = 10.0) -> None:
    """Wait until the admin listener reports ``count`` requests in flight."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:  # workers forked from the zygote can be ready before the admin listener is up
            text = httpx.get(server.admin_url + "/metrics").text
        except httpx.ConnectError:
            text = ""
        for line in text.splitlines():
            if line.startswith("wasmlet_inflight_requests ") and float(line.split()[1]) >= count:
                return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} requests in flight after {timeout}s")


def test_graceful_drain_on_sigterm(serve: Serve, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "slow.yaml", [{"name": "slow", "properties": {
        "moduleURL": str(GUESTS / "slow.wasm")}}])
    server = serve(str(manifest), workers=2)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        pending = [pool.submit(httpx.get, server.url + "/?ms=1500", timeout=10) for _ in range(4)]
        wait_inflight(server, 4)  # accepted and running in a guest, not just queued
        server.process.send_signal(signal.SIGTERM)
        responses = [f.result() for f in pending]
    assert [r.status_code for r in responses] == [200] * 4
    assert all(r.text == "slept 1500 ms\n" for r in responses)
    assert server.process.wait(10) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/?ms=0", timeout=2)


def _worker_holding(server: Server, port: int) -> int:
    """The worker that accepted the connection from local port ``port``: the server's end of it (in
    /proc/net/tcp, proc(5)) is a socket among that worker's descriptors."""
    children = subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True).stdout.split()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open("/proc/net/tcp", encoding="ascii") as table:
            inodes = {f"socket:[{f[9]}]" for f in (line.split() for line in table.readlines()[1:])
                      if int(f[1].split(":")[1], 16) == server.port and int(f[2].split(":")[1], 16) == port}
        for pid in children:
            with contextlib.suppress(OSError):
                if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in os.listdir(f"/proc/{pid}/fd")):
                    return int(pid)
        time.sleep(0.02)
    raise AssertionError(f"no worker holds the connection from port {port}")


def test_a_draining_worker_answers_a_new_connection_s_first_request(serve: Serve) -> None:
    # A client connects, the worker accepts, then the worker drains (a rolling restart, a recycle)
    # before the request has arrived. uvicorn would close the connection at once, resetting the
    # request then in flight; the request is answered instead, and the connection closed after it.
    server = serve(str(EXAMPLES / "hello" / "app.yaml"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
        worker = _worker_holding(server, client.getsockname()[1])
        os.kill(worker, signal.SIGTERM)  # the supervisor replaces it; this one drains
        time.sleep(0.5)  # uvicorn's shutdown has run (its loop looks every 0.1 s): under FRESH_GRACE
        client.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        reply = b""
        while chunk := client.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), reply
    assert b"connection: close" in head.lower() and body == b"Hello, world!\n"


def test_a_draining_worker_closes_a_silent_new_connection_after_a_grace(serve: Serve) -> None:
    from wasmlet.server._protocol import FRESH_GRACE

    server = serve(str(EXAMPLES / "hello" / "app.yaml"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
        worker = _worker_holding(server, client.getsockname()[1])
        os.kill(worker, signal.SIGTERM)
        started = time.monotonic()
        assert client.recv(1) == b""  # closed, not held for the worker's whole drain timeout
        assert FRESH_GRACE * 0.8 <= time.monotonic() - started < FRESH_GRACE + 5
    wait_until_gone(worker)


def wait_until_gone(pid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}") and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower():
        assert time.monotonic() < deadline, f"worker {pid} still running"
        time.sleep(0.05)


def test_second_signal_forces_exit(serve: Serve, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "slow.yaml", [{"name": "slow", "properties": {
        "moduleURL": str(GUESTS / "slow.wasm"), "timeout": "60s"}}])
    server = serve(str(manifest))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(httpx.get, server.url + "/?ms=20000", timeout=30)
        wait_inflight(server, 1)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(10) == 1
        assert time.monotonic() - started < 5
        with pytest.raises(httpx.HTTPError):
            pending.result()


def test_dead_worker_is_replaced(serve: Serve) -> None:
    server = serve(str(EXAMPLES / "hello" / "app.yaml"), workers=1)
    # The supervisor's children: its worker, and the zygote that forks workers (issue 13).
    children = subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True)
    (worker,) = [int(p) for p in children.stdout.split()
                 if Path(f"/proc/{p}/comm").read_text().strip() != "wasmlet-zygote"]
    os.kill(worker, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(server.url + "/", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        pytest.fail("no worker answered after the first was killed")
    assert "restarting it" in server.output()


def test_http_surface_settings() -> None:
    from wasmlet import ConfigError
    from wasmlet.server import ServeSettings, parse_forwarded_allow_ips

    assert parse_forwarded_allow_ips("") == ()  # trust no proxy: the default
    assert parse_forwarded_allow_ips(" 10.0.0.1, 10.1.0.0/16,::1 ") == ("10.0.0.1", "10.1.0.0/16", "::1")
    assert parse_forwarded_allow_ips("10.0.0.1,*") == ("*",)
    with pytest.raises(ConfigError, match=r"--forwarded-allow-ips: .*'proxy\.local'"):
        parse_forwarded_allow_ips("10.0.0.1,proxy.local")
    for bad, flag in [({"header_timeout": 0}, "--header-timeout"),
                      ({"client_connections": 0}, "--max-client-connections"),
                      ({"body_memory": 0}, "--body-memory"),
                      ({"forwarded_allow_ips": ("10.0.0.1",), "server": "granian"}, "--forwarded-allow-ips")]:
        with pytest.raises(ConfigError, match=flag):
            ServeSettings(**bad)  # type: ignore[arg-type]
    settings = ServeSettings(forwarded_allow_ips=("10.0.0.0/8", "::1"), header_timeout=2.5, client_connections=7,
                             body_memory=1024)
    assert settings.worker_http_args() == ["--forwarded-allow-ips", "10.0.0.0/8,::1", "--header-timeout", "2.5",
                                           "--client-connections", "7", "--body-memory", "1024"]
