"""Guests run on the calling thread (``WagiHandler.handle_inline``): the same answers, and a long one gives way.

The event loop runs short guests itself (``wasmlet.server._inline``); these
tests hold the contract it relies on: an inline run answers exactly as a
threaded one, and a guest that computes past the budget or would wait for
anything is stopped without its effects being seen, in about an epoch tick.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from wasmlet import GuestExit, GuestMemoryLimit, GuestOutputLimit, GuestTimeout
from wasmlet.control import plan_for_module
from wasmlet.guest import CgiRequest, WagiHandler
from wasmlet.guest import _capi as capi
from wasmlet.server import Host

ROOT = Path(__file__).resolve().parents[2]
GUESTS = ROOT / "tests" / "guests"
EXAMPLES = ROOT / "examples"


def get(query: str = "", body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()) -> CgiRequest:
    return CgiRequest(method="POST" if body else "GET", path="/", raw_path="/", query=query,
                      headers=(("host", "test"), *headers), body=body)


@pytest.fixture
def handler() -> Iterator[Callable[..., WagiHandler]]:
    hosts: list[Host] = []

    def load(module: Path, **properties: object) -> WagiHandler:
        host = Host(plan_for_module(module, **properties))
        host.start()
        hosts.append(host)
        found = next(iter(host.apps.values())).handler
        assert isinstance(found, WagiHandler)
        return found

    yield load
    for host in hosts:
        host.close()


def test_inline_answers_as_a_thread_does(handler: Callable[..., WagiHandler]) -> None:
    echo = handler(EXAMPLES / "echo" / "echo.wasm", environment=[{"name": "QUALITY", "value": "85"}])
    assert echo.inline_ok
    request = get("a=1&b=2", b"payload", (("x-one", "1"), ("cookie", "a=1"), ("cookie", "b=2")))
    inline, _ = echo.handle_inline(request, "00-" + "1" * 32 + "-" + "2" * 16 + "-01")
    threaded = echo.handle(request, "00-" + "1" * 32 + "-" + "2" * 16 + "-01")
    assert inline is not None
    assert (inline.response.status, inline.response.headers, inline.response.body) == (
        threaded.response.status, threaded.response.headers, threaded.response.body)
    assert b"payload" in inline.response.body


def test_failures_inline_are_the_same_failures(handler: Callable[..., WagiHandler]) -> None:
    with pytest.raises(GuestExit):
        handler(GUESTS / "exit3.wasm").handle_inline(get())
    with pytest.raises(GuestMemoryLimit):
        handler(GUESTS / "membomb.wasm", memoryLimit="2Mi").handle_inline(get())
    stderr, _ = handler(GUESTS / "stderr.wasm").handle_inline(get())
    assert stderr is not None and stderr.stderr.startswith(b"stderr guest: first line")


def test_a_guest_that_computes_gives_way_within_a_tick(handler: Callable[..., WagiHandler]) -> None:
    burn = handler(GUESTS / "burn.wasm", timeout="5s")
    started = time.monotonic()
    result, deadline = burn.handle_inline(get("ms=3000"))
    held = time.monotonic() - started
    assert result is None  # given way: the caller runs it on a thread
    assert held < 0.5  # 1 ms of CPU plus an epoch tick (5 ms), generous for a loaded machine
    assert deadline > time.monotonic()
    # Run again on a thread, it keeps the first run's deadline: the whole request gets one timeout.
    with pytest.raises(GuestTimeout):
        burn.handle(get("ms=60000"), deadline=time.monotonic() + 0.3)


def test_an_endless_loop_gives_way_too(handler: Callable[..., WagiHandler]) -> None:
    loop = handler(GUESTS / "loop.wasm", timeout="10s")
    started = time.monotonic()
    assert loop.handle_inline(get())[0] is None
    assert time.monotonic() - started < 0.5


def test_a_guest_that_would_sleep_gives_way_at_once(handler: Callable[..., WagiHandler]) -> None:
    slow = handler(GUESTS / "slow.wasm", timeout="5s")
    started = time.monotonic()
    assert slow.handle_inline(get("ms=2000"))[0] is None
    assert time.monotonic() - started < 0.5  # never slept on the calling thread
    assert slow.handle(get("ms=10")).response.body == b"slept 10 ms\n"


def test_output_caps_hold_inline(handler: Callable[..., WagiHandler]) -> None:
    flood = handler(GUESTS / "flood.wasm", maxResponseSize="64Ki", timeout="5s")
    try:
        result, _ = flood.handle_inline(get())
    except GuestOutputLimit:
        return  # stopped inline by the cap
    assert result is None  # or gave way first; the threaded run then hits the cap
    with pytest.raises(GuestOutputLimit):
        flood.handle(get())


def test_guests_that_reach_outside_never_run_inline(handler: Callable[..., WagiHandler], tmp_path: Path) -> None:
    # Running again from the start is unseen only for a guest whose one effect is its output.
    assert handler(EXAMPLES / "hello" / "hello.wasm").inline_ok
    files = handler(GUESTS / "files.wasm",
                    capabilities={"files": [{"source": str(tmp_path), "destination": "/data"}]})
    assert files.preopens and not files.inline_ok
    outbound = handler(EXAMPLES / "hello" / "hello.wasm",
                       capabilities={"allowedOutboundHosts": ["https://example.com"]})
    assert outbound.outbound and not outbound.inline_ok


def test_string_arrays_by_address_match_ctypes_arrays() -> None:
    values = [b"", b"a", b"HTTP_X=1", "caf\u00e9".encode(), b"\xff" * 300]
    address, owner = capi.string_array(values)
    pointers = (ctypes.c_void_p * len(values)).from_address(address)
    assert [ctypes.string_at(p) if p else b"" for p in pointers] == values
    assert owner is not None


def test_encoding_caches_stay_small_whatever_clients_send(handler: Callable[..., WagiHandler]) -> None:
    from wasmlet.guest import _runner

    hello = handler(EXAMPLES / "hello" / "hello.wasm")
    for i in range(300):  # new header names and values on every request, some long
        headers = ((f"x-n{i}-{j}", f"{i}-{j}-" + "v" * (200 if j % 2 else 10)) for j in range(20))
        assert hello.handle(get(headers=tuple(headers))).response.status == 200
    values = _runner._env_value.__self__  # type: ignore[attr-defined]
    names = _runner._env_name.__self__  # type: ignore[attr-defined]
    assert len(values) <= 4097 and len(names) <= 4097
    assert all(len(v) <= 128 for v in values) and all(len(n) <= 128 for n in names)
    assert len(hello._names) <= 64
