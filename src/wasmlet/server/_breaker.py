"""A per-app circuit breaker for guests that keep burning their CPU budget.

A guest that times out or traps still costs a thread up to its deadline;
when one app does that repeatedly, the breaker stops sending it requests for
a while so the other apps keep their threads. Pure logic with an injected
clock; the caller decides what counts as a failure (``counts_as_failure``).

States::

    closed ──(threshold failures within window)──► open
    open ──(cooldown elapsed: next allow())──► half-open, one probe let through
    half-open ──record(success=True)──► closed (failures forgotten)
    half-open ──record(success=False)──► open (cooldown starts again)

While open, ``allow()`` returns ``(False, seconds until the cooldown ends)``.
In half-open, only the probe passes; others get ``(False, probe_retry)``. A
probe that never reports (its caller died) is given up after
``probe_timeout`` and another probe is let through. Outcomes recorded
while open (requests admitted before the breaker opened) are ignored.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import threading
import time
from collections.abc import Callable

from .._errors import GuestMemoryLimit, GuestTimeout, GuestTrap

__all__ = ["BreakerRegistry", "BreakerSettings", "CircuitBreaker", "State", "counts_as_failure"]

Clock = Callable[[], float]


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclasses.dataclass(frozen=True)
class BreakerSettings:
    threshold: int = 5  # failures ...
    window: float = 30.0  # ... within this many seconds open the circuit
    cooldown: float = 10.0  # seconds open before a probe
    probe_retry: float = 1.0  # Retry-After given while a probe is in flight
    probe_timeout: float = 60.0  # a probe that has not reported after this is given up

    def __post_init__(self) -> None:
        if self.threshold < 1 or self.window <= 0 or self.cooldown <= 0 or self.probe_timeout <= 0:
            raise ValueError("breaker threshold, window, cooldown and probe timeout must be positive")


def counts_as_failure(exc: BaseException | None) -> bool:
    """What trips the breaker: the guest used up its deadline, trapped, or hit its memory limit.

    A non-zero exit, bad CGI output or an output cap is the app's answer,
    cheap to produce, and does not count; nor does ``GuestCapacity`` (the
    worker had no instance slot free: the host's load, not the app's fault).
    """
    return isinstance(exc, (GuestTimeout, GuestTrap, GuestMemoryLimit))


class CircuitBreaker:
    """One app's breaker. Thread-safe."""

    def __init__(self, settings: BreakerSettings | None = None, clock: Clock = time.monotonic) -> None:
        self.settings = settings or BreakerSettings()
        self._clock = clock
        self._lock = threading.Lock()
        self._state = State.CLOSED
        self._failures: collections.deque[float] = collections.deque()
        self._opened_at = 0.0
        self._probe_at: float | None = None

    @property
    def state(self) -> State:
        with self._lock:
            return self._state

    def peek(self) -> State:
        """The state without the lock: for a gauge, which a change a moment later corrects."""
        return self._state

    def allow(self) -> tuple[bool, float]:
        """May a request go to the guest now? ``(True, 0)`` or ``(False, retry_after_seconds)``."""
        if self.peek() is State.CLOSED:
            # Every request asks: closed, it needs neither the lock nor the clock. A read racing
            # a change to open sees the state just before it, as if it had taken the lock first.
            return True, 0.0
        now = self._clock()
        s = self.settings
        with self._lock:
            if self._state is State.CLOSED:
                return True, 0.0
            if self._state is State.OPEN:
                remaining = self._opened_at + s.cooldown - now
                if remaining > 0:
                    return False, remaining
                self._state = State.HALF_OPEN
                self._probe_at = now
                return True, 0.0
            # half-open
            if self._probe_at is None or now - self._probe_at >= s.probe_timeout:
                self._probe_at = now
                return True, 0.0
            return False, s.probe_retry

    def record(self, success: bool) -> None:
        """Report the outcome of a request ``allow()`` let through."""
        if success and self.peek() is State.CLOSED:
            return  # the common case changes nothing (as below, without the lock)
        now = self._clock()
        s = self.settings
        with self._lock:
            if self._state is State.HALF_OPEN:
                self._probe_at = None
                if success:
                    self._state = State.CLOSED
                    self._failures.clear()
                else:
                    self._open(now)
                return
            if self._state is State.OPEN or success:
                return
            self._failures.append(now)
            while self._failures and self._failures[0] <= now - s.window:
                self._failures.popleft()
            if len(self._failures) >= s.threshold:
                self._open(now)

    def _open(self, now: float) -> None:
        self._state = State.OPEN
        self._opened_at = now
        self._failures.clear()


class BreakerRegistry:
    """One breaker per app name, created on first use (apps are the deployed ones: bounded)."""

    def __init__(self, settings: BreakerSettings | None = None, clock: Clock = time.monotonic) -> None:
        self.settings = settings or BreakerSettings()
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def get(self, app: str) -> CircuitBreaker:
        breaker = self._breakers.get(app)
        if breaker is None:
            with self._lock:
                breaker = self._breakers.setdefault(app, CircuitBreaker(self.settings, self._clock))
        return breaker

    def allow(self, app: str) -> tuple[bool, float]:
        return self.get(app).allow()

    def record(self, app: str, success: bool) -> None:
        self.get(app).record(success)
