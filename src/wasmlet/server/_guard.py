"""Flood protection and the CPU circuit breaker, per app, in front of the guests.

Order for a request (cheapest refusal first): the client's token bucket for
this app (429), the app's own token bucket (429), the app's circuit breaker
(503 while open), then a bounded wait for one of the app's guest slots (503 when
its queue is full). Each app has its own limits, so one app under attack
cannot take the guest threads another app needs: no app may hold more than
``concurrency.max`` of a worker's guest threads.
"""

from __future__ import annotations

import contextlib

from .._errors import CircuitOpen, GuestError, RateLimited, Rejected
from ..plan import ComponentSpec
from ..telemetry import BREAKER_STATE, RATE_LIMITED
from ._breaker import BreakerRegistry, State, counts_as_failure
from ._ratelimit import ConcurrencyLimiter, RateLimiter, client_key

__all__ = ["AppGuard", "Guards"]

_BREAKER_GAUGE = {State.CLOSED: 0, State.HALF_OPEN: 1, State.OPEN: 2}


class AppGuard:
    def __init__(self, spec: ComponentSpec, breakers: BreakerRegistry, threads: int, metrics: bool) -> None:
        self.app = spec.qualified_name
        self.spec = spec  # the version last seen; another with the same limits shares this guard
        self.settings = (spec.rate_limit, spec.concurrency)  # what this guard enforces
        rate = spec.rate_limit
        self._clients = (
            RateLimiter(rate.per_client, rate.per_client_burst or 2 * rate.per_client) if rate.per_client > 0 else None
        )
        self._app_bucket = (
            RateLimiter(rate.per_app, rate.per_app_burst or 2 * rate.per_app, max_keys=1) if rate.per_app > 0 else None
        )
        limit = spec.concurrency.max or max(1, threads * 3 // 4)
        self._slots = ConcurrencyLimiter(limit=min(limit, threads), queue=spec.concurrency.queue)
        self._breakers = breakers
        self._metrics = metrics

    def admit(self, client_address: str) -> None:
        """Raise ``Rejected`` (``RateLimited`` or ``CircuitOpen``) if the request may not go on."""
        if self._clients is not None:
            ok, retry = self._clients.check(client_key(client_address))
            if not ok:
                raise RateLimited(f"{self.app}: client {client_address} is over its rate limit", retry)
        if self._app_bucket is not None:
            ok, retry = self._app_bucket.check(self.app)
            if not ok:
                raise RateLimited(f"{self.app}: the app is over its rate limit", retry)
        ok, retry = self._breakers.allow(self.app)
        if not ok:
            raise CircuitOpen(f"{self.app}: circuit breaker open after repeated timeouts or traps", retry)

    def slot(self) -> contextlib.AbstractAsyncContextManager[None]:
        """One of the app's guest slots; raises ``Overloaded`` when its queue is full."""
        return self._slots.slot(self.app)

    def record(self, failure: GuestError | None) -> None:
        """Feed one finished request to the breaker."""
        self._breakers.record(self.app, not counts_as_failure(failure))
        if self._metrics:
            BREAKER_STATE.labels(self.app).set(_BREAKER_GAUGE[self._breakers.get(self.app).state])

    def rejected(self, exc: Rejected) -> None:
        if self._metrics:
            RATE_LIMITED.labels(self.app, exc.cause).inc()


class Guards:
    """The guards of a worker's apps, one each, sharing one breaker registry."""

    def __init__(self, threads: int, metrics: bool = True) -> None:
        self.threads = threads
        self.metrics = metrics
        self.breakers = BreakerRegistry()
        self._guards: dict[str, AppGuard] = {}

    def for_spec(self, spec: ComponentSpec) -> AppGuard:
        """The app's guard, made anew when a deploy changed its ``rateLimit`` or ``concurrency``.

        Guards live per app name, across versions, so that buckets and the queue
        survive a redeploy that keeps the limits; one that changes them takes
        effect on the next request. Requests already holding a slot of the old
        guard release it there. The breaker is per app, kept across both.
        """
        guard = self._guards.get(spec.qualified_name)
        if guard is not None and guard.spec is spec:  # the hot path: same version as last time
            return guard
        if guard is None or guard.settings != (spec.rate_limit, spec.concurrency):
            guard = AppGuard(spec, self.breakers, self.threads, self.metrics)
            self._guards[spec.qualified_name] = guard
        guard.spec = spec
        return guard
