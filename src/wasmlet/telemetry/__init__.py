"""Observability: Prometheus metrics, OpenTelemetry traces, the watchdog's signals."""

from ._cache_observer import observe_cache
from ._metrics import (
    APP_DEGRADED,
    BREAKER_STATE,
    CACHE_LOOKUPS,
    COMPILE_SECONDS,
    CPU_PREEMPTIONS,
    GUEST_CPU_SECONDS,
    GUEST_FAILURES,
    GUEST_MEMORY_BYTES,
    INFLIGHT,
    INSTANTIATE_SECONDS,
    RATE_LIMITED,
    REQUEST_SECONDS,
    REQUESTS,
    multiprocess_enabled,
)
from ._request import RequestTelemetry
from ._top import AppRow, Scrape, parse_scrape, quantile, summarize
from ._tracing import configure_tracing, format_traceparent, tracing_requested
from ._watchdog import CpuStreaks, GrowthMeter

__all__ = [
    "APP_DEGRADED",
    "BREAKER_STATE",
    "CACHE_LOOKUPS",
    "COMPILE_SECONDS",
    "CPU_PREEMPTIONS",
    "GUEST_CPU_SECONDS",
    "GUEST_FAILURES",
    "GUEST_MEMORY_BYTES",
    "INFLIGHT",
    "INSTANTIATE_SECONDS",
    "RATE_LIMITED",
    "REQUESTS",
    "REQUEST_SECONDS",
    "AppRow",
    "CpuStreaks",
    "GrowthMeter",
    "RequestTelemetry",
    "Scrape",
    "configure_tracing",
    "format_traceparent",
    "multiprocess_enabled",
    "observe_cache",
    "parse_scrape",
    "quantile",
    "summarize",
    "tracing_requested",
]
