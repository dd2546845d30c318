"""Flood protection: token buckets per client, and a bounded queue per app.

``RateLimiter`` is pure logic with an injected clock: one token bucket per
key (typically ``(client_key(address), app)``), ``rate`` tokens a second up
to ``burst``. Memory is bounded: at most ``max_keys`` buckets. A bucket that
has been idle long enough to refill is the same as no bucket, so such
buckets are dropped first; if the table is still full, the least recently
used bucket is dropped (its client is forgiven, never a newcomer refused:
a flood of distinct addresses must not lock out legitimate clients).

``ConcurrencyLimiter`` bounds the guests one app runs at once in a worker and
the requests waiting for them: ``async with limiter.slot(app):`` waits in a
FIFO queue when the app is at its limit, and raises ``Overloaded`` at once
when the queue is full, or after ``queue_timeout`` seconds of waiting.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import ipaddress
import time
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager

from .._errors import Overloaded

__all__ = ["ConcurrencyLimiter", "RateLimiter", "TokenBucket", "client_key"]

Clock = Callable[[], float]


def client_key(address: str) -> str:
    """The unit a client is limited by: its IPv4 address, or its IPv6 /64.

    One IPv6 host usually holds a whole /64 and can pick any address in it,
    so limiting single IPv6 addresses would limit nothing.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclasses.dataclass
class TokenBucket:
    rate: float  # tokens per second
    burst: float  # capacity
    tokens: float
    updated: float

    def take(self, now: float, cost: float = 1.0) -> tuple[bool, float]:
        """Take ``cost`` tokens; ``(True, 0)`` or ``(False, seconds until there are enough)``."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True, 0.0
        return False, (cost - self.tokens) / self.rate

    def full_at(self) -> float:
        """When this bucket will be full again if left alone."""
        return self.updated + (self.burst - self.tokens) / self.rate


class RateLimiter:
    """Token buckets per key, bounded in number. Not thread-safe: use it from the event loop."""

    def __init__(
        self, rate: float = 50.0, burst: float = 100.0, max_keys: int = 65536, clock: Clock = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate must be positive, burst at least 1, max_keys at least 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: collections.OrderedDict[Hashable, TokenBucket] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, key: Hashable, cost: float = 1.0) -> tuple[bool, float]:
        """Spend ``cost`` from ``key``'s bucket: ``(allowed, retry_after_seconds)``."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            self._make_room(now)
            bucket = TokenBucket(self.rate, self.burst, self.burst, now)
            self._buckets[key] = bucket
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now, cost)

    def _make_room(self, now: float) -> None:
        if len(self._buckets) < self.max_keys:
            return
        # Least recently used first: drop the full (idle) ones from the front.
        for key in list(self._buckets):
            if len(self._buckets) < self.max_keys:
                return
            if self._buckets[key].full_at() <= now:
                del self._buckets[key]
            else:
                break
        while len(self._buckets) >= self.max_keys:
            self._buckets.popitem(last=False)


@dataclasses.dataclass
class _AppSlots:
    active: int = 0
    waiters: collections.deque[asyncio.Future[None]] = dataclasses.field(default_factory=collections.deque)


class ConcurrencyLimiter:
    """At most ``limit`` concurrent requests per app, ``queue`` more waiting (asyncio, one event loop)."""

    def __init__(self, limit: int = 16, queue: int = 64, queue_timeout: float = 5.0, retry_after: float = 1.0) -> None:
        if limit < 1 or queue < 0 or queue_timeout <= 0:
            raise ValueError("limit must be at least 1, queue at least 0, queue_timeout positive")
        self.limit = limit
        self.queue = queue
        self.queue_timeout = queue_timeout
        self.retry_after = retry_after
        self._apps: dict[str, _AppSlots] = {}

    def active(self, app: str) -> int:
        slots = self._apps.get(app)
        return slots.active if slots else 0

    def waiting(self, app: str) -> int:
        slots = self._apps.get(app)
        return len(slots.waiters) if slots else 0

    def free_now(self, app: str) -> bool:
        """Whether a slot for ``app`` would be granted without waiting."""
        slots = self._apps.get(app)
        return slots is None or (slots.active < self.limit and not slots.waiters)

    @asynccontextmanager
    async def slot(self, app: str) -> AsyncIterator[None]:
        await self._acquire(app)
        try:
            yield
        finally:
            self._release(app)

    async def _acquire(self, app: str) -> None:
        slots = self._apps.setdefault(app, _AppSlots())
        if slots.active < self.limit and not slots.waiters:
            slots.active += 1
            return
        if len(slots.waiters) >= self.queue:
            raise Overloaded(
                f"{app}: {slots.active} requests running and {len(slots.waiters)} queued", self.retry_after
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        slots.waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.queue_timeout)
        except (TimeoutError, asyncio.CancelledError):
            if waiter.done() and not waiter.cancelled():
                # The slot was handed over just as we gave up: pass it on.
                self._release(app)
            else:
                waiter.cancel()
                if waiter in slots.waiters:
                    slots.waiters.remove(waiter)
                self._forget_if_idle(app, slots)
            if asyncio.current_task() is not None and _cancelling():
                raise
            raise Overloaded(f"{app}: waited {self.queue_timeout:g}s for a free slot", self.retry_after) from None

    def _release(self, app: str) -> None:
        slots = self._apps[app]
        while slots.waiters:
            waiter = slots.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the waiter; active is unchanged
                return
        slots.active -= 1
        self._forget_if_idle(app, slots)

    def _forget_if_idle(self, app: str, slots: _AppSlots) -> None:
        if slots.active == 0 and not slots.waiters and self._apps.get(app) is slots:
            del self._apps[app]


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
