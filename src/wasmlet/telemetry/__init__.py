"""Observability: Prometheus metrics, OpenTelemetry traces, the watchdog's signals.

Names load on first use (PEP 562), as in ``wasmlet.plan``: the supervisor records
compile and cache metrics without importing OpenTelemetry, which only workers use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

if TYPE_CHECKING:  # the names below, for type checkers; at run time they load on first use
    from ._cache_observer import hold_cache_observations, observe_cache, release_cache_observations
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
        LATTICE_FAILOVERS,
        LATTICE_FORWARD_RETRIES,
        LATTICE_FORWARD_SECONDS,
        LATTICE_FORWARDS,
        LATTICE_HOSTS,
        LATTICE_LOCAL_APPS,
        LATTICE_PENDING,
        LATTICE_PLACEMENTS,
        LATTICE_REJECTED,
        LATTICE_SERVED,
        RATE_LIMITED,
        REQUEST_SECONDS,
        REQUESTS,
        multiprocess_enabled,
    )
    from ._request import RequestTelemetry
    from ._top import AppRow, Scrape, parse_scrape, quantile, summarize
    from ._tracing import configure_tracing, format_traceparent, tracing_requested
    from ._watchdog import CpuStreaks, GrowthMeter

# Each public name and the private module that defines it.
_WHERE = {
    "observe_cache": "._cache_observer",
    "hold_cache_observations": "._cache_observer",
    "release_cache_observations": "._cache_observer",
    "APP_DEGRADED": "._metrics",
    "BREAKER_STATE": "._metrics",
    "CACHE_LOOKUPS": "._metrics",
    "COMPILE_SECONDS": "._metrics",
    "CPU_PREEMPTIONS": "._metrics",
    "GUEST_CPU_SECONDS": "._metrics",
    "GUEST_FAILURES": "._metrics",
    "GUEST_MEMORY_BYTES": "._metrics",
    "INFLIGHT": "._metrics",
    "INSTANTIATE_SECONDS": "._metrics",
    "LATTICE_FAILOVERS": "._metrics",
    "LATTICE_FORWARD_RETRIES": "._metrics",
    "LATTICE_FORWARD_SECONDS": "._metrics",
    "LATTICE_FORWARDS": "._metrics",
    "LATTICE_HOSTS": "._metrics",
    "LATTICE_LOCAL_APPS": "._metrics",
    "LATTICE_PENDING": "._metrics",
    "LATTICE_PLACEMENTS": "._metrics",
    "LATTICE_REJECTED": "._metrics",
    "LATTICE_SERVED": "._metrics",
    "RATE_LIMITED": "._metrics",
    "REQUEST_SECONDS": "._metrics",
    "REQUESTS": "._metrics",
    "multiprocess_enabled": "._metrics",
    "RequestTelemetry": "._request",
    "AppRow": "._top",
    "Scrape": "._top",
    "parse_scrape": "._top",
    "quantile": "._top",
    "summarize": "._top",
    "configure_tracing": "._tracing",
    "format_traceparent": "._tracing",
    "tracing_requested": "._tracing",
    "CpuStreaks": "._watchdog",
    "GrowthMeter": "._watchdog",
}

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
    "LATTICE_FAILOVERS",
    "LATTICE_FORWARDS",
    "LATTICE_FORWARD_RETRIES",
    "LATTICE_FORWARD_SECONDS",
    "LATTICE_HOSTS",
    "LATTICE_LOCAL_APPS",
    "LATTICE_PENDING",
    "LATTICE_PLACEMENTS",
    "LATTICE_REJECTED",
    "LATTICE_SERVED",
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
    "hold_cache_observations",
    "multiprocess_enabled",
    "observe_cache",
    "parse_scrape",
    "quantile",
    "release_cache_observations",
    "summarize",
    "tracing_requested",
]


__getattr__, __dir__ = lazy_names(__name__, _WHERE, __all__)
