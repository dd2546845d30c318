"""A wasi:http component at its ``memoryLimit``: the limit holds, and a guest that dies there is contained.

``proxy_guest.wasm``'s ``/grow`` calls ``memory.grow`` a page at a time until it
is refused and answers the pages it holds; ``/grow?trap`` then traps, as a C
guest whose ``malloc`` got NULL does.

What these tests pin down (docs/guest-abis.md, "No access to a component's
memory"): such a failure is reported as 500 ``trap``, where a WAGI module gets
507 ``memory-limit``. WAGI reads its instance's memory after a failure
(``_at_memory_limit``); for a component wasmtime's C API (wasmtime-py 50) gives
no way to: a component's core memory is not among its exports
(``wasmtime_component_instance_get_export_index`` sees component items only),
``wasmtime_store_limiter`` takes fixed limits with no callback and no
"refused" flag (no ``trap_on_grow_failure``), and the one per-memory hook,
``wasmtime_config_host_memory_creator_set``, is engine-wide and replaces the
pooling allocator's memories. If a test here starts failing because the
answer became 507, that signal exists: update docs/guest-errors.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import wasmtime
import wasmtime.component as wc
import yaml
from tests.conftest import GUESTS, Server, write_manifest

from wasmlet._errors import GuestMemoryLimit, GuestTrap
from wasmlet.guest import CgiRequest, Handler, Linkers, build_handler
from wasmlet.plan import parse_manifest

PROXY = GUESTS / "components" / "proxy_guest.wasm"
PAGE = 64 << 10


def handler(engine: wasmtime.Engine, memory: str) -> Handler:
    document = {"apiVersion": "core.oam.dev/v1beta1", "kind": "Application", "metadata": {"name": "app"},
                "spec": {"components": [{"name": "mem", "type": "wasm", "properties": {
                    "moduleURL": str(PROXY), "route": "/", "timeout": "5s", "memoryLimit": memory}}]}}
    [spec] = parse_manifest(yaml.safe_dump(document), "m.yaml")
    return build_handler(spec, wc.Component.from_file(engine, Path(PROXY)), Linkers(engine))


def request(path: str) -> CgiRequest:
    raw, _, query = path.partition("?")
    return CgiRequest(method="GET", path=raw, raw_path=raw, query=query, headers=(("host", "example.test"),),
                      body=b"")


@pytest.mark.parametrize(("memory", "pages"), [("4Mi", 64), ("8Mi", 128), ("5000Ki", 78)])
def test_memory_grow_is_refused_at_the_limit(engine: wasmtime.Engine, memory: str, pages: int) -> None:
    guest = handler(engine, memory)
    held = int(dict(guest.handle(request("/grow")).response.headers)[b"x-pages"])
    assert held == pages  # every whole page up to the limit, not one more
    assert guest.handle(request("/")).response.body == b"hello\n"  # the next instance starts afresh


def test_a_component_that_dies_at_its_limit_is_reported_as_a_trap(engine: wasmtime.Engine) -> None:
    guest = handler(engine, "4Mi")
    with pytest.raises(GuestTrap) as caught:
        guest.handle(request("/grow?trap"))
    assert not isinstance(caught.value, GuestMemoryLimit)  # no signal to tell it apart (docstring)
    assert "unreachable" in str(caught.value)
    assert guest.handle(request("/")).response.body == b"hello\n"


def test_over_http_the_host_serves_on(serve: Callable[..., Server], tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.yaml", [
        {"name": "mem", "properties": {"moduleURL": str(PROXY), "route": "/mem", "memoryLimit": "4Mi",
                                       "timeout": "5s"}},
        {"name": "hello", "properties": {"moduleURL": str(PROXY), "route": "/"}},
    ], name="px")
    server = serve(str(manifest))
    grown = httpx.get(server.url + "/mem/grow", timeout=30)
    assert grown.status_code == 200 and grown.headers["x-pages"] == "64"
    for _ in range(2):  # twice: the first failure leaves nothing behind that changes the second
        started = time.monotonic()
        failed = httpx.get(server.url + "/mem/grow?trap", timeout=30)
        assert failed.status_code == 500 and failed.headers["x-wasmlet-error"] == "trap"
        assert time.monotonic() - started < 5
        assert httpx.get(server.url + "/hello", timeout=30).text == "hello\n"
    assert httpx.get(server.url + "/mem/grow", timeout=30).headers["x-pages"] == "64"
    assert "cause=trap status=500" in server.output()
