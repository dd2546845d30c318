"""``RequestBody``: the bounded queue from the event loop (``receive()``) to a guest's thread (pure, real threads).

``receive`` here is an ``asyncio.Queue`` of ASGI messages standing in for the
server's, which is what the pump sees of uvicorn; the guest side is a real thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping
from typing import Any

from wasmlet.server._body import BodyBudget
from wasmlet.server._upload import RequestBody


def _message(body: bytes, more: bool = True) -> MutableMapping[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


class _Client:
    """ASGI ``receive`` fed by the test; counts how many times it was called."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self.calls = 0

    async def receive(self) -> MutableMapping[str, Any]:
        self.calls += 1
        return await self.queue.get()


def test_chunks_reach_the_reader_as_they_arrive_then_the_end() -> None:
    async def run() -> list[bytes | None]:
        budget = BodyBudget(1 << 20)
        body = RequestBody(asyncio.get_running_loop(), 1 << 20, budget)
        client = _Client()
        body.start(client.receive)
        got: list[bytes | None] = [body.read(100)]  # nothing yet: b"", not the end
        await client.queue.put(_message(b"one"))
        assert await asyncio.to_thread(body.wait, time.monotonic() + 5)
        got.append(body.read(100))
        await client.queue.put(_message(b"two", more=False))
        assert await asyncio.to_thread(body.wait, time.monotonic() + 5)
        got.append(body.read(2))  # a partial read keeps the rest
        got.append(body.read(100))
        got.append(body.read(100))
        assert body.error is None and body.cause is None
        body.close()
        assert budget.used == 0
        return got

    assert asyncio.run(run()) == [b"", b"one", b"tw", b"o", None]


def test_a_full_queue_stops_receiving_until_the_reader_makes_room() -> None:
    async def run() -> None:
        budget = BodyBudget(1 << 20)
        body = RequestBody(asyncio.get_running_loop(), 1 << 20, budget, limit=10)
        client = _Client()
        for _ in range(5):
            await client.queue.put(_message(b"0123456789"))
        body.start(client.receive)
        await asyncio.sleep(0.05)
        assert client.calls == 1  # one chunk filled the queue: the pump waits, the client's bytes stay with it
        assert budget.used == 10  # what the queue holds is counted
        assert await asyncio.to_thread(body.read, 100) == b"0123456789"
        await asyncio.sleep(0.05)
        assert client.calls == 2  # room made: the next one is received
        for _ in range(4):
            assert await asyncio.to_thread(body.wait, time.monotonic() + 5)
            assert body.read(100) == b"0123456789"
        await asyncio.sleep(0.05)
        assert budget.used <= 10  # read bytes are given back as the pump runs
        body.close()
        assert budget.used == 0

    asyncio.run(run())


def test_a_wait_for_a_stalled_client_ends_at_its_deadline() -> None:
    async def run() -> tuple[bool, float]:
        body = RequestBody(asyncio.get_running_loop(), 1 << 20, BodyBudget(1 << 20))
        client = _Client()
        body.start(client.receive)
        started = time.monotonic()
        ready = await asyncio.to_thread(body.wait, time.monotonic() + 0.3)
        body.close()
        return ready, time.monotonic() - started

    ready, waited = asyncio.run(run())
    assert not ready
    assert 0.25 <= waited < 3


def test_a_body_past_its_cap_fails_and_holds_nothing() -> None:
    async def run() -> None:
        budget = BodyBudget(1 << 20)
        body = RequestBody(asyncio.get_running_loop(), 15, budget)
        client = _Client()
        body.start(client.receive)
        await client.queue.put(_message(b"0123456789"))
        await client.queue.put(_message(b"0123456789"))  # 20 bytes: past the cap of 15
        assert await asyncio.to_thread(body.wait, time.monotonic() + 5)
        await asyncio.sleep(0.05)
        assert body.cause == "body-limit" and body.error is not None and "cap of 15" in body.error
        assert body.read(100) is None  # what was queued is dropped: a failed body is not read on
        assert budget.used == 0
        body.close()
        assert budget.used == 0

    asyncio.run(run())


def test_a_client_that_leaves_fails_the_body_for_a_waiting_reader() -> None:
    async def run() -> None:
        body = RequestBody(asyncio.get_running_loop(), 1 << 20, BodyBudget(1 << 20))
        client = _Client()
        body.start(client.receive)
        waiting = asyncio.create_task(asyncio.to_thread(body.wait, time.monotonic() + 30))
        await asyncio.sleep(0.05)
        await client.queue.put({"type": "http.disconnect"})
        assert await asyncio.wait_for(waiting, 5)  # woken at once, not at its deadline
        assert body.cause == "client-closed" and body.read(10) is None
        body.close()

    asyncio.run(run())


def test_a_full_budget_fails_the_body() -> None:
    async def run() -> None:
        budget = BodyBudget(100)
        assert budget.take(95)  # other requests' bodies
        body = RequestBody(asyncio.get_running_loop(), 1 << 20, budget)
        client = _Client()
        body.start(client.receive)
        await client.queue.put(_message(b"x" * 10))
        assert await asyncio.to_thread(body.wait, time.monotonic() + 5)
        assert body.cause == "body-memory"
        body.close()
        assert budget.used == 95  # nothing of this body is held

    asyncio.run(run())


def test_close_releases_the_reservation_and_stops_receiving() -> None:
    async def run() -> None:
        budget = BodyBudget(1 << 20)
        assert budget.take(1000)  # the reservation, taken before the pump starts (as _asgi does)
        body = RequestBody(asyncio.get_running_loop(), 1 << 20, budget, reserved=1000)
        client = _Client()
        body.start(client.receive)
        await client.queue.put(_message(b"x" * 600))
        assert await asyncio.to_thread(body.wait, time.monotonic() + 5)
        assert budget.used == 1000  # within the reservation
        body.close()
        assert budget.used == 0
        await client.queue.put(_message(b"y" * 600))
        await asyncio.sleep(0.05)
        assert budget.used == 0 and body.read(10) is None  # the pump is gone: nothing more is taken

    asyncio.run(run())
