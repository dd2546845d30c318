"""Metrics batched per pass of the event loop read exactly as metrics written one by one."""

from __future__ import annotations

import asyncio
import math
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from wasmlet.telemetry._batch import MetricBatch, observe_many

BUCKETS = (0.00001, 0.0001, 0.001, 0.01, 0.1, 1.0)
# Values on, between, below and above the bounds (``amount <= bound`` puts one on a bound in that bucket).
VALUES = [0.0, 0.00001, 0.000011, 0.0001, 0.0005, 0.001, 0.0099, 0.01, 0.5, 1.0, 7.0, 0.00001, 0.5]


def _exposition(registry: CollectorRegistry) -> list[bytes]:
    """The text format without ``_created`` samples (each registry's metrics were made at another instant)."""
    return [line for line in generate_latest(registry).splitlines() if b"_created" not in line]


def _metrics() -> tuple[CollectorRegistry, Counter, Gauge, Histogram]:
    registry = CollectorRegistry()
    return (registry, Counter("t_requests", "r", ["app"], registry=registry),
            Gauge("t_inflight", "i", registry=registry),
            Histogram("t_seconds", "s", ["app"], buckets=BUCKETS, registry=registry))


def test_observe_many_equals_observing_one_by_one() -> None:
    one_registry, _, _, one = _metrics()
    many_registry, _, _, many = _metrics()
    for value in VALUES:
        one.labels("a").observe(value)
    observe_many(many.labels("a"), VALUES)
    assert _exposition(many_registry) == _exposition(one_registry)


def test_nan_counts_in_the_sum_and_no_bucket_as_observe_does() -> None:
    one_registry, _, _, one = _metrics()
    many_registry, _, _, many = _metrics()
    for value in (0.5, math.nan, 0.001):
        one.labels("a").observe(value)
    observe_many(many.labels("a"), [0.5, math.nan, 0.001])
    assert _exposition(many_registry) == _exposition(one_registry)


def test_a_pass_of_requests_is_written_at_its_end_and_reads_as_one_by_one() -> None:
    registry, requests, inflight, seconds = _metrics()
    reference_registry, ref_requests, _, ref_seconds = _metrics()
    batch = MetricBatch(inflight)
    seen: list[bytes] = []

    async def serve() -> None:
        for value in VALUES:
            assert batch.started()
            assert batch.queue(requests.labels("a"), ((seconds.labels("a"), value),))
            assert batch.ended()
            ref_requests.labels("a").inc()
            ref_seconds.labels("a").observe(value)
        seen.append(generate_latest(registry))  # still in the pass: nothing written yet
        await asyncio.sleep(0)  # the pass ends: the batch is written

    asyncio.run(serve())
    assert b't_requests_total{app="a"} 0.0' in seen[0]
    assert registry.get_sample_value("t_inflight") == 0.0  # every request began and ended in the pass
    assert _exposition(registry) == _exposition(reference_registry)  # both gauges at 0


def test_requests_still_running_at_the_end_of_a_pass_show_in_flight() -> None:
    registry, _, inflight, _ = _metrics()
    batch = MetricBatch(inflight)

    async def serve() -> None:
        batch.started()
        batch.started()
        batch.ended()
        await asyncio.sleep(0)
        assert registry.get_sample_value("t_inflight") == 1.0
        batch.ended()
        await asyncio.sleep(0)
        assert registry.get_sample_value("t_inflight") == 0.0

    asyncio.run(serve())


def test_without_a_running_loop_the_caller_writes_and_nothing_is_queued() -> None:
    registry, requests, inflight, seconds = _metrics()
    batch = MetricBatch(inflight)
    answers: list[bool] = []

    async def serve() -> None:
        assert batch.queue(requests.labels("a"), ((seconds.labels("a"), 0.5),))  # schedules a flush
        # Another thread, while the loop's flush is pending: it must not touch the queue.
        thread = threading.Thread(target=lambda: answers.extend(
            [batch.started(), batch.queue(requests.labels("b"), ()), batch.ended()]))
        thread.start()
        thread.join(5)
        await asyncio.sleep(0)

    asyncio.run(serve())
    assert answers == [False, False, False]
    assert registry.get_sample_value("t_requests_total", {"app": "a"}) == 1.0
    assert registry.get_sample_value("t_requests_total", {"app": "b"}) == 0.0  # the thread wrote nothing
    assert batch.queue(requests.labels("a"), ()) is False  # no loop at all
