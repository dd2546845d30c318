"""The admin API (loopback by default): metrics, app state and the control API.

A FastAPI app served by uvicorn (HTTP/1.1) on a thread of the supervisor.
``/healthz``, ``/metrics`` and ``/openapi.json`` are open; every ``/v1/``
endpoint needs ``Authorization: Bearer <token>`` (the token is in
``<state dir>/admin-token``). The OpenAPI document is generated from the
routes and the response models in ``_views`` (``openapi()``), so it cannot
drift from what the server sends.

Errors are ``{"error": "..."}`` with the status a client can act on: 400 for
bad input (a manifest, a parameter), 401, 404 for an unknown app, 409 when
the app's state does not allow the change, 413 and 415 for the body, 500 for
a host failure (the change was not applied).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .._errors import (
    ConfigError,
    NoCanary,
    NothingToRollBack,
    UnknownApp,
    WasmletError,
)
from ..plan import MAX_MANIFEST_BYTES, decode_manifest
from ._plane import ControlPlane
from ._views import AppView, DeployReport, ErrorBody, LogEntry, VersionView

__all__ = ["AdminServer", "create_admin_app", "openapi"]

log = logging.getLogger("wasmlet.admin")

MAX_MANIFEST = MAX_MANIFEST_BYTES  # bytes of a manifest sent to /v1/deploy (the loader's own cap)
_MANIFEST_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "application/json", "text/plain")


class _Failed(Exception):
    """An answer other than 2xx, raised from a route and turned into ``{"error": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "The request or the manifest is invalid; the message names the file, field and expectation.",
        401: "No bearer token, or not the host's token.",
        404: "No app of that name is deployed.",
        409: "Not possible in the app's current state (no canary, nothing to roll back, another change running).",
        413: "The manifest is too large.",
        415: "The body is not YAML or JSON.",
        500: "The host failed; the change was not applied.",
    }
    return {s: {"model": ErrorBody, "description": descriptions[s]} for s in (401, *statuses, 500)}


class AdminBackend:
    """What the routes need: the control plane, the token, the metrics registry and the log folder."""

    def __init__(self, control: ControlPlane, token: str, registry: CollectorRegistry,
                 log_dir: Path | None = None, token_path: Path | None = None) -> None:
        self.control = control
        self.token = token
        self.registry = registry
        self.log_dir = log_dir
        self.token_path = token_path

    def degraded(self) -> dict[str, bool]:
        """The watchdog's view, from the workers' ``wasmlet_app_degraded`` gauge."""
        return {
            str(sample.labels.get("app")): bool(sample.value)
            for family in self.registry.collect() if family.name == "wasmlet_app_degraded"
            for sample in family.samples
        }


_bearer = HTTPBearer(auto_error=False, scheme_name="bearer", description="The token in `<state dir>/admin-token`.")


def _backend(request: Request) -> AdminBackend:
    backend: AdminBackend | None = request.app.state.backend
    if backend is None:  # only documentation is built without one
        raise _Failed(500, "the admin API has no control plane attached")
    return backend


def _authorized(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> AdminBackend:
    backend = _backend(request)
    given = credentials.credentials.strip().encode() if credentials is not None else b""
    if not hmac.compare_digest(given, backend.token.encode()):
        where = str(backend.token_path) if backend.token_path else "the state folder's admin-token"
        raise _Failed(401, f"missing or wrong bearer token (the host's token is in {where})")
    return backend


Backend = Annotated[AdminBackend, Depends(_authorized)]


def _name(app: str, component: str) -> str:
    return f"{app}/{component}"


async def _read_manifest(request: Request) -> str:
    kind = request.headers.get("content-type", "application/yaml").split(";")[0].strip().lower()
    if kind not in _MANIFEST_TYPES:
        raise _Failed(415, f"Content-Type: expected application/yaml or application/json, got {kind!r}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_MANIFEST:
        raise _Failed(413, f"manifest larger than {MAX_MANIFEST} bytes")
    body = bytearray()
    async for chunk in request.stream():  # a chunked body is counted as it comes, never held whole past the cap
        body += chunk
        if len(body) > MAX_MANIFEST:
            raise _Failed(413, f"manifest larger than {MAX_MANIFEST} bytes")
    source = request.query_params.get("source", "manifest.yaml")
    return decode_manifest(bytes(body), source[:4096])  # ManifestError (400) as the CLI says it


def read_logs(log_dir: Path | None, app: str, tail: int) -> list[LogEntry]:
    """The app's recent log lines, from every worker's JSON log file."""
    if log_dir is None or tail <= 0:
        return []
    entries: list[LogEntry] = []
    for path in sorted(log_dir.glob("*.jsonl*")):
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("app") == app:
                entries.append(LogEntry(time=_text(entry.get("ts")), level=_text(entry.get("level")),
                                        message=_text(entry.get("msg")), request_id=_text(entry.get("request_id"))))
    entries.sort(key=lambda e: e.time or "")
    return entries[-tail:]


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _change_route(verb: str) -> Callable[..., AppView]:
    """The route of a one-word change (``rollback``, ``promote``, ``abort``): ``ControlPlane.<verb>``."""

    def change(app: str, component: str, backend: Backend) -> AppView:
        operation: Callable[[str], AppView] = getattr(backend.control, verb)
        return operation(_name(app, component))

    return change


def create_admin_app(backend: AdminBackend | None = None) -> FastAPI:
    """The admin API; without a backend it only documents itself (``openapi()``)."""
    app = FastAPI(
        title="wasmlet admin API",
        version="1",
        description="Deploy, inspect, roll back and observe the apps of one wasmlet host.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        generate_unique_id_function=lambda route: route.name,  # operationId: the function's name
    )
    app.state.backend = backend

    @app.exception_handler(_Failed)
    async def _failed(request: Request, exc: _Failed) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI says 422; a bad parameter is a bad request, named like a manifest field.
        problems = [f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"error": "; ".join(problems)}, status_code=400)

    @app.exception_handler(WasmletError)
    async def _refused(request: Request, exc: WasmletError) -> JSONResponse:
        status = 404 if isinstance(exc, UnknownApp) else 409 if isinstance(exc, NoCanary | NothingToRollBack) else 400
        status = getattr(exc, "http_status", status)
        return JSONResponse({"error": str(exc)}, status_code=status)

    @app.exception_handler(Exception)
    async def _crashed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("admin API: %s %s failed", request.method, request.url.path)
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); the change was not applied"},
                            status_code=500)

    @app.get("/healthz", response_class=PlainTextResponse, tags=["host"], summary="Liveness",
             responses={200: {"content": {"text/plain": {"example": "ok\n"}}, "description": "The host is up."}})
    def healthz() -> str:
        return "ok\n"

    @app.get("/metrics", response_class=PlainTextResponse, tags=["host"], summary="Prometheus metrics",
             responses={200: {"content": {"text/plain": {}},
                              "description": "Every worker's samples, in the Prometheus text format."}})
    def metrics(request: Request) -> Response:
        data = generate_latest(_backend(request).registry)
        return Response(data, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/apps", tags=["apps"], summary="List apps", response_model=list[AppView],
             responses=_responses())
    def list_apps(backend: Backend) -> list[AppView]:
        return backend.control.apps(backend.degraded())

    @app.post(
        "/v1/deploy", tags=["apps"], summary="Deploy a manifest", response_model=DeployReport,
        responses=_responses(400, 409, 413, 415),
        openapi_extra={"requestBody": {"required": True, "description": "An OAM `Application` manifest.",
                                       "content": {"application/yaml": {"schema": {"type": "string"}}}}},
        description=(
            "Validates the manifest, fetches and compiles its modules, records the new versions in one "
            "durable transaction and reloads the workers. Components whose spec and digest are unchanged "
            "keep their version. With `canaryWeight` and/or `canaryHeader`, changed components become "
            "canaries and the stable versions keep serving."
        ),
    )
    async def deploy(
        request: Request,
        backend: Backend,
        source: Annotated[str, Query(max_length=4096, description="The manifest's name, used in messages.")]
        = "manifest.yaml",
        canary_weight: Annotated[int | None, Query(alias="canaryWeight", ge=0, le=100,
                                                   description="Deploy as a canary taking this percentage.")] = None,
        canary_header: Annotated[str | None, Query(alias="canaryHeader", max_length=1024,
                                                   description="Deploy as a canary reached by this `Name: value`.")]
        = None,
    ) -> DeployReport:
        text = await _read_manifest(request)
        # Relative moduleURLs resolve against the manifest's folder, when the client is on this host.
        base_dir = str(Path(source).parent) if Path(source).is_absolute() else "."
        # The deploy compiles and may wait on the control plane's lock: off the event loop.
        return await asyncio.to_thread(backend.control.deploy, text, source, base_dir, canary_weight, canary_header)

    @app.get("/v1/apps/{app}/{component}", tags=["apps"], summary="Show an app", response_model=AppView,
             responses=_responses(404))
    def get_app(app: str, component: str, backend: Backend) -> AppView:
        name = _name(app, component)
        return backend.control.app(name, backend.degraded().get(name, False))

    @app.delete("/v1/apps/{app}/{component}", tags=["apps"], summary="Delete an app", status_code=204,
                response_class=Response, responses=_responses(404),
                description="Stops serving the app. Its versions stay in the history.")
    def delete_app(app: str, component: str, backend: Backend) -> Response:
        backend.control.delete(_name(app, component))
        return Response(status_code=204)

    changes: tuple[tuple[str, str, str], ...] = (
        ("rollback", "Roll back to the previous version",
         "Swaps the stable and previous versions (rolling back twice returns); drops any canary."),
        ("promote", "Promote the canary", "The canary becomes stable; the old stable becomes previous."),
        ("abort", "Abort the canary", "Drops the canary; the stable keeps serving."),
    )
    for verb, summary, description in changes:
        app.add_api_route(
            f"/v1/apps/{{app}}/{{component}}/{verb}", _change_route(verb), methods=["POST"], name=verb,
            tags=["apps"], summary=summary, description=description, response_model=AppView,
            responses=_responses(404, 409),
        )

    @app.get("/v1/apps/{app}/{component}/versions", tags=["apps"], summary="The versions of an app, newest first",
             response_model=list[VersionView], responses=_responses(404),
             description="Deleted apps keep their history; a version's role says whether it still serves.")
    def history(
        app: str, component: str, backend: Backend,
        limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 20,
    ) -> list[VersionView]:
        return backend.control.history(_name(app, component), limit)

    @app.get("/v1/apps/{app}/{component}/logs", tags=["apps"], summary="Recent log lines of an app",
             response_model=list[LogEntry], responses=_responses(404))
    def logs(
        app: str, component: str, backend: Backend,
        tail: Annotated[int, Query(ge=0, le=100_000, description="How many of the last lines.")] = 100,
    ) -> list[LogEntry]:
        name = _name(app, component)
        backend.control.app(name)  # 404 if unknown
        return read_logs(backend.log_dir, name, tail)

    return app


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the admin API, as ``GET /openapi.json`` serves it (a fresh copy)."""
    document: dict[str, Any] = json.loads(json.dumps(create_admin_app().openapi()))
    return document


class _WorkerMemory(Collector):
    def __init__(self, sample: Callable[[], dict[int, int]]) -> None:
        self._sample = sample

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("wasmlet_worker_rss_bytes", "Resident memory of each worker process.",
                                   labels=["worker"])
        for pid, rss in sorted(self._sample().items()):
            family.add_metric([str(pid)], rss)
        yield family


class AdminServer:
    """The admin API on its own uvicorn server and thread, beside the supervisor.

    The socket is bound in the constructor, so a busy address fails before
    anything starts (``ConfigError`` naming the flag).
    """

    #: Idle keep-alive connections close after this. A stalled client costs one asyncio
    #: protocol object, not a thread (the WSGI server it replaced spent one thread each).
    KEEP_ALIVE = 5.0

    def __init__(self, host: str, port: int, multiproc_dir: str, worker_memory: Callable[[], dict[int, int]],
                 control: ControlPlane, token: str, log_dir: Path | None = None,
                 token_path: Path | None = None) -> None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)  # type: ignore[no-untyped-call]
        registry.register(_WorkerMemory(worker_memory))
        self.app = create_admin_app(AdminBackend(control, token, registry, log_dir, token_path))
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind((host, port))
            self._socket.listen(128)
        except OSError as exc:
            self._socket.close()
            raise ConfigError(f"--admin-listen: cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        config = uvicorn.Config(
            self.app, log_config=None, access_log=False, lifespan="off", http="h11", loop="asyncio",
            timeout_keep_alive=int(self.KEEP_ALIVE),
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="wasmlet-admin", daemon=True)

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # a failed admin listener must not take the host down
            self._server.run(sockets=[self._socket])

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._socket.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._socket.close()
