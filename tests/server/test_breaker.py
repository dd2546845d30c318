"""The circuit breaker's state machine, on a fake clock."""

from __future__ import annotations

import pytest

from wasmlet import GuestCapacity, GuestExit, GuestMemoryLimit, GuestTimeout, GuestTrap, MalformedResponse
from wasmlet.server import BreakerRegistry, BreakerSettings, CircuitBreaker, State, counts_as_failure


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def state(b: CircuitBreaker) -> State:
    return b.state  # a call, so each check reads the state afresh (no narrowing)


def breaker(clock: Clock, **settings: float) -> CircuitBreaker:
    return CircuitBreaker(BreakerSettings(**settings), clock)  # type: ignore[arg-type]


def test_defaults() -> None:
    s = BreakerSettings()
    assert (s.threshold, s.window, s.cooldown) == (5, 30.0, 10.0)


def test_opens_after_threshold_failures_in_window(clock: Clock) -> None:
    b = breaker(clock)
    for _ in range(4):
        assert b.allow() == (True, 0.0)
        b.record(False)
        clock.now += 1
    assert state(b) is State.CLOSED
    b.record(False)
    assert state(b) is State.OPEN
    allowed, retry = b.allow()
    assert not allowed and retry == pytest.approx(10.0)
    clock.now += 4
    allowed, retry = b.allow()
    assert not allowed and retry == pytest.approx(6.0)


def test_failures_outside_the_window_do_not_count(clock: Clock) -> None:
    b = breaker(clock)
    for _ in range(10):
        b.record(False)
        clock.now += 8  # 4 failures per 30 s at most
    assert state(b) is State.CLOSED


def test_successes_do_not_reset_the_window(clock: Clock) -> None:
    b = breaker(clock, threshold=3)
    for _ in range(3):
        b.record(False)
        b.record(True)
    assert state(b) is State.OPEN


def test_half_open_lets_one_probe_through_then_closes(clock: Clock) -> None:
    b = breaker(clock, threshold=1, cooldown=10, probe_retry=1)
    b.record(False)
    clock.now += 10
    assert b.allow() == (True, 0.0)
    assert state(b) is State.HALF_OPEN
    assert b.allow() == (False, 1.0)  # one probe at a time
    b.record(True)
    assert state(b) is State.CLOSED
    assert b.allow() == (True, 0.0)
    b.record(False)  # the failure count started again from zero
    assert state(b) is State.OPEN


def test_a_failed_probe_reopens(clock: Clock) -> None:
    b = breaker(clock, threshold=1, cooldown=10)
    b.record(False)
    clock.now += 10
    assert b.allow()[0]
    b.record(False)
    assert state(b) is State.OPEN
    allowed, retry = b.allow()
    assert not allowed and retry == pytest.approx(10.0)  # a fresh cooldown


def test_a_lost_probe_is_replaced(clock: Clock) -> None:
    b = breaker(clock, threshold=1, cooldown=10, probe_timeout=30)
    b.record(False)
    clock.now += 10
    assert b.allow()[0]
    clock.now += 29
    assert not b.allow()[0]
    clock.now += 1
    assert b.allow()[0]


def test_outcomes_while_open_are_ignored(clock: Clock) -> None:
    b = breaker(clock, threshold=1, cooldown=10)
    b.record(False)
    b.record(True)  # a request admitted before the breaker opened
    assert state(b) is State.OPEN


def test_registry_is_per_app(clock: Clock) -> None:
    registry = BreakerRegistry(BreakerSettings(threshold=2), clock)
    registry.record("a", False)
    registry.record("a", False)
    assert registry.allow("a")[0] is False
    assert registry.allow("b") == (True, 0.0)


def test_what_counts() -> None:
    assert counts_as_failure(GuestTimeout("x")) and counts_as_failure(GuestTrap("x"))
    assert counts_as_failure(GuestMemoryLimit("x"))
    assert not counts_as_failure(GuestExit("x", 3)) and not counts_as_failure(MalformedResponse("x"))
    assert not counts_as_failure(None)
    assert not counts_as_failure(GuestCapacity("x"))  # the worker's pool was full: not the app's fault


def test_bad_settings() -> None:
    with pytest.raises(ValueError):
        BreakerSettings(threshold=0)
