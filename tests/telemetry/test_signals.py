"""The watchdog's signals and `wasmlet top`'s arithmetic: pure logic."""

from __future__ import annotations

import math

import pytest

from wasmlet.telemetry import CpuStreaks, GrowthMeter, parse_scrape, quantile, summarize


def test_cpu_streak_fires_on_the_third_in_a_row() -> None:
    streaks = CpuStreaks()
    assert [streaks.record("a", 0.06) for _ in range(3)] == [False, False, True]
    assert streaks.record("a", 0.06) is False  # fires once per streak
    assert streaks.record("a", 0.01) is False
    assert streaks.streak("a") == 0


def test_cpu_streak_is_broken_by_a_cheap_request_and_is_per_app() -> None:
    streaks = CpuStreaks()
    results = [streaks.record("a", t) for t in (0.06, 0.06, 0.02, 0.06, 0.06)]
    assert results == [False] * 5
    assert streaks.record("b", 0.051) is False
    assert streaks.streak("a") == 2 and streaks.streak("b") == 1
    assert streaks.record("a", 0.050) is False  # at the threshold is not above it


def test_growth_meter_slope() -> None:
    meter = GrowthMeter(window=60)
    for second in range(0, 61, 5):
        meter.add(second, 100e6 + second * 50_000)  # 3 MB per minute
    assert meter.per_minute() == pytest.approx(3e6)
    assert meter.covered() == 60


def test_growth_meter_forgets_old_samples() -> None:
    meter = GrowthMeter(window=10)
    for second in range(0, 30):
        meter.add(second, 1e9 if second < 15 else 5e8)  # a drop long ago, flat since
    assert meter.per_minute() == 0.0
    assert meter.covered() == 10


def test_quantile_matches_prometheus() -> None:
    buckets = {0.001: 0.0, 0.005: 100.0, 0.01: 100.0, math.inf: 100.0}
    assert quantile(0.5, buckets) == pytest.approx(0.003)
    assert quantile(0.99, buckets) == pytest.approx(0.00496)
    assert math.isnan(quantile(0.5, {math.inf: 0.0}))


SCRAPE = """
# TYPE wasmlet_requests counter
wasmlet_requests_total{{app="a/x",route="/",status="200"}} {ok}
wasmlet_requests_total{{app="a/x",route="/",status="504"}} {bad}
# TYPE wasmlet_request_duration_seconds histogram
wasmlet_request_duration_seconds_bucket{{app="a/x",le="0.001"}} {fast}
wasmlet_request_duration_seconds_bucket{{app="a/x",le="0.01"}} {total}
wasmlet_request_duration_seconds_bucket{{app="a/x",le="+Inf"}} {total}
wasmlet_request_duration_seconds_count{{app="a/x"}} {total}
wasmlet_request_duration_seconds_sum{{app="a/x"}} 1.0
# TYPE wasmlet_guest_memory_high_water_bytes gauge
wasmlet_guest_memory_high_water_bytes{{app="a/x"}} 131072.0
# TYPE wasmlet_app_degraded gauge
wasmlet_app_degraded{{app="a/x"}} {degraded}
# TYPE wasmlet_worker_rss_bytes gauge
wasmlet_worker_rss_bytes{{worker="1"}} 1048576.0
wasmlet_worker_rss_bytes{{worker="2"}} 1048576.0
"""


def test_summarize_two_scrapes() -> None:
    before = parse_scrape(SCRAPE.format(ok=10, bad=0, fast=10, total=10, degraded=0))
    after = parse_scrape(SCRAPE.format(ok=100, bad=10, fast=10, total=110, degraded=1))
    (row,) = summarize(before, after, seconds=2.0)
    assert row.app == "a/x"
    assert row.rps == pytest.approx(50.0)
    assert row.errors_per_s == pytest.approx(5.0)
    assert 0.001 < row.p50 <= 0.01  # every request of the interval was slower than 1 ms
    assert row.memory == 131072.0
    assert row.state == "degraded"
    assert after.rss == 2 * 1048576.0
