"""``ProxyHandler.handle`` reading a request body in-process: from ``CgiRequest.body``, or from a source as it arrives.

The guest is ``proxy_stream.wasm`` (``tests/guests/components/proxy_stream.c``);
the source is the server's own ``RequestBody``, fed on an event loop in a
thread of its own, as uvicorn's ``receive()`` feeds it in ``wasmlet serve``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import wasmtime
import wasmtime.component as wc
import yaml

from wasmlet._errors import GuestTimeout
from wasmlet.engine import EpochTicker, build_engine
from wasmlet.guest import CgiRequest, Linkers, ProxyHandler, build_handler
from wasmlet.guest._proxy._abi import Trap
from wasmlet.guest._proxy._io import SourceStream, _poll, timer
from wasmlet.guest._proxy._state import Session, bind
from wasmlet.plan import EngineSettings, parse_manifest
from wasmlet.server._body import BodyBudget
from wasmlet.server._upload import RequestBody

GUESTS = Path(__file__).resolve().parents[2] / "guests" / "components"


@pytest.fixture(scope="module")
def guest() -> Iterator[ProxyHandler]:
    settings = EngineSettings(pool_instances=8, pool_max_memory=64 << 20, pool_warm_slots=2)
    engine: wasmtime.Engine = build_engine(settings)
    ticker = EpochTicker(engine, settings.epoch_tick)
    ticker.start()
    document = {"apiVersion": "core.oam.dev/v1beta1", "kind": "Application", "metadata": {"name": "app"},
                "spec": {"components": [{"name": "up", "type": "wasm", "properties": {
                    "moduleURL": str(GUESTS / "proxy_stream.wasm"), "route": "/", "timeout": "1s"}}]}}
    spec = parse_manifest(yaml.safe_dump(document), "m.yaml")[0]
    handler = build_handler(spec, wc.Component.from_file(engine, GUESTS / "proxy_stream.wasm"), Linkers(engine))
    assert isinstance(handler, ProxyHandler) and handler.streams_request
    yield handler
    ticker.stop()


def _request(path: str, body: bytes = b"") -> CgiRequest:
    return CgiRequest(method="POST", path=path, raw_path=path, query="", headers=(("host", "example.test"),),
                      body=body)


class _Loop:
    """An event loop on a thread of its own, feeding a ``RequestBody`` as the server's would."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.messages: asyncio.Queue[MutableMapping[str, Any]] | None = None
        self.budget = BodyBudget(1 << 20)

    def body(self) -> RequestBody:
        async def make() -> RequestBody:
            self.messages = asyncio.Queue()
            body = RequestBody(self.loop, 1 << 20, self.budget)
            body.start(self.messages.get)
            return body

        return asyncio.run_coroutine_threadsafe(make(), self.loop).result(5)

    def send(self, data: bytes, more: bool = True) -> None:
        assert self.messages is not None
        message = {"type": "http.request", "body": data, "more_body": more}
        self.loop.call_soon_threadsafe(self.messages.put_nowait, message)

    def close(self, body: RequestBody) -> None:
        self.loop.call_soon_threadsafe(body.close)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def feeder() -> Iterator[_Loop]:
    loop = _Loop()
    yield loop
    loop.stop()


@pytest.mark.parametrize("path", ["/echo", "/blocking", "/count", "/skip"])
def test_a_buffered_body_reads_as_before(guest: ProxyHandler, path: str) -> None:
    body = b"0123456789" * 10_000
    result = guest.handle(_request(path, body))
    expected = {"/echo": body, "/blocking": body, "/count": b"100000 bytes, closed\n",
                "/skip": b"skipped 100000 bytes, closed\n"}[path]
    assert result.response.status == 200 and result.response.body == expected


@pytest.mark.parametrize("path", ["/echo", "/blocking"])
def test_a_body_that_arrives_while_the_guest_waits_is_read(guest: ProxyHandler, feeder: _Loop, path: str) -> None:
    body = feeder.body()

    def client() -> None:
        for part in (b"one,", b"two,", b"three"):
            time.sleep(0.1)  # the guest reads nothing, then waits (poll or blocking-read)
            feeder.send(part, more=part != b"three")

    thread = threading.Thread(target=client)
    thread.start()
    result = guest.handle(_request(path), source=body)
    thread.join(5)
    feeder.close(body)
    assert result.response.body == b"one,two,three"


def test_a_stalled_body_stops_the_guest_at_its_deadline(guest: ProxyHandler, feeder: _Loop) -> None:
    body = feeder.body()
    feeder.send(b"only this")
    started = time.monotonic()
    with pytest.raises(GuestTimeout):
        guest.handle(_request("/count"), source=body)
    assert time.monotonic() - started < 1 + 2  # a 1 s deadline
    feeder.close(body)


def test_trailers_resolve_to_none_and_the_guests_are_dropped_with_a_debug_line(
        guest: ProxyHandler, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="wasmlet.guest"):
        result = guest.handle(_request("/trailers", b"abcd"))
    assert result.response.status == 200 and result.response.body == b"4 bytes, trailers=none\n"
    assert "app=app/up trailers dropped: 1 field(s)" in caplog.text


def _session(deadline_s: float) -> Session:
    return Session("app/up", _request("/"), [], time.monotonic() + deadline_s, 1 << 20, (), None)


def test_poll_on_a_body_and_a_timer_returns_whichever_is_ready_first(feeder: _Loop) -> None:
    body = feeder.body()
    with bind(_session(5)) as session:
        reps = [session.add(SourceStream(body).subscribe()), timer(time.monotonic_ns() + 200_000_000)]
        started = time.monotonic()
        assert _poll(reps) == [1]  # nothing of the body: the timer, after its 200 ms
        assert 0.15 < time.monotonic() - started < 3
        reps[1] = timer(time.monotonic_ns() + 5_000_000_000)
        threading.Timer(0.1, feeder.send, (b"data",)).start()
        started = time.monotonic()
        assert _poll(reps) == [0]  # the body, as soon as it came, not the 5 s timer
        assert time.monotonic() - started < 3
    feeder.close(body)


def test_poll_on_a_body_that_never_comes_stops_the_guest_at_its_deadline(feeder: _Loop) -> None:
    body = feeder.body()
    with bind(_session(0.3)) as session:
        rep = session.add(SourceStream(body).subscribe())
        started = time.monotonic()
        with pytest.raises(Trap, match="did not arrive before the guest's deadline"):
            _poll([rep])
        assert session.timed_out and body.starved  # a 504, and the client's doing (not fed to the breaker)
        assert time.monotonic() - started < 3
    feeder.close(body)


def test_a_failed_body_reads_as_an_error_once_then_closed(feeder: _Loop) -> None:
    body = feeder.body()
    feeder.loop.call_soon_threadsafe(feeder.messages.put_nowait, {"type": "http.disconnect"})  # type: ignore[union-attr]
    with bind(_session(5)):
        stream = SourceStream(body)
        ok, error = stream.read(10, blocking=True)
        assert not ok and isinstance(error, tuple) and error[0] == "last-operation-failed"
        assert stream.read(10) == (False, ("closed", None))
        assert stream.skip(10, blocking=True) == (False, ("closed", None))
    assert body.cause == "client-closed"
    feeder.close(body)
