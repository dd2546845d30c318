"""``_drain``: a streamed response's rest is sent within a bound, from a task or (inline) from the caller.

Pure asyncio, no socket: ``send`` stands for uvicorn's, which waits while the
client does not read (its transport paused). An inline run's response is sent
from the request's own task (``_SendRest``), a threaded run's by the task that
sent it while the guest ran; either way a client that stops reading is cut off
at the bound and the response left incomplete.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping
from typing import Any

import pytest

from wasmlet.server._stream import ResponseStream
from wasmlet.server._streamed import _drain, _SendRest


def _filled(loop: asyncio.AbstractEventLoop) -> ResponseStream:
    stream = ResponseStream(loop)
    stream.start(200, [(b"content-type", b"text/plain")])
    assert stream.write(b"x" * 1000, time.monotonic() + 5)
    stream.end()
    stream.close()
    return stream


@pytest.mark.parametrize("inline", [True, False])
def test_a_client_that_never_reads_is_cut_off_at_the_bound(inline: bool) -> None:
    sent: list[MutableMapping[str, Any]] = []

    async def stalled(message: MutableMapping[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            await asyncio.Event().wait()  # the transport stays paused: the client reads nothing

    async def run() -> tuple[ResponseStream, float]:
        loop = asyncio.get_running_loop()
        stream = _filled(loop)
        sender: Any = (_SendRest(stream, stalled, []) if inline
                       else loop.create_task(stream.send_to(stalled, [])))
        started = time.monotonic()
        await _drain(sender, 0.3)
        return stream, time.monotonic() - started

    stream, waited = asyncio.run(run())
    assert 0.25 <= waited < 3
    assert stream.head_sent and not stream.complete  # the caller logs it and closes the connection
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]


def test_an_inline_runs_response_goes_out_whole_from_the_callers_task() -> None:
    sent: list[MutableMapping[str, Any]] = []
    tasks: list[asyncio.Task[Any] | None] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        tasks.append(asyncio.current_task())
        sent.append(message)

    async def run() -> tuple[ResponseStream, asyncio.Task[Any] | None]:
        stream = _filled(asyncio.get_running_loop())
        await _drain(_SendRest(stream, send, [(b"x-request-id", b"r")]), 5)
        return stream, asyncio.current_task()

    stream, caller = asyncio.run(run())
    assert stream.complete
    assert sent == [
        {"type": "http.response.start", "status": 200,
         "headers": [(b"content-type", b"text/plain"), (b"x-request-id", b"r")]},
        {"type": "http.response.body", "body": b"x" * 1000, "more_body": False},
    ]
    assert tasks == [caller, caller]  # no task of its own


def test_a_send_that_fails_is_logged_and_leaves_the_response_incomplete(caplog: pytest.LogCaptureFixture) -> None:
    async def refusing(message: MutableMapping[str, Any]) -> None:
        raise RuntimeError("the server refused the message")

    async def run() -> ResponseStream:
        stream = _filled(asyncio.get_running_loop())
        await _drain(_SendRest(stream, refusing, []), 5)
        return stream

    stream = asyncio.run(run())
    assert not stream.complete
    assert "cannot send a streamed response" in caplog.text
