"""Short guests on the event loop's thread, long ones on worker threads (``wasmlet.server._inline``).

The policy is pure and tested directly; over HTTP, one worker (one event
loop) serves a guest that computes for seconds and one that sleeps while
hello keeps answering at once: a guest that outruns its inline budget gives
way to a thread and never holds the loop.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.conftest import EXAMPLES, GUESTS, Server, write_manifest

from wasmlet.guest import GuestStats
from wasmlet.server._inline import INLINE_BUDGET, InlinePolicy

Serve = Callable[..., Server]


class _Inline:
    inline_ok = True


class _Threads:
    inline_ok = False


def test_policy_backs_off_and_recovers(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("wasmlet.server._inline.time.monotonic", lambda: now[0])
    policy = InlinePolicy()
    handler = _Inline()
    assert policy.handler("a", handler) is handler
    assert policy.handler("a", _Threads()) is None  # outbound or directories: never inline
    policy.gave_way("a")
    assert policy.handler("a", handler) is None and policy.handler("b", handler) is handler  # per app
    now[0] += 1.01
    assert policy.handler("a", handler) is handler  # tried again after a second
    policy.gave_way("a")  # and gave way again: two seconds this time
    now[0] += 1.5
    assert policy.handler("a", handler) is None
    now[0] += 0.6
    assert policy.handler("a", handler) is handler
    for _ in range(20):
        policy.gave_way("a")
    now[0] += 59.9
    assert policy.handler("a", handler) is None
    now[0] += 0.2
    assert policy.handler("a", handler) is handler  # never more than a minute
    policy.finished("a")  # a run finished inline: the back-off starts afresh
    policy.gave_way("a")
    now[0] += 1.01
    assert policy.handler("a", handler) is handler
    assert policy.gave_way_count == 23
    assert InlinePolicy(enabled=False).handler("a", handler) is None


def test_a_long_run_that_never_gave_way_backs_off_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # One host call can hold the thread past the budget with no epoch check to stop it
    # (a single fd_write of the guest's whole memory); such a run ends inline, and still counts.
    now = [100.0]
    monkeypatch.setattr("wasmlet.server._inline.time.monotonic", lambda: now[0])
    policy = InlinePolicy()
    handler = _Inline()
    policy.ran("a", GuestStats(0, 0, 0, cpu_seconds=INLINE_BUDGET / 2, memory=0))
    assert policy.handler("a", handler) is handler
    policy.ran("a", GuestStats(0, 0, 0, cpu_seconds=0.2, memory=0))
    assert policy.handler("a", handler) is None
    now[0] += 1.01
    assert policy.handler("a", handler) is handler
    policy.ran("a", None)  # failed before any stats: nothing to hold against it
    assert policy.gave_way_count == 1


def test_an_apps_first_run_in_a_worker_pays_its_cold_costs_unheld(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("wasmlet.server._inline.time.monotonic", lambda: now[0])
    policy = InlinePolicy()
    handler = _Inline()
    long = GuestStats(0, 0, 0, cpu_seconds=INLINE_BUDGET * 2, memory=0)
    policy.ran("a", long)  # the first: scratch files, a pool slot's first page faults
    assert policy.handler("a", handler) is handler and policy.gave_way_count == 0
    policy.ran("a", long)  # the second long run is held against it
    assert policy.handler("a", handler) is None and policy.gave_way_count == 1
    policy.ran("b", None)  # a first run that failed before any stats uses up b's allowance too
    policy.ran("b", long)
    assert policy.handler("b", handler) is None and policy.gave_way_count == 2


@pytest.fixture
def one_loop(serve: Serve, tmp_path: Path) -> Server:
    components: list[dict[str, object]] = [
        {"name": "hello", "properties": {"moduleURL": str(EXAMPLES / "hello" / "hello.wasm"), "route": "/hello"}},
        {"name": "burn", "properties": {"moduleURL": str(GUESTS / "burn.wasm"), "route": "/burn", "timeout": "20s"}},
        {"name": "slow", "properties": {"moduleURL": str(GUESTS / "slow.wasm"), "route": "/slow", "timeout": "20s"}},
    ]
    return serve(str(write_manifest(tmp_path / "inline.yaml", components)), workers=1)


@pytest.mark.parametrize("path", ["/burn?ms=2500", "/slow?ms=2500"])
def test_a_long_guest_never_holds_the_event_loop(one_loop: Server, path: str) -> None:
    with httpx.Client(timeout=10) as client:  # warm: hello runs inline from here on
        for _ in range(20):
            assert client.get(one_loop.url + "/hello").status_code == 200
    stop = threading.Event()
    hello: list[tuple[int, float]] = []

    def keep_asking() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                started = time.monotonic()
                status = client.get(one_loop.url + "/hello").status_code
                hello.append((status, time.monotonic() - started))

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        long_ones = [pool.submit(httpx.get, one_loop.url + path, timeout=30) for _ in range(2)]
        time.sleep(0.2)
        watcher = threading.Thread(target=keep_asking)
        watcher.start()
        try:
            answers = [future.result() for future in long_ones]
        finally:
            stop.set()
            watcher.join()
    assert [a.status_code for a in answers] == [200, 200]
    assert all(a.text.endswith("2500 ms\n") for a in answers)
    assert len(hello) > 5 and {code for code, _ in hello} == {200}
    # Each hello answered while the long guests ran: generous for a loaded machine, far below their 2.5 s.
    assert max(t for _, t in hello) < 1.0
