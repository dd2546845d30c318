"""OpenTelemetry tracing: off by default, OTLP when asked.

Tracing is on when ``wasmlet serve --otlp`` is given or the standard
variables ask for it (``OTEL_TRACES_EXPORTER=otlp`` or an
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), and
never when ``OTEL_SDK_DISABLED=true``. The exporter reads the rest of its
settings (endpoint, headers, timeout) from the ``OTEL_*`` variables itself.
When off, the OpenTelemetry API's no-op tracer costs about a microsecond.

The API itself (~7 ms of imports) loads when tracing is on, or when a request first brings a
trace context to pass on (``_request``), not with a worker's start.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry import trace
    from opentelemetry.trace import Span, SpanContext

__all__ = ["TRACING_ENV", "configure_tracing", "format_traceparent", "tracer", "tracing_requested"]

TRACING_ENV = "WASMLET_OTLP"


def tracing_requested(flag: bool = False) -> bool:
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return (
        flag
        or env.get(TRACING_ENV) == "1"
        or env.get("OTEL_TRACES_EXPORTER", "").lower() == "otlp"
        or bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    )


def configure_tracing(flag: bool = False) -> bool:
    """Install an SDK tracer provider exporting over OTLP/HTTP if tracing is requested."""
    if not tracing_requested(flag):
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "wasmlet")})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True


def tracer() -> trace.Tracer:
    from opentelemetry import trace

    return trace.get_tracer("wasmlet")


def format_traceparent(span: Span) -> str:
    """The W3C ``traceparent`` of ``span`` (version 00), or "" if it has no valid context."""
    context: SpanContext = span.get_span_context()
    if not context.is_valid:
        return ""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
