"""A request traced end to end, collected by the OpenTelemetry SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import http.server
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from tests.conftest import EXAMPLES, Server, deploy_plan, write_manifest

from wasmlet.server import WasmletApp
from wasmlet.telemetry import RequestTelemetry, tracing_requested

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"


def test_request_span_tree(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.yaml", [
        {"name": "echo", "properties": {"moduleURL": str(EXAMPLES / "echo" / "echo.wasm")}}])
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = WasmletApp(deploy_plan([manifest]), threads=2, telemetry=RequestTelemetry(provider))
    app.startup()
    try:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)  # the real ASGI app, in-process
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.get("/items", headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})

        response = asyncio.run(call())
    finally:
        app.shutdown()
    assert response.status_code == 200
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"GET /", "instantiate", "execute"}
    server = spans["GET /"]
    assert server.kind == SpanKind.SERVER
    assert f"{server.context.trace_id:032x}" == CLIENT_TRACE
    assert server.parent is not None and f"{server.parent.span_id:016x}" == CLIENT_SPAN
    assert server.attributes is not None and server.attributes["http.response.status_code"] == 200
    for child in ("instantiate", "execute"):
        assert spans[child].parent is not None and spans[child].parent.span_id == server.context.span_id
        assert spans[child].context.trace_id == server.context.trace_id
    assert spans["instantiate"].end_time <= spans["execute"].start_time  # type: ignore[operator]
    # The guest is handed wasmlet's span as its parent, for its own spans and outbound calls.
    expected = f"TRACEPARENT=00-{CLIENT_TRACE}-{server.context.span_id:016x}-01"
    assert f"env: {expected}" in response.text
    # The client's own header is still visible as a header.
    assert f"header: TRACEPARENT=00-{CLIENT_TRACE}-{CLIENT_SPAN}-01" in response.text


def test_tracing_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    assert not tracing_requested()
    assert tracing_requested(flag=True)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert tracing_requested()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not tracing_requested(flag=True)


class _Collector(http.server.BaseHTTPRequestHandler):
    """A minimal OTLP/HTTP trace receiver: keeps every ExportTraceServiceRequest it is sent."""

    received: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/traces":
            _Collector.received.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_otlp_export_from_a_real_server(serve: Callable[..., Server]) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
        server = serve(str(EXAMPLES / "hello" / "app.yaml"), extra_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_SERVICE_NAME": "wasmlet-test"})
        response = httpx.get(server.url + "/", headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
        assert response.status_code == 200
        deadline = time.monotonic() + 10
        names: set[str] = set()
        while time.monotonic() < deadline and not {"GET /", "instantiate", "execute"} <= names:
            time.sleep(0.1)
            for body in list(_Collector.received):
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            if span.trace_id.hex() == CLIENT_TRACE:
                                names.add(span.name)
        assert {"GET /", "instantiate", "execute"} <= names
    finally:
        collector.shutdown()


# In a fresh interpreter: whether OpenTelemetry is loaded is the point.
_UNTRACED = """
import json, sys
from wasmlet.telemetry import RequestTelemetry
telemetry = RequestTelemetry(metrics=False)
scope = {"method": "GET", "path": "/"}
plain = telemetry.start_request(scope, [(b"host", b"x")], "a/b", "/")
loaded_plain = "opentelemetry" in sys.modules
telemetry.finish_request(plain, "a/b", "/", 200, "", 0.001, None)
header = f"00-{sys.argv[1]}-{sys.argv[2]}-01".encode()
carried = telemetry.start_request(scope, [(b"traceparent", header)], "a/b", "/")
print(json.dumps({"plain": plain is None, "loaded_plain": loaded_plain, "tracing": telemetry.tracing,
                  "loaded_after": "opentelemetry.trace" in sys.modules,
                  "trace_id": telemetry.trace_id(carried), "traceparent": telemetry.traceparent(carried),
                  "none_ids": [telemetry.trace_id(None), telemetry.traceparent(None)]}))
telemetry.finish_request(carried, "a/b", "/", 200, "", 0.001, None)
"""


def test_without_tracing_no_opentelemetry_loads_until_a_request_brings_a_trace_context() -> None:
    import json
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "WASMLET_OTLP"}
    out = subprocess.run([sys.executable, "-c", _UNTRACED, CLIENT_TRACE, CLIENT_SPAN], capture_output=True,
                         text=True, timeout=60, env=env, check=True)
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["plain"] and not result["loaded_plain"] and not result["tracing"]  # no span, nothing loaded
    assert result["loaded_after"]  # the first trace context loads the API, and is passed on:
    assert result["trace_id"] == CLIENT_TRACE
    assert result["traceparent"].startswith(f"00-{CLIENT_TRACE}-")
    assert result["none_ids"] == ["", ""]
