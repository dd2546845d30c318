"""The admin listener (loopback by default): metrics, app state and the control API.

Runs in the supervisor on a threaded WSGI server. ``/metrics`` aggregates
every worker's samples from prometheus_client's multi-process folder and adds
the supervisor's view of each worker's resident memory; ``/healthz``,
``/metrics`` and ``/openapi.json`` are open, every ``/v1/`` endpoint needs
``Authorization: Bearer <token>`` (the token is in ``<state dir>/admin-token``).
"""

from __future__ import annotations

import hmac
import json
import socketserver
import threading
import wsgiref.simple_server
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .._errors import ConfigError, ManifestError, NoCanary, NothingToRollBack, StateError, UnknownApp, WasmletError
from ._plane import ControlPlane

__all__ = ["AdminServer"]

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
MAX_MANIFEST = 1 << 20


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


class _ThreadingServer(socketserver.ThreadingMixIn, wsgiref.simple_server.WSGIServer):
    daemon_threads = True  # a slow deploy must not hold /metrics up


class _Reply(Exception):
    def __init__(self, status: int, body: object) -> None:
        self.status = status
        self.body = body


_STATUS = {200: "200 OK", 204: "204 No Content", 400: "400 Bad Request", 401: "401 Unauthorized",
           404: "404 Not Found", 405: "405 Method Not Allowed", 409: "409 Conflict", 413: "413 Content Too Large",
           415: "415 Unsupported Media Type", 500: "500 Internal Server Error"}


class AdminServer:
    def __init__(self, host: str, port: int, multiproc_dir: str, worker_memory: Callable[[], dict[int, int]],
                 control: ControlPlane, token: str, log_dir: Path | None = None) -> None:
        self.control = control
        self.token = token
        self.log_dir = log_dir
        self.registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(self.registry, path=multiproc_dir)  # type: ignore[no-untyped-call]
        self.registry.register(_WorkerMemory(worker_memory))
        try:
            self._server = wsgiref.simple_server.make_server(host, port, self._app, server_class=_ThreadingServer,
                                                             handler_class=_Quiet)
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

    # WSGI ----------------------------------------------------------------
    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/metrics":
            start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")])
            return [generate_latest(self.registry)]
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        try:
            if path == "/openapi.json":
                from ._openapi import openapi

                raise _Reply(200, openapi())
            if not path.startswith("/v1/"):
                raise _Reply(404, {"error": f"no such endpoint: {path}"})
            self._authorize(environ)
            raise _Reply(*self._v1(method, path, environ))
        except _Reply as reply:
            return self._json(start_response, reply.status, reply.body)

    def _authorize(self, environ: dict[str, Any]) -> None:
        given = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.token.encode()):
            raise _Reply(401, {"error": "missing or wrong bearer token (see <state dir>/admin-token)"})

    def _v1(self, method: str, path: str, environ: dict[str, Any]) -> tuple[int, object]:
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        try:
            if path == "/v1/apps" and method == "GET":
                return 200, self._apps()
            if path == "/v1/deploy" and method == "POST":
                return 200, self._deploy(environ, query)
            if path.startswith("/v1/apps/"):
                # /v1/apps/{name}[/{action}], the name URL-encoded ("app%2Fcomponent") or
                # plain ("app/component"): an app name has exactly one slash.
                parts = unquote(path[len("/v1/apps/"):]).split("/")
                name, action = "/".join(parts[:2]), "/".join(parts[2:])
                return self._app_action(method, name, action, query)
        except UnknownApp as exc:
            return 404, {"error": str(exc)}
        except (NoCanary, NothingToRollBack) as exc:
            return 409, {"error": str(exc)}
        except (StateError, ManifestError) as exc:
            return 400, {"error": str(exc)}
        except WasmletError as exc:
            return 400, {"error": str(exc)}
        return 405 if path in ("/v1/apps", "/v1/deploy") else 404, {"error": f"no such endpoint: {method} {path}"}

    def _apps(self) -> list[dict[str, Any]]:
        return self.control.apps(self._degraded())

    def _degraded(self) -> dict[str, bool]:
        return {
            str(sample.labels.get("app")): bool(sample.value)
            for family in self.registry.collect() if family.name == "wasmlet_app_degraded"
            for sample in family.samples
        }

    def _deploy(self, environ: dict[str, Any], query: dict[str, str]) -> object:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > MAX_MANIFEST:
            raise _Reply(413, {"error": f"manifest larger than {MAX_MANIFEST} bytes"})
        text = environ["wsgi.input"].read(length).decode("utf-8", "replace")
        source = query.get("source", "manifest.yaml")
        # Relative moduleURLs resolve against the manifest's folder, when the client is on this host.
        base_dir = str(Path(source).parent) if Path(source).is_absolute() else "."
        weight = query.get("canaryWeight")
        try:
            canary_weight = int(weight) if weight is not None else None
        except ValueError as exc:
            raise _Reply(400, {"error": f"canaryWeight: expected 0-100, got {weight!r}"}) from exc
        return self.control.deploy(text, source, base_dir, canary_weight, query.get("canaryHeader"))

    def _app_action(self, method: str, name: str, action: str, query: dict[str, str]) -> tuple[int, object]:
        if action == "" and method == "GET":
            return 200, self.control.app(name, self._degraded().get(name, False))
        if action == "" and method == "DELETE":
            self.control.delete(name)
            return 204, None
        if method == "POST" and action in ("rollback", "promote", "abort"):
            return 200, getattr(self.control, action)(name)
        if action == "logs" and method == "GET":
            self.control.app(name)  # 404 if unknown
            return 200, self._logs(name, int(query.get("tail", "100")))
        return 404, {"error": f"no such endpoint: {method} {name}/{action}"}

    def _logs(self, app: str, tail: int) -> list[dict[str, Any]]:
        """The app's recent log lines, from every worker's JSON log file."""
        if self.log_dir is None:
            return []
        entries: list[dict[str, Any]] = []
        for path in sorted(self.log_dir.glob("*.jsonl*")):
            try:
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("app") == app:
                    entries.append({"time": entry.get("ts"), "level": entry.get("level"), "message": entry.get("msg"),
                                    "request_id": entry.get("request_id")})
        entries.sort(key=lambda e: str(e["time"]))
        return entries[-max(tail, 0):] if tail else []

    @staticmethod
    def _json(start_response: StartResponse, status: int, value: object) -> list[bytes]:
        if status == 204:
            start_response(_STATUS[204], [])
            return []
        start_response(_STATUS.get(status, f"{status} Error"), [("Content-Type", "application/json")])
        return [json.dumps(value, indent=2).encode() + b"\n"]


