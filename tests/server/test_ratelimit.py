"""Token buckets with bounded memory, and the per-app concurrency limiter."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from wasmlet import Overloaded, RateLimited
from wasmlet.server import ConcurrencyLimiter, RateLimiter, client_key

T = TypeVar("T")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bucket_burst_then_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=5, clock=clock)
    assert all(limiter.check("c")[0] for _ in range(5))
    allowed, retry = limiter.check("c")
    assert not allowed and retry == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.check("c") == (True, 0.0)
    assert not limiter.check("c")[0]
    clock.now += 100  # refills to the burst, not beyond
    assert sum(limiter.check("c")[0] for _ in range(10)) == 5


def test_keys_are_independent() -> None:
    limiter = RateLimiter(rate=1, burst=1, clock=Clock())
    assert limiter.check(("1.2.3.4", "shop/web"))[0]
    assert not limiter.check(("1.2.3.4", "shop/web"))[0]
    assert limiter.check(("1.2.3.4", "shop/api"))[0]
    assert limiter.check(("5.6.7.8", "shop/web"))[0]


def test_memory_is_bounded() -> None:
    limiter = RateLimiter(rate=1, burst=2, max_keys=3, clock=Clock())
    for i in range(1000):  # a flood of distinct keys never grows the table
        limiter.check(f"flood-{i}")
    assert len(limiter) == 3


def test_busy_bucket_survives_idle_eviction() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=1, max_keys=2, clock=clock)
    limiter.check("idle")
    clock.now += 0.5
    limiter.check("busy")  # now empty
    clock.now += 0.6  # idle is full again (1.1 s), busy is not (0.6 s)
    limiter.check("new")  # evicts idle, keeps busy
    assert not limiter.check("busy")[0]


def test_client_key() -> None:
    assert client_key("1.2.3.4") == "1.2.3.4"
    assert client_key("2001:db8:1:2:3:4:5:6") == client_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert client_key("::ffff:1.2.3.4") == "1.2.3.4"
    assert client_key("unix-socket") == "unix-socket"


def test_rejected_headers() -> None:
    exc = RateLimited("slow down", 0.2)
    assert exc.status == 429 and exc.cause == "rate-limited" and exc.retry_after_header == b"1"
    assert Overloaded("busy", 2.5).retry_after_header == b"3"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_concurrency_limit_and_fifo_queue() -> None:
    async def scenario() -> list[str]:
        limiter = ConcurrencyLimiter(limit=2, queue=2, queue_timeout=5)
        gate = asyncio.Event()
        order: list[str] = []

        async def request(name: str) -> None:
            async with limiter.slot("app"):
                order.append(name)
                await gate.wait()

        tasks = [asyncio.create_task(request(f"r{i}")) for i in range(4)]
        await asyncio.sleep(0.01)
        assert limiter.active("app") == 2 and limiter.waiting("app") == 2
        with pytest.raises(Overloaded) as info:  # the queue is full: refused at once
            async with limiter.slot("app"):
                pass
        assert info.value.status == 503 and info.value.cause == "overloaded"
        async with limiter.slot("other"):  # apps do not share slots
            pass
        gate.set()
        await asyncio.gather(*tasks)
        assert limiter.active("app") == 0 and limiter.waiting("app") == 0
        return order

    assert run(scenario()) == ["r0", "r1", "r2", "r3"]


def test_queue_timeout() -> None:
    async def scenario() -> None:
        limiter = ConcurrencyLimiter(limit=1, queue=5, queue_timeout=0.05, retry_after=2)
        hold = asyncio.Event()

        async def holder() -> None:
            async with limiter.slot("app"):
                await hold.wait()

        task = asyncio.create_task(holder())
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="waited") as info:
            async with limiter.slot("app"):
                pass
        assert info.value.retry_after == 2
        assert limiter.waiting("app") == 0
        hold.set()
        await task
        async with limiter.slot("app"):  # the slot came back
            assert limiter.active("app") == 1
        assert limiter.active("app") == 0

    run(scenario())


def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    async def scenario() -> None:
        limiter = ConcurrencyLimiter(limit=1, queue=5, queue_timeout=5)
        hold = asyncio.Event()

        async def holder() -> None:
            async with limiter.slot("app"):
                await hold.wait()

        async def waiter() -> None:
            async with limiter.slot("app"):
                pass

        first = asyncio.create_task(holder())
        await asyncio.sleep(0)
        second = asyncio.create_task(waiter())
        await asyncio.sleep(0.01)
        assert limiter.waiting("app") == 1
        second.cancel()  # the client went away while queued
        with pytest.raises(asyncio.CancelledError):
            await second
        assert limiter.waiting("app") == 0
        hold.set()
        await first
        assert limiter.active("app") == 0

    run(scenario())


def test_bad_settings() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate=0)
    with pytest.raises(ValueError):
        ConcurrencyLimiter(limit=0)
