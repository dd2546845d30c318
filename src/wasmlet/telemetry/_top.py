"""``wasmlet top``: a live view of apps from the admin listener's /metrics, like ``docker stats``.

Two scrapes an interval apart give rates; histogram bucket deltas give the
latency quantiles of that interval. The arithmetic is pure (``summarize``).
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["AppRow", "Scrape", "parse_scrape", "quantile", "summarize"]


@dataclasses.dataclass
class Scrape:
    requests: dict[str, float] = dataclasses.field(default_factory=lambda: defaultdict(float))
    errors: dict[str, float] = dataclasses.field(default_factory=lambda: defaultdict(float))
    duration_buckets: dict[str, dict[float, float]] = dataclasses.field(default_factory=lambda: defaultdict(dict))
    cold_buckets: dict[str, dict[float, float]] = dataclasses.field(default_factory=lambda: defaultdict(dict))
    cold_starts: dict[str, float] = dataclasses.field(default_factory=lambda: defaultdict(float))
    memory: dict[str, float] = dataclasses.field(default_factory=dict)
    degraded: dict[str, float] = dataclasses.field(default_factory=dict)
    rss: float = 0.0


@dataclasses.dataclass
class AppRow:
    app: str
    rps: float
    p50: float  # seconds; nan when there were no requests
    p99: float
    errors_per_s: float
    memory: float
    cold_start_p50: float
    state: str


def parse_scrape(text: str) -> Scrape:
    scrape = Scrape()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            app = sample.labels.get("app", "")
            if sample.name == "wasmlet_requests_total":
                scrape.requests[app] += sample.value
                if sample.labels.get("status", "").startswith("5"):
                    scrape.errors[app] += sample.value
            elif sample.name == "wasmlet_request_duration_seconds_bucket":
                scrape.duration_buckets[app][float(sample.labels["le"])] = sample.value
            elif sample.name == "wasmlet_instantiate_duration_seconds_bucket":
                scrape.cold_buckets[app][float(sample.labels["le"])] = sample.value
            elif sample.name == "wasmlet_instantiate_duration_seconds_count":
                scrape.cold_starts[app] += sample.value
            elif sample.name == "wasmlet_guest_memory_high_water_bytes":
                scrape.memory[app] = max(scrape.memory.get(app, 0.0), sample.value)
            elif sample.name == "wasmlet_app_degraded":
                scrape.degraded[app] = max(scrape.degraded.get(app, 0.0), sample.value)
            elif sample.name == "wasmlet_worker_rss_bytes":
                scrape.rss += sample.value
    return scrape


def quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus' ``histogram_quantile`` over cumulative ``{upper bound: count}``."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return math.nan
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return bounds[-1]


def _delta(after: dict[float, float], before: dict[float, float]) -> dict[float, float]:
    return {le: value - before.get(le, 0.0) for le, value in after.items()}


def summarize(before: Scrape, after: Scrape, seconds: float) -> list[AppRow]:
    rows = []
    for app in sorted(set(after.requests) | set(after.cold_starts)):
        durations = _delta(after.duration_buckets.get(app, {}), before.duration_buckets.get(app, {}))
        colds = _delta(after.cold_buckets.get(app, {}), before.cold_buckets.get(app, {}))
        rows.append(AppRow(
            app=app,
            rps=(after.requests.get(app, 0.0) - before.requests.get(app, 0.0)) / seconds,
            p50=quantile(0.5, durations),
            p99=quantile(0.99, durations),
            errors_per_s=(after.errors.get(app, 0.0) - before.errors.get(app, 0.0)) / seconds,
            memory=after.memory.get(app, 0.0),
            cold_start_p50=quantile(0.5, colds),
            state="degraded" if after.degraded.get(app) else "serving",
        ))
    return rows
