"""The wasi:http example guests (built from source, tests/guests/toolchains.py) served by `wasmlet serve`.

The same components `wasmtime serve` answers in test_wasi_http_guests.py, on
wasmlet's own wasi:http/proxy host (wasmlet.guest's proxy handler) and, for the
Spin app, its fermyon:spin variables and key-value.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from pathlib import Path

import httpx
from tests.conftest import EXAMPLES, Server, write_manifest
from tests.guests import toolchains

Serve = Callable[..., Server]
HELLO = b"Hello, world!\n"
# The first deploy compiles the component (14-37 MB for Python and JS): tens of seconds on 2 busy cores.
READY = 240.0


def start(serve: Serve, manifest: Path) -> Server:
    server = serve(str(manifest), ready=False)
    server.wait_ready(timeout=READY)
    return server


def hello_checks(url: str) -> None:
    answer = httpx.get(url + "/x?q=1", timeout=30)
    assert (answer.status_code, answer.content) == (200, HELLO), answer.text
    assert answer.headers["content-type"] == "text/plain"
    # A body the handler never reads, then many requests at once, each its own instance.
    assert httpx.post(url + "/", content=b"x" * 1_048_576, timeout=30).content == HELLO
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: httpx.get(f"{url}/{i}", timeout=60), range(24)))
    assert [(a.status_code, a.content) for a in answers] == [(200, HELLO)] * 24


def test_c_http_answers_like_the_wagi_hello(serve: Serve, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.yaml", [
        {"name": "c-http", "properties": {"moduleURL": str(toolchains.c_http()), "route": "/c"}},
        {"name": "wagi", "properties": {"moduleURL": str(EXAMPLES / "hello" / "hello.wasm"), "route": "/wagi"}},
    ])
    server = start(serve, manifest)
    component = httpx.get(server.url + "/c", timeout=30)
    wagi = httpx.get(server.url + "/wagi", timeout=30)
    assert (component.status_code, component.content) == (wagi.status_code, wagi.content) == (200, HELLO)
    assert component.headers["content-type"] == wagi.headers["content-type"] == "text/plain"
    hello_checks(server.url + "/c")


def test_js_hello(serve: Serve, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.yaml", [
        {"name": "js", "properties": {"moduleURL": str(toolchains.js_hello()), "memoryLimit": "128Mi"}},
    ])
    hello_checks(start(serve, manifest).url)


def test_python_hello(serve: Serve, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.yaml", [
        {"name": "py", "properties": {"moduleURL": str(toolchains.python_hello()), "memoryLimit": "128Mi"}},
    ])
    hello_checks(start(serve, manifest).url)


def spin_manifest(path: Path, app: str, greeting: str) -> Path:
    return write_manifest(path, [{"name": "spin", "properties": {
        "moduleURL": str(toolchains.spin_python()), "memoryLimit": "128Mi", "route": f"/{app}",
        "environment": [{"name": "GREETING", "value": greeting}],
    }}], name=app)


def test_spin_app_reads_its_variable_and_counts_in_its_own_store(serve: Serve, tmp_path: Path) -> None:
    server = start(serve, spin_manifest(tmp_path / "a.yaml", "a", "Hello from a"))
    first = httpx.post(server.url + "/a/echo?x=1", content=b"ping", timeout=60)
    assert first.status_code == 200, first.text
    assert first.text == "greeting=Hello from a\ncount=1\nmethod=POST\npath=/a/echo?x=1\nbody=ping"
    counts = [httpx.get(server.url + "/a/", timeout=60).text.split("\n")[1] for _ in range(3)]
    assert counts == ["count=2", "count=3", "count=4"]  # one fresh instance per request: the store keeps it

    # Another app with the same component has its own variables and its own store.
    other = start(serve, spin_manifest(tmp_path / "b.yaml", "b", "Hello from b"))
    answer = httpx.get(other.url + "/b/", timeout=60).text
    assert answer.startswith("greeting=Hello from b\ncount=1\n"), answer
