"""What observability costs: the same hello served with metrics and tracing off and on, side by side.

Three contenders over HTTP (wrk on loopback, alternated ``--rounds`` times):
``--no-metrics`` (tracing off), metrics on (the default), and metrics plus
OpenTelemetry tracing exported over OTLP/HTTP to a local collector that
discards what it receives. Also the per-request cost measured in-process:
``RequestTelemetry.start_request`` + ``finish_request`` with each setting.

    .venv/bin/python bench/telemetry_overhead.py [--seconds 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import http.server
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from _common import ROOT, free_port, machine, run_wrk, running, wasmlet_env

HELLO = ROOT / "examples" / "hello" / "app.yaml"


class _Discard(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def in_process(iterations: int = 20000) -> dict[str, float]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from wasmlet.guest import GuestStats
    from wasmlet.telemetry import RequestTelemetry

    class Nothing(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Nothing()))
    contenders = {
        "off": RequestTelemetry(metrics=False),
        "metrics": RequestTelemetry(metrics=True),
        "metrics+tracing": RequestTelemetry(provider, metrics=True),
    }
    scope = {"method": "GET", "path": "/"}
    headers = [(b"host", b"x"), (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
    now = time.time_ns()
    stats = GuestStats(now, now + 20_000, now + 50_000, 0.00004, 131072)
    out = {}
    for name, telemetry in contenders.items():
        started = time.perf_counter()
        for _ in range(iterations):
            span = telemetry.start_request(scope, headers, "bench/hello", "/")
            telemetry.traceparent(span)
            telemetry.finish_request(span, "bench/hello", "/", 200, "", 0.0001, stats)
        out[name] = (time.perf_counter() - started) / iterations * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(machine())
    print("\nin-process telemetry cost per request (us):")
    for name, us in in_process().items():
        print(f"  {name:16s} {us:6.1f}")
    collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Discard)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
    results: dict[str, list[float]] = {"off": [], "metrics": [], "metrics+tracing": []}
    p99: dict[str, list[float]] = {k: [] for k in results}
    with tempfile.TemporaryDirectory() as cache:
        for _ in range(args.rounds):
            for name in results:
                port = free_port()
                env = wasmlet_env(cache)
                env["WASMLET_STATE_DIR"] = str(Path(cache) / f"state-{name}-{port}")
                extra = ["--no-metrics"] if name == "off" else []
                if name == "metrics+tracing":
                    env.update(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
                argv = [str(ROOT / ".venv" / "bin" / "wasmlet"), "--log-level", "warning", "serve", str(HELLO),
                        "--listen", f"127.0.0.1:{port}", "--admin-listen", "none", "--workers", "2", *extra]
                with running(argv, port, env=env):
                    run_wrk(f"http://127.0.0.1:{port}/", seconds=2)
                    figures = run_wrk(f"http://127.0.0.1:{port}/", seconds=args.seconds)
                results[name].append(figures["rps"])
                p99[name].append(figures["p99"])
    collector.shutdown()
    print(f"\nover HTTP, wrk -t2 -c64 -d{args.seconds}s, 2 workers, {args.rounds} alternated rounds (median):")
    base = statistics.median(results["off"])
    for name, values in results.items():
        rps = statistics.median(values)
        print(f"  {name:16s} {rps:8.0f} req/s  p99 {statistics.median(p99[name]):6.1f} ms  "
              f"({rps / base:.2f}x of off; {1e6 / rps - 1e6 / base:+.1f} us per request)")
    os._exit(0)


if __name__ == "__main__":
    main()
