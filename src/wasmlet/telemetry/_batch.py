"""Request metrics written once per pass of the event loop, not once per request.

In ``wasmlet serve`` the metrics live in ``prometheus_client``'s multiprocess
files: each counter increment or histogram observation takes a lock, a
``getpid()`` and a write into an mmap. A request made ten of them (12 us, a
twentieth of a hello request's CPU time over HTTP). Here the requests answered
in one pass of the event loop are queued, and written when the loop has run
what was ready (``loop.call_soon``): one write per counter, histogram bucket
and sum for all of them, and none for the in-flight gauge when they began and
ended in that pass. ``/metrics`` lags by that one pass at most. Without a
running event loop (a worker thread, a test) the caller writes at once.

Writing many observations into a histogram needs its buckets
(``_upper_bounds``, ``_buckets``, ``_sum``): ``prometheus_client`` has no
public "observe n values". The version is pinned, and a test compares batched
and one-by-one exposition, so a change there shows; a child without them is
observed value by value.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import Counter
from typing import Any

__all__ = ["MetricBatch", "observe_many"]


def observe_many(child: Any, values: list[float]) -> None:
    """``child.observe(v)`` for each of ``values``, with one write per bucket touched and one for the sum."""
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if len(values) == 1 or bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            child.observe(value)
        return
    counts: Counter[int] = Counter()
    for value in values:
        if value == value:  # NaN falls in no bucket, as in Histogram.observe
            counts[bisect.bisect_left(bounds, value)] += 1  # the first bound >= value: `amount <= bound`
    total.inc(sum(values))
    for index, count in counts.items():
        buckets[index].inc(count)


class MetricBatch:
    """Requests' metric updates waiting for the end of the event loop's pass.

    ``queue`` takes one request's counter and ``(histogram, value)`` pairs;
    ``started`` and ``ended`` move the in-flight gauge. Each returns False when
    no event loop runs in this thread: then nothing was queued and the caller
    writes the update itself.
    """

    __slots__ = ("_gauge", "_inflight", "_queued", "_scheduled")

    def __init__(self, inflight_gauge: Any) -> None:
        self._gauge = inflight_gauge
        self._inflight = 0  # the gauge's change not yet written
        self._queued: list[tuple[Any, tuple[tuple[Any, float], ...]]] = []
        self._scheduled = False

    def _on_loop(self) -> bool:
        # Asked on every update, not only the first of a pass: a caller on another thread
        # (no running loop there) must write its own update, never touch the queue.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self.flush)
        return True

    def started(self) -> bool:
        if not self._on_loop():
            return False
        self._inflight += 1
        return True

    def ended(self) -> bool:
        if not self._on_loop():
            return False
        self._inflight -= 1
        return True

    def queue(self, counter: Any, observations: tuple[tuple[Any, float], ...]) -> bool:
        if not self._on_loop():
            return False
        self._queued.append((counter, observations))
        return True

    def flush(self) -> None:
        """Write what is waiting (the loop calls this once per pass; shutdown calls it too)."""
        self._scheduled = False
        if self._inflight:
            self._gauge.inc(self._inflight)
            self._inflight = 0
        queued = self._queued
        if not queued:
            return
        self._queued = []
        if len(queued) == 1:
            counter, observations = queued[0]
            counter.inc()
            for histogram, value in observations:
                histogram.observe(value)
            return
        counts: Counter[Any] = Counter()
        observed: dict[Any, list[float]] = {}
        for counter, observations in queued:
            counts[counter] += 1
            for histogram, value in observations:
                values = observed.get(histogram)
                if values is None:
                    observed[histogram] = [value]
                else:
                    values.append(value)
        for counter, amount in counts.items():
            counter.inc(amount)
        for histogram, values in observed.items():
            observe_many(histogram, values)
