"""Per-request telemetry: the server span, its child spans, and the metrics.

The guest runner only records timestamps (``GuestStats``); the spans for
instantiation and execution are created here afterwards with those explicit
start and end times, so the runner stays free of tracing code and a request
pays for spans only when tracing is on.

A worker that does not trace loads no OpenTelemetry (~7 ms of its start, issue 13): a request
then has no span (``None``) unless it brings a trace context to pass on, which loads the API
once (the zygote preloads it when idle, ``wasmlet.server._zygote``).
"""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from ._batch import MetricBatch
from ._metrics import (
    APP_DEGRADED,
    CPU_PREEMPTIONS,
    GUEST_CPU_SECONDS,
    GUEST_FAILURES,
    GUEST_MEMORY_BYTES,
    INFLIGHT,
    INSTANTIATE_SECONDS,
    REQUEST_SECONDS,
    REQUESTS,
)
from ._tracing import format_traceparent

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["RequestTelemetry"]


class _HeaderGetter:
    """Reads W3C trace headers from ASGI's (lower-case bytes) header list."""

    def get(self, carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        wanted = key.lower().encode("latin-1")
        values = [v.decode("latin-1") for k, v in carrier if k == wanted]
        return values or None

    def keys(self, carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier]


_GETTER = _HeaderGetter()
_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage"})


class RequestTelemetry:
    """Spans and metrics of requests; ``metrics=False`` turns the Prometheus side off (for measuring its cost)."""

    def __init__(self, tracer_provider: TracerProvider | None = None, metrics: bool = True) -> None:
        self._provider = tracer_provider
        self._tracer: Tracer | None = None
        # The API's default provider records nothing; an SDK one (configure_tracing, tests) does. None
        # installed one if nothing loaded the API (installing one loads it): no need to load it here.
        self.tracing = False
        if tracer_provider is not None or "opentelemetry.trace" in sys.modules:
            from opentelemetry import trace

            provider = tracer_provider or trace.get_tracer_provider()
            self.tracing = not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))
        self.metrics = metrics
        self._memory_high_water: dict[str, int] = {}
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._per_app: dict[str, tuple[Any, Any, Any]] = {}
        self._batch = MetricBatch(INFLIGHT)  # the common updates, written once per pass of the event loop

    @property
    def tracer(self) -> Tracer:
        """This provider's tracer (the global one's if none was given), made on first use."""
        if self._tracer is None:
            from opentelemetry import trace

            self._tracer = (self._provider or trace.get_tracer_provider()).get_tracer("wasmlet")
        return self._tracer

    def flush(self) -> None:
        """Write the metric updates still waiting for the end of the event loop's pass (at shutdown)."""
        self._batch.flush()

    def start_request(self, scope: MutableMapping[str, Any], headers: list[tuple[bytes, bytes]], app: str,
                      route: str) -> Span | None:
        """Start the server span, as a child of the client's ``traceparent`` if it sent one; None if
        there is nothing to record and no context to pass on."""
        if self.metrics and not self._batch.started():
            INFLIGHT.inc()
        if not self.tracing and not any(name in _TRACE_HEADERS for name, _ in headers):
            # Nothing to record and no context to pass on: skip the propagator and the
            # no-op tracer (about 10 us on the event loop's thread, per request).
            return None
        from opentelemetry import propagate
        from opentelemetry.trace import SpanKind

        parent = propagate.extract(headers, getter=_GETTER)  # type: ignore[arg-type]
        method = scope.get("method", "GET")
        return self.tracer.start_span(
            f"{method} {route}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope.get("path", ""), "http.route": route,
                        "wasmlet.app": app},
        )

    @staticmethod
    def traceparent(span: Span | None) -> str:
        return "" if span is None else format_traceparent(span)

    @staticmethod
    def trace_id(span: Span | None) -> str:
        if span is None:
            return ""
        context = span.get_span_context()
        return f"{context.trace_id:032x}" if context.is_valid else ""

    def set_degraded(self, app: str, degraded: bool) -> None:
        if self.metrics:
            if degraded:
                CPU_PREEMPTIONS.labels(app).inc()
            APP_DEGRADED.labels(app).set(1 if degraded else 0)

    def finish_request(self, span: Span | None, app: str, route: str, status: int, cause: str, elapsed: float,
                       stats: Any) -> None:
        if self.metrics:
            self._record(app, route, status, cause, elapsed, stats)
        if span is None:
            return
        if span.is_recording():
            self._finish_span(span, status, cause, stats)
        span.end()

    def _record(self, app: str, route: str, status: int, cause: str, elapsed: float, stats: Any) -> None:
        # Children looked up once per label set: ``labels()`` validates and locks on every call.
        if not self._batch.ended():
            INFLIGHT.dec()
        key = (app, route, status)
        requests = self._requests.get(key)
        if requests is None:
            if len(self._requests) > 4096:  # bounded: statuses are few, apps and routes the plan's
                self._requests.clear()
            requests = self._requests[key] = REQUESTS.labels(app, route, str(status))
        per_app = self._per_app.get(app)
        if per_app is None:
            if len(self._per_app) > 4096:
                self._per_app.clear()
            per_app = self._per_app[app] = (REQUEST_SECONDS.labels(app), INSTANTIATE_SECONDS.labels(app),
                                            GUEST_CPU_SECONDS.labels(app))
        observations = ((per_app[0], elapsed),) if stats is None else (
            (per_app[0], elapsed), (per_app[1], stats.instantiate_seconds), (per_app[2], stats.cpu_seconds))
        if not self._batch.queue(requests, observations):
            requests.inc()
            for histogram, value in observations:
                histogram.observe(value)
        if cause:  # rare: written at once
            GUEST_FAILURES.labels(app, cause).inc()
        if stats is not None and stats.memory > self._memory_high_water.get(app, 0):
            self._memory_high_water[app] = stats.memory
            GUEST_MEMORY_BYTES.labels(app).set(stats.memory)

    def _finish_span(self, span: Span, status: int, cause: str, stats: Any) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode

        context = trace.set_span_in_context(span)
        if stats is not None:
            instantiate = self.tracer.start_span("instantiate", context=context, start_time=stats.started_ns)
            instantiate.end(end_time=stats.instantiated_ns)
            execute = self.tracer.start_span("execute", context=context, start_time=stats.instantiated_ns,
                                             attributes={"wasmlet.guest.cpu_seconds": stats.cpu_seconds,
                                                         "wasmlet.guest.memory_bytes": stats.memory})
            execute.end(end_time=stats.finished_ns)
        span.set_attribute("http.response.status_code", status)
        if cause:
            span.set_attribute("wasmlet.error", cause)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR, cause or None))
