"""The worker's guest threads shared among apps (``ThreadShare``): pure asyncio, no server."""

from __future__ import annotations

import asyncio

import pytest

from wasmlet import Overloaded
from wasmlet.server._guard import ThreadShare


def test_an_app_running_nothing_always_finds_a_thread() -> None:
    async def scenario() -> None:
        share = ThreadShare(16)  # reserve 4
        assert share.reserve == 4
        for _ in range(12):
            await share.acquire("a")
        # "a" holds 12: the last 4 are kept for apps that run nothing.
        waiting_a = asyncio.create_task(share.acquire("a"))
        await asyncio.sleep(0)
        assert not waiting_a.done()
        await share.acquire("b")  # one each for b, c, d and e ...
        await share.acquire("c")
        await share.acquire("d")
        waiting_b = asyncio.create_task(share.acquire("b"))  # ... but b already runs one
        await asyncio.sleep(0)
        assert not waiting_b.done()
        await share.acquire("hello")
        assert share.total == 16 and share.busy == {"a": 12, "b": 1, "c": 1, "d": 1, "hello": 1}
        # Threads freed go to waiters that may take them, first come first served.
        for _ in range(3):
            share.release("a")
        await asyncio.sleep(0)
        assert share.total == 13 and not waiting_a.done() and not waiting_b.done()  # 3 free: not above 4
        share.release("c")
        share.release("d")
        await asyncio.sleep(0)
        assert share.busy["a"] == 10  # 5 free > 4: the oldest waiter goes
        await asyncio.wait_for(waiting_a, 1)
        assert not waiting_b.done()
        share.release("a")
        assert share.busy["b"] == 2
        await asyncio.wait_for(waiting_b, 1)

    asyncio.run(scenario())


def test_the_wait_is_bounded() -> None:
    async def scenario() -> None:
        share = ThreadShare(2, timeout=0.05)  # reserve 1: an app alone gets one thread of two
        await share.acquire("a")
        with pytest.raises(Overloaded, match="guest threads"):
            await share.acquire("a")
        assert share.total == 1 and not share._waiters
        await share.acquire("b")
        share.release("a")
        share.release("b")
        assert share.total == 0 and share.busy == {}

    asyncio.run(scenario())


def test_a_cancelled_waiter_passes_its_thread_on() -> None:
    async def scenario() -> None:
        share = ThreadShare(1)
        await share.acquire("a")
        first = asyncio.create_task(share.acquire("b"))
        second = asyncio.create_task(share.acquire("c"))
        await asyncio.sleep(0)
        first.cancel()
        share.release("a")
        await asyncio.sleep(0)
        with pytest.raises(asyncio.CancelledError):
            await first
        await second
        assert share.busy == {"c": 1}

    asyncio.run(scenario())
