"""Real guests, run in-process: one fresh instance per request, every failure classified."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import wasmtime
from tests.guest.conftest import expect_capacity, pool_slots_taken, ticking_engine

from wasmlet import (
    CapabilityError,
    GuestExit,
    GuestMemoryLimit,
    GuestOutputLimit,
    GuestTimeout,
    GuestTrap,
    MalformedResponse,
    ModuleError,
)
from wasmlet.control import plan_for_module
from wasmlet.guest import CgiRequest, GuestLimits, Linkers, WagiHandler
from wasmlet.guest import _native as native
from wasmlet.plan import EngineSettings
from wasmlet.server import Host

ROOT = Path(__file__).resolve().parents[2]
GUESTS = ROOT / "tests" / "guests"
EXAMPLES = ROOT / "examples"


def get(path: str = "/", query: str = "", body: bytes = b"", method: str = "GET") -> CgiRequest:
    return CgiRequest(method=method, path=path, raw_path=path, query=query,
                      headers=(("host", "test"), ("x-test", "yes")), body=body)


@pytest.fixture(autouse=True, params=["native", "ctypes"])
def request_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs on both request paths: the C helper's one crossing (``_native``),
    and the same wasmtime calls made one by one through ctypes (no compiler, ``WASMLET_NATIVE=0``)."""
    if request.param == "native":
        assert native.fast_path() is not None, "the native request path did not build (is a C compiler installed?)"
    else:
        monkeypatch.setattr(native, "fast_path", lambda: None)
    return str(request.param)


@pytest.fixture
def handler(request_path: str) -> Iterator[Callable[..., WagiHandler]]:
    hosts: list[Host] = []

    def load(module: Path, **properties: object) -> WagiHandler:
        host = Host(plan_for_module(module, **properties))
        host.start()
        hosts.append(host)
        loaded = next(iter(host.apps.values())).handler
        assert isinstance(loaded, WagiHandler)
        assert (loaded._fast is not None) == (request_path == "native" and not loaded.preopens)
        return loaded

    yield load
    for host in hosts:
        host.close()


def test_hello(handler: Callable[..., WagiHandler]) -> None:
    result = handler(EXAMPLES / "hello" / "hello.wasm").handle(get())
    assert result.response.status == 200
    assert result.response.body == b"Hello, world!\n"


def test_echo_sees_the_request(handler: Callable[..., WagiHandler]) -> None:
    echo = handler(EXAMPLES / "echo" / "echo.wasm", environment=[{"name": "QUALITY", "value": "85"}])
    body = echo.handle(get("/p/q", "a=1&b=2", b"payload", "POST")).response.body.decode()
    assert "method: POST" in body
    assert "path: /p/q" in body
    assert "query: a=1&b=2" in body
    assert "arg: a=1\narg: b=2" in body
    assert "header: X_TEST=yes" in body
    assert "env: QUALITY=85" in body
    assert "body: payload" in body


def test_a_nul_in_a_value_or_word_shifts_nothing(handler: Callable[..., WagiHandler]) -> None:
    # A C string ends at its NUL: a decoded path or query word holding one reaches the guest cut
    # there, and every other variable and word keeps its own value (the native path joins the
    # strings into one block, which it must not do then: _native.joined).
    echo = handler(EXAMPLES / "echo" / "echo.wasm", environment=[{"name": "QUALITY", "value": "85"}])
    body = echo.handle(get("/p\x00X_TEST=forged", "x=%00y&z=1")).response.body.decode()
    assert "path: /p\n" in body
    assert "arg: x=\narg: z=1\n" in body
    assert "header: X_TEST=yes" in body and "forged" not in body
    assert "env: QUALITY=85" in body
    assert "query: x=%00y&z=1" in body


def test_more_variables_than_the_helper_splits_on_its_stack(handler: Callable[..., WagiHandler]) -> None:
    echo = handler(EXAMPLES / "echo" / "echo.wasm")
    count = native.MAX_JOINED + 10
    headers = tuple((f"x-h{number}", str(number)) for number in range(count))
    body = echo.handle(CgiRequest(method="GET", path="/", raw_path="/", query="", headers=headers,
                                  body=b"")).response.body.decode()
    assert f"header: X_H{count - 1}={count - 1}\n" in body
    assert body.count("header: X_H") == count


def test_the_hosts_environment_never_leaks(handler: Callable[..., WagiHandler],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST_SECRET", "hunter2")
    body = handler(EXAMPLES / "echo" / "echo.wasm").handle(get()).response.body
    assert b"HOST_SECRET" not in body and b"hunter2" not in body


def test_fresh_instance_per_request(handler: Callable[..., WagiHandler]) -> None:
    counter = handler(GUESTS / "counter.wasm")
    bodies = {counter.handle(get()).response.body for _ in range(5)}
    assert bodies == {b"counter=1\n"}


def test_status_headers_and_stderr(handler: Callable[..., WagiHandler]) -> None:
    result = handler(GUESTS / "stderr.wasm").handle(get())
    assert result.response.status == 201
    assert (b"x-guest", b"yes") in result.response.headers
    assert result.stderr == b"stderr guest: first line\nstderr guest: second line\n"


def test_timeout(handler: Callable[..., WagiHandler]) -> None:
    loop = handler(GUESTS / "loop.wasm", timeout="300ms")
    started = time.monotonic()
    with pytest.raises(GuestTimeout) as info:
        loop.handle(get())
    elapsed = time.monotonic() - started
    assert info.value.status == 504
    assert 0.3 <= elapsed < 0.6, elapsed  # stopped within twice its deadline


def test_sleeping_guest_is_stopped_too(handler: Callable[..., WagiHandler]) -> None:
    # A guest blocked in poll_oneoff runs no wasm code, out of the epoch deadline's
    # reach; poll_oneoff itself is bounded by the deadline (guest/_sleep.py).
    slow = handler(GUESTS / "slow.wasm", timeout="1s")
    assert slow.handle(get(query="ms=50")).response.body == b"slept 50 ms\n"
    started = time.monotonic()
    with pytest.raises(GuestTimeout):
        slow.handle(get(query="ms=8000"))
    assert time.monotonic() - started < 2.0  # the 1 s deadline, not the 8 s asked for


def test_poll_with_more_subscriptions_than_the_host_reads(handler: Callable[..., WagiHandler]) -> None:
    # Each subscription is read in Python, where no deadline reaches: past 4,096, EINVAL at once.
    poll = handler(GUESTS / "security" / "poll_many.wasm", timeout="1s")
    with pytest.raises(GuestExit) as info:
        poll.handle(get())
    assert info.value.code == 28


def test_stack_overflow_is_a_trap(handler: Callable[..., WagiHandler]) -> None:
    with pytest.raises(GuestTrap, match="stack overflow") as info:
        handler(GUESTS / "recursion.wasm").handle(get())
    assert info.value.status == 500


def test_memory_limit(handler: Callable[..., WagiHandler]) -> None:
    bomb = handler(GUESTS / "membomb.wasm", memoryLimit="8Mi")
    with pytest.raises(GuestMemoryLimit) as info:
        bomb.handle(get())
    assert info.value.status == 507
    assert b"malloc failed" in info.value.stderr


def test_memory_limit_is_per_app(handler: Callable[..., WagiHandler]) -> None:
    # The same module with a higher limit gets further before failing.
    small = handler(GUESTS / "membomb.wasm", memoryLimit="4Mi")
    large = handler(GUESTS / "membomb.wasm", memoryLimit="16Mi")
    with pytest.raises(GuestMemoryLimit) as a:
        small.handle(get())
    with pytest.raises(GuestMemoryLimit) as b:
        large.handle(get())
    import re

    def mib(exc: BaseException) -> int:
        match = re.search(rb"after (\d+) MiB", exc.stderr)
        assert match, exc
        return int(match.group(1))

    assert 1 <= mib(a.value) <= 4
    assert 10 <= mib(b.value) <= 16


def test_output_flood(handler: Callable[..., WagiHandler]) -> None:
    flood = handler(GUESTS / "flood.wasm", maxResponseSize="1Mi", timeout="5s")
    started = time.monotonic()
    with pytest.raises(GuestOutputLimit) as info:
        flood.handle(get())
    assert info.value.status == 502
    assert time.monotonic() - started < 1.0  # stopped at the cap, not at the deadline


def test_non_zero_exit(handler: Callable[..., WagiHandler]) -> None:
    with pytest.raises(GuestExit) as info:
        handler(GUESTS / "exit3.wasm").handle(get())
    assert (info.value.status, info.value.code) == (501, 3)
    assert b"status 3" in info.value.stderr


def test_bad_cgi(handler: Callable[..., WagiHandler]) -> None:
    with pytest.raises(MalformedResponse) as info:
        handler(GUESTS / "badcgi.wasm").handle(get())
    assert info.value.status == 502


def test_statuses_are_distinct() -> None:
    statuses = [e.status for e in (GuestTrap, GuestExit, MalformedResponse, GuestTimeout, GuestMemoryLimit)]
    assert len(set(statuses)) == len(statuses)


def test_missing_entrypoint_is_refused_at_deploy() -> None:
    with pytest.raises(ModuleError, match="exports no function 'handle'"):
        plan_for_module(EXAMPLES / "hello" / "hello.wasm", entrypoint="handle")


def test_module_needing_more_memory_than_its_limit(tmp_path: Path) -> None:
    import wasmtime

    big = tmp_path / "big.wasm"
    big.write_bytes(wasmtime.wat2wasm('(module (memory (export "memory") 100) (func (export "_start")))'))
    with pytest.raises(ModuleError, match="needs 6553600 bytes of memory to start"):
        plan_for_module(big, memoryLimit="1Mi")


def test_unknown_import_is_refused_at_deploy(tmp_path: Path) -> None:
    import wasmtime

    odd = tmp_path / "odd.wasm"
    odd.write_bytes(wasmtime.wat2wasm('(module (import "env" "launch_missiles" (func)) (func (export "_start")))'))
    with pytest.raises(CapabilityError, match="env::launch_missiles") as info:
        plan_for_module(odd)
    assert info.value.offending == ("env::launch_missiles",)
    assert isinstance(info.value, ModuleError)


def test_import_granted_but_not_provided_is_refused_at_deploy(tmp_path: Path) -> None:
    import wasmtime

    odd = tmp_path / "odd.wasm"
    odd.write_bytes(wasmtime.wat2wasm(
        '(module (import "wasi_snapshot_preview1" "sock_accept" (func (param i32 i32 i32) (result i32)))'
        ' (func (export "_start")))'))
    with pytest.raises(CapabilityError, match="sock_accept"):
        plan_for_module(odd)  # not in the default whitelist
    plan_for_module(odd, capabilities={"wasiImports": ["sock_accept"]})  # granted explicitly: deploys


def test_not_wasm_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"#!/bin/sh\necho hi\n")
    with pytest.raises(ModuleError, match=r"not (a valid )?WebAssembly"):
        plan_for_module(bad)


def test_a_full_instance_pool_is_the_hosts_capacity_not_a_trap(request_path: str) -> None:
    # One pool slot, taken: a request cannot get an instance. That is 503 "capacity" (the breaker
    # does not count it), not a 500 "trap" blamed on the guest; once the slot is free it is served.
    with ticking_engine(EngineSettings(pool_instances=1, pool_max_memory=64 << 20, pool_warm_slots=1)) as engine:
        limits = GuestLimits(memory=16 << 20, timeout=1.0, max_response=1 << 20)
        hello = WagiHandler("hello", engine, Linkers(engine).core,
                            wasmtime.Module.from_file(engine, EXAMPLES / "hello" / "hello.wasm"), limits, "/")
        assert (hello._fast is not None) == (request_path == "native")
        with pool_slots_taken(engine):
            expect_capacity(lambda: hello.handle(get()))
        assert hello.handle(get()).response.body == b"Hello, world!\n"
