"""Prometheus metrics, with the official client library.

Workers are separate processes, so the metrics use prometheus_client's
multi-process mode when ``PROMETHEUS_MULTIPROC_DIR`` is set (``wasmlet serve``
sets it before any worker starts): each process writes its samples to files in
that folder and the admin listener aggregates them (``MultiProcessCollector``).
Without it (``wasmlet run``, in-process tests) the default registry is used.

Buckets for instantiation start at 10 us so sub-millisecond cold starts are
readable (the seed's alert threshold is 5 ms).
"""

from __future__ import annotations

import os

from prometheus_client import Counter, Gauge, Histogram

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
    "multiprocess_enabled",
]

_FAST = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
         0.25, 0.5, 1.0)
_SLOW = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


REQUESTS = Counter("wasmlet_requests", "HTTP requests answered, by app, route and status.",
                   ["app", "route", "status"])
REQUEST_SECONDS = Histogram("wasmlet_request_duration_seconds", "Time from request to response, by app.",
                            ["app"], buckets=_FAST)
INSTANTIATE_SECONDS = Histogram("wasmlet_instantiate_duration_seconds",
                                "Cold start: new store, WASI context and instance, by app.", ["app"], buckets=_FAST)
GUEST_CPU_SECONDS = Histogram("wasmlet_guest_cpu_seconds", "CPU time the guest's thread used per request, by app.",
                              ["app"], buckets=_FAST)
COMPILE_SECONDS = Histogram("wasmlet_compile_duration_seconds", "Module compilation at deploy (cache misses).",
                            buckets=_SLOW)
CACHE_LOOKUPS = Counter("wasmlet_cache_lookups", "Precompiled-cache lookups, by result (hit or miss).", ["result"])
GUEST_FAILURES = Counter("wasmlet_guest_failures", "Requests a guest failed, by app and cause.", ["app", "cause"])
GUEST_MEMORY_BYTES = Gauge("wasmlet_guest_memory_high_water_bytes", "Largest guest linear memory seen, by app.",
                           ["app"], multiprocess_mode="max")
CPU_PREEMPTIONS = Counter("wasmlet_cpu_preemptions",
                          "Times an app had three requests in a row above 50 ms of CPU (the seed's preemption signal).",
                          ["app"])
APP_DEGRADED = Gauge("wasmlet_app_degraded", "1 while the watchdog holds an app degraded on the CPU signal.",
                     ["app"], multiprocess_mode="max")
BREAKER_STATE = Gauge("wasmlet_breaker_state", "Circuit breaker per app: 0 closed, 1 half-open, 2 open.",
                      ["app"], multiprocess_mode="max")
RATE_LIMITED = Counter("wasmlet_rate_limited", "Requests refused by rate or concurrency limits, by app and reason.",
                       ["app", "reason"])
INFLIGHT = Gauge("wasmlet_inflight_requests", "Requests being answered.", multiprocess_mode="livesum")

# Past one host (``serve --lattice``, docs/lattice.md). The forwarding metrics come from the
# workers; placement, hosts and failovers from the supervisor process, which runs the lattice agent.
LATTICE_FORWARDS = Counter("wasmlet_lattice_forwards",
                           "Requests forwarded to another host of the lattice, by app and outcome (ok, retried, "
                           "no-responders, timeout, silent, too-large, unreachable, ...).", ["app", "outcome"])
LATTICE_FORWARD_RETRIES = Counter("wasmlet_lattice_forward_retries",
                                  "Forwards sent a second time, by app and why the first failed.", ["app", "reason"])
LATTICE_FORWARD_SECONDS = Histogram("wasmlet_lattice_forward_duration_seconds",
                                    "Time from forwarding a request to relaying its answer, by app.", ["app"],
                                    buckets=_FAST)
LATTICE_SERVED = Counter("wasmlet_lattice_forwarded_served",
                         "Requests other hosts forwarded here and this host answered, by app and status.",
                         ["app", "status"])
LATTICE_HOSTS = Gauge("wasmlet_lattice_hosts", "Live hosts of the lattice, as this host sees them.",
                      multiprocess_mode="max")
LATTICE_LOCAL_APPS = Gauge("wasmlet_lattice_local_apps", "Apps placed on this host.", multiprocess_mode="max")
LATTICE_PENDING = Gauge("wasmlet_lattice_pending_apps", "Apps that no live host can take (pending).",
                        multiprocess_mode="max")
LATTICE_PLACEMENTS = Counter("wasmlet_lattice_placements",
                             "Placements that changed what this host serves, by change (added, removed).",
                             ["change"])
LATTICE_FAILOVERS = Counter("wasmlet_lattice_failovers",
                            "Apps this host took over from a host that left the lattice (heartbeats stopped).",
                            ["app"])
LATTICE_REJECTED = Counter("wasmlet_lattice_rejected",
                           "Lattice messages refused, by kind (state, version, heartbeat, spoofed-heartbeat).",
                           ["kind"])
