"""``ResponseStream``: the bounded queue between a guest's thread and the event loop (pure, real threads)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import MutableMapping
from typing import Any

from wasmlet.server._stream import ResponseStream


def _collector() -> tuple[list[MutableMapping[str, Any]], Any]:
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    return sent, send


def test_writes_queued_while_the_loop_lags_go_out_as_one_chunk_then_the_end() -> None:
    async def run() -> list[MutableMapping[str, Any]]:
        stream = ResponseStream(asyncio.get_running_loop())
        sent, send = _collector()
        stream.start(200, [(b"x-a", b"1")])
        for i in range(100):
            assert stream.write(b"%d," % i, time.monotonic() + 5)
        stream.end()
        await stream.send_to(send, [(b"x-request-id", b"r")])
        assert stream.complete and stream.head_sent
        return sent

    sent = asyncio.run(run())
    assert sent[0] == {"type": "http.response.start", "status": 200,
                       "headers": [(b"x-a", b"1"), (b"x-request-id", b"r")]}
    assert sent[1] == {"type": "http.response.body", "body": b"".join(b"%d," % i for i in range(100)),
                       "more_body": False}
    assert len(sent) == 2


def test_a_full_queue_blocks_the_writer_until_its_deadline() -> None:
    async def run() -> tuple[bool, float]:
        stream = ResponseStream(asyncio.get_running_loop(), limit=10)
        stream.start(200, [])
        assert stream.write(b"x" * 10, time.monotonic() + 5)  # fills it: nobody sends
        started = time.monotonic()
        ok = await asyncio.to_thread(stream.write, b"y", time.monotonic() + 0.3)
        return ok, time.monotonic() - started

    ok, waited = asyncio.run(run())
    assert not ok
    assert 0.25 <= waited < 3  # it waited for room, and no longer than its deadline (generously)


def test_sending_makes_room_for_a_blocked_writer() -> None:
    async def run() -> list[MutableMapping[str, Any]]:
        stream = ResponseStream(asyncio.get_running_loop(), limit=10)
        sent, send = _collector()
        stream.start(200, [])

        def guest() -> None:
            for _ in range(20):  # 200 bytes through a 10-byte queue
                assert stream.write(b"0123456789", time.monotonic() + 10)
            stream.end()

        thread = threading.Thread(target=guest)
        thread.start()
        await asyncio.wait_for(stream.send_to(send, []), 10)
        thread.join(10)
        return sent

    sent = asyncio.run(run())
    assert b"".join(m["body"] for m in sent[1:]) == b"0123456789" * 20
    assert sent[-1]["more_body"] is False and all(m["more_body"] for m in sent[1:-1])


def test_closed_before_the_end_sends_what_is_queued_and_leaves_it_incomplete() -> None:
    async def run() -> tuple[ResponseStream, list[MutableMapping[str, Any]], bool]:
        stream = ResponseStream(asyncio.get_running_loop(), limit=4)
        sent, send = _collector()
        stream.start(200, [])
        stream.write(b"part", time.monotonic() + 5)
        blocked = asyncio.create_task(asyncio.to_thread(stream.write, b"more", time.monotonic() + 30))
        await asyncio.sleep(0.05)
        stream.close()  # the guest's call returned (or the request went away): a blocked writer returns
        ok = await asyncio.wait_for(blocked, 5)
        await asyncio.wait_for(stream.send_to(send, []), 5)
        return stream, sent, ok

    stream, sent, ok = asyncio.run(run())
    assert ok  # discarded, not a timeout
    assert not stream.complete
    assert [m.get("body") for m in sent[1:]] == [b"part"] and sent[-1]["more_body"] is True


def test_nothing_is_sent_when_closed_before_a_status() -> None:
    async def run() -> list[MutableMapping[str, Any]]:
        stream = ResponseStream(asyncio.get_running_loop())
        sent, send = _collector()
        task = asyncio.create_task(stream.send_to(send, []))
        await asyncio.sleep(0.01)
        stream.close()
        await asyncio.wait_for(task, 5)
        assert not stream.started and not stream.head_sent
        return sent

    assert asyncio.run(run()) == []


def test_refused_before_a_status_drops_what_the_guest_hands_over() -> None:
    async def run() -> tuple[ResponseStream, list[MutableMapping[str, Any]], bool]:
        stream = ResponseStream(asyncio.get_running_loop(), limit=4)
        sent, send = _collector()
        task = asyncio.create_task(stream.send_to(send, []))
        stream.refuse()  # the request body failed: the server answers instead
        stream.start(200, [])
        ok = stream.write(b"more than the queue holds", time.monotonic() + 5)  # dropped, never blocks
        stream.end()
        await asyncio.wait_for(task, 5)
        return stream, sent, ok

    stream, sent, ok = asyncio.run(run())
    assert ok and sent == [] and not stream.started and not stream.head_sent


def test_refused_after_a_status_changes_nothing() -> None:
    async def run() -> list[MutableMapping[str, Any]]:
        stream = ResponseStream(asyncio.get_running_loop())
        sent, send = _collector()
        stream.start(201, [])
        stream.refuse()  # too late: the guest committed its status first
        stream.write(b"body", time.monotonic() + 5)
        stream.end()
        await asyncio.wait_for(stream.send_to(send, []), 5)
        assert stream.complete
        return sent

    sent = asyncio.run(run())
    assert sent[0]["status"] == 201 and sent[-1] == {"type": "http.response.body", "body": b"body", "more_body": False}


def test_a_whole_response_is_taken_once_and_only_when_ended_and_small_enough() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        stream = ResponseStream(loop)
        assert stream.take_whole(100) is None  # no status yet
        stream.start(201, [(b"x-a", b"1")])
        assert stream.write(b"abc", time.monotonic() + 5)
        assert stream.take_whole(100) is None  # not ended: more may come
        assert stream.write(b"def", time.monotonic() + 5)
        stream.end()
        stream.close()
        assert stream.take_whole(5) is None  # over the limit: left to send_to
        assert stream.take_whole(6) == (201, [(b"x-a", b"1")], b"abcdef")
        assert stream.head_sent and stream.complete
        assert stream.take_whole(6) is None  # taken: nothing is sent twice
        sent, send = _collector()
        await stream.send_to(send, [])
        assert sent == []

    asyncio.run(run())


def test_a_refused_response_is_never_taken_whole() -> None:
    async def run() -> None:
        stream = ResponseStream(asyncio.get_running_loop())
        stream.refuse()
        stream.start(200, [])
        stream.end()
        stream.close()
        assert stream.take_whole(100) is None

    asyncio.run(run())
