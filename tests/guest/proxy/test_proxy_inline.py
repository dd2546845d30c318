"""A wasi:http component run on the calling thread while it stays short (``ProxyHandler.handle_inline``).

The server runs a component that can reach nothing outside its instance on the
event loop's thread, as it runs short WAGI guests; at its first wait or past its
CPU budget the guest gives way and the request runs again on a worker thread
(over HTTP: ``test_proxy_streaming.py``'s guest that sleeps between chunks does).
"""

from __future__ import annotations

import time

import pytest
import wasmtime
from tests.guest.proxy.test_proxy_handler import linkers, make, request  # noqa: F401  (a fixture)

from wasmlet._errors import GuestTrap
from wasmlet.guest import Handler, Linkers, ProxyHandler

pytestmark = pytest.mark.usefixtures("request_path")  # both request paths (conftest)


@pytest.fixture(scope="module")
def guest(engine: wasmtime.Engine, linkers: Linkers, request_path: str) -> ProxyHandler:  # noqa: F811
    handler = make(engine, linkers, maxResponseSize="256Ki", timeout="5s")
    assert isinstance(handler, ProxyHandler)
    return handler


class _Sink:
    """What the server hands an inline run: it keeps what it is given and never makes a write wait."""

    def __init__(self) -> None:
        self.head: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self.chunks: list[bytes] = []
        self.ended = False

    def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.head = (status, headers)

    def write(self, data: bytes, deadline: float) -> bool:
        self.chunks.append(data)
        return True

    def end(self) -> None:
        self.ended = True


def test_a_short_guest_answers_inline(guest: ProxyHandler) -> None:
    result, deadline = guest.handle_inline(request("/hello"), budget=0.5)
    assert result is not None and result.response.status == 200 and result.response.body == b"hello\n"
    assert deadline > time.monotonic()


def test_an_inline_run_streams_into_the_sink_it_is_given(guest: ProxyHandler) -> None:
    sink = _Sink()
    result, _ = guest.handle_inline(request("/stream?5"), budget=0.5, sink=sink)
    assert result is not None
    assert sink.head is not None and sink.head[0] == 200 and sink.ended
    assert b"".join(sink.chunks).count(b"\n") == 5


def test_a_guest_that_would_wait_gives_way_at_once(guest: ProxyHandler) -> None:
    # /sleep asks for 60 s: an inline run must not wait at all; the retry gets the whole deadline left.
    started = time.monotonic()
    result, deadline = guest.handle_inline(request("/sleep"), budget=0.5)
    assert result is None
    assert time.monotonic() - started < 0.5
    assert deadline - time.monotonic() > 4.0


def test_a_busy_guest_gives_way_past_its_budget(guest: ProxyHandler) -> None:
    started = time.monotonic()
    result, _ = guest.handle_inline(request("/loop"), budget=0.02)
    assert result is None
    assert time.monotonic() - started < 1.0  # the 5 s deadline was not waited for


def test_a_failure_inline_is_the_same_failure(guest: ProxyHandler) -> None:
    with pytest.raises(GuestTrap):
        guest.handle_inline(request("/trap"), budget=0.5)


def test_the_retry_on_a_thread_answers_within_the_first_runs_deadline(guest: ProxyHandler) -> None:
    result, deadline = guest.handle_inline(request("/hello"), budget=0.5)
    assert result is not None
    again = guest.handle(request("/hello"), deadline=deadline)
    assert again.response.body == b"hello\n"
    with pytest.raises(Exception, match="deadline"):
        guest.handle(request("/sleep"), deadline=time.monotonic() + 0.2)


def test_only_a_component_that_reaches_nothing_outside_runs_inline(engine: wasmtime.Engine,
                                                                   linkers: Linkers,  # noqa: F811
                                                                   guest: ProxyHandler) -> None:
    fetching: Handler = make(engine, linkers, capabilities={"allowedOutboundHosts": ["http://127.0.0.1:1"]})
    assert guest.inline_ok
    assert not getattr(fetching, "inline_ok", True)
