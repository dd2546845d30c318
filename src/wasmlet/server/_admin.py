"""The admin listener (loopback by default): metrics and app state, never guest traffic.

Runs in the supervisor on a small WSGI server thread. ``/metrics`` aggregates
every worker's samples from prometheus_client's multi-process folder and adds
the supervisor's own view of each worker's resident memory.
"""

from __future__ import annotations

import json
import threading
import wsgiref.simple_server
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .._deploy import Plan
from .._errors import ConfigError

__all__ = ["AdminServer"]

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _WorkerMemory(Collector):
    def __init__(self, sample: Callable[[], dict[int, int]]) -> None:
        self._sample = sample

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("wasmlet_worker_rss_bytes", "Resident memory of each worker process.",
                                   labels=["worker"])
        for pid, rss in sorted(self._sample().items()):
            family.add_metric([str(pid)], rss)
        yield family


class _Quiet(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass


class AdminServer:
    def __init__(self, host: str, port: int, plan: Plan, multiproc_dir: str,
                 worker_memory: Callable[[], dict[int, int]]) -> None:
        self.plan = plan
        self.registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(self.registry, path=multiproc_dir)  # type: ignore[no-untyped-call]
        self.registry.register(_WorkerMemory(worker_memory))
        try:
            self._server = wsgiref.simple_server.make_server(host, port, self._app, handler_class=_Quiet)
        except OSError as exc:
            raise ConfigError(f"--admin-listen: cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self._thread = threading.Thread(target=self._server.serve_forever, name="wasmlet-admin", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            body = generate_latest(self.registry)
            start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")])
            return [body]
        if path == "/apps":
            return self._json(start_response, self._apps())
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    def _apps(self) -> list[dict[str, object]]:
        degraded = {
            sample.labels.get("app"): sample.value
            for family in self.registry.collect() if family.name == "wasmlet_app_degraded"
            for sample in family.samples
        }
        return [
            {
                "name": c.spec.qualified_name,
                "route": c.spec.route,
                "host": c.spec.host,
                "digest": f"sha256:{c.digest}",
                "module": c.spec.module_url,
                "state": "degraded" if degraded.get(c.spec.qualified_name) else "serving",
            }
            for c in self.plan.components
        ]

    @staticmethod
    def _json(start_response: StartResponse, value: object) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(value, indent=2).encode() + b"\n"]
