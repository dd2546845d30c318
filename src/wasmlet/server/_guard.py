"""Flood protection and the CPU circuit breaker, per app, in front of the guests.

Order for a request (cheapest refusal first): the client's token bucket for
this app (429), the app's own token bucket (429), the app's circuit breaker
(503 while open), a bounded wait for one of the app's guest slots (503 when
its queue is full), then a bounded wait for one of the worker's guest threads
(``ThreadShare``, 503 after ``timeout``).

No app may hold more than ``concurrency.max`` of a worker's guest threads
(default three quarters), and all apps together cannot take the last
``reserve`` threads unless they run none: an app that runs no guest finds a
thread at once however many slow requests the others sent (issue 14: twelve
slow requests each to two apps used to fill all sixteen threads). It takes
``reserve + 1`` apps, each holding threads at once, to make another wait, and
then only until one of their guests ends, by its deadline at the latest.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from .._errors import CircuitOpen, GuestError, Overloaded, RateLimited, Rejected
from ..plan import ComponentSpec
from ..telemetry import BREAKER_STATE, RATE_LIMITED
from ._breaker import BreakerRegistry, State, counts_as_failure
from ._ratelimit import ConcurrencyLimiter, RateLimiter, client_key

__all__ = ["AppGuard", "Guards", "ThreadShare"]

_BREAKER_GAUGE = {State.CLOSED: 0, State.HALF_OPEN: 1, State.OPEN: 2}


class ThreadShare:
    """A worker's ``threads`` guest threads, the last ``reserve`` kept for apps that run none.

    An app may take a thread while one is free and either it runs no guest,
    or more than ``reserve`` are free. Waiters are served first come, first
    served among those that may take one, so an app that runs nothing passes
    the apps that already run many. asyncio, one event loop; not thread-safe.
    """

    def __init__(self, threads: int, reserve: int | None = None, timeout: float = 5.0,
                 retry_after: float = 1.0) -> None:
        if threads < 1 or timeout <= 0:
            raise ValueError("threads must be at least 1 and timeout positive")
        self.threads = threads
        self.reserve = (max(1, threads // 4) if threads > 1 else 0) if reserve is None else reserve
        if not 0 <= self.reserve < threads:
            raise ValueError("reserve must be at least 0 and below threads")
        self.timeout = timeout
        self.retry_after = retry_after
        self.busy: dict[str, int] = {}
        self.total = 0
        self._waiters: collections.deque[tuple[str, asyncio.Future[None]]] = collections.deque()

    def may_take(self, app: str) -> bool:
        free = self.threads - self.total
        return free > 0 and (self.busy.get(app, 0) == 0 or free > self.reserve)

    async def acquire(self, app: str) -> None:
        """Take a thread for ``app``, waiting up to ``timeout``; raise ``Overloaded`` after that."""
        if self.may_take(app):
            self._take(app)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (app, waiter)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.timeout)
        except (TimeoutError, asyncio.CancelledError):
            if waiter.done() and not waiter.cancelled():
                self.release(app)  # handed over just as we gave up: pass it on
            else:
                waiter.cancel()
                if entry in self._waiters:
                    self._waiters.remove(entry)
            task = asyncio.current_task()
            if task is not None and task.cancelling() > 0:
                raise
            raise Overloaded(
                f"{app}: waited {self.timeout:g}s for one of the worker's {self.threads} guest threads "
                f"({self.total} busy, {self.busy.get(app, 0)} of them this app's)", self.retry_after,
            ) from None

    def release(self, app: str) -> None:
        self.total -= 1
        left = self.busy[app] - 1
        if left:
            self.busy[app] = left
        else:
            del self.busy[app]
        for entry in list(self._waiters):
            if self.total >= self.threads:
                break
            waiter_app, waiter = entry
            if waiter.done():
                self._waiters.remove(entry)
            elif self.may_take(waiter_app):
                self._waiters.remove(entry)
                self._take(waiter_app)
                waiter.set_result(None)

    def _take(self, app: str) -> None:
        self.total += 1
        self.busy[app] = self.busy.get(app, 0) + 1


class AppGuard:
    def __init__(self, spec: ComponentSpec, breakers: BreakerRegistry, threads: int, metrics: bool,
                 share: ThreadShare | None = None) -> None:
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
        self._share = share if share is not None else ThreadShare(threads)
        self._gauge: Any = None  # BREAKER_STATE's child for this app, once used
        self._gauged: State | None = None

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

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One of the app's guest slots, then one of the worker's threads; raises ``Overloaded``."""
        async with self._slots.slot(self.app):
            await self._share.acquire(self.app)
            try:
                yield
            finally:
                self._share.release(self.app)

    def free_now(self) -> bool:
        """Whether ``slot()`` would be granted at once: one of the app's slots and a thread are free.

        A guest run inline (``WasmletApp``, ``_inline``) takes neither, but only
        runs when both could be taken, so it never passes a request waiting for them.
        """
        return self._slots.free_now(self.app) and self._share.may_take(self.app)

    def record(self, failure: GuestError | None) -> None:
        """Feed one finished request to the breaker."""
        self._breakers.record(self.app, not counts_as_failure(failure))
        if self._metrics:
            state = self._breakers.get(self.app).peek()
            if state is not self._gauged:  # the gauge keeps its value: write it when it changes only
                if self._gauge is None:
                    self._gauge = BREAKER_STATE.labels(self.app)
                self._gauge.set(_BREAKER_GAUGE[state])
                self._gauged = state

    def rejected(self, exc: Rejected) -> None:
        if self._metrics:
            RATE_LIMITED.labels(self.app, exc.cause).inc()


class Guards:
    """The guards of a worker's apps, one each, sharing one breaker registry."""

    def __init__(self, threads: int, metrics: bool = True) -> None:
        self.threads = threads
        self.metrics = metrics
        self.breakers = BreakerRegistry()
        self.share = ThreadShare(threads)  # the worker's guest threads, across apps
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
            guard = AppGuard(spec, self.breakers, self.threads, self.metrics, self.share)
            self._guards[spec.qualified_name] = guard
        guard.spec = spec
        return guard
