"""``wasmlet serve``: run a plan under the chosen HTTP server, with the admin listener."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile

from .._deploy import Plan
from .._multiproc import MULTIPROC_ENV
from ._asgi import METRICS_ENV, PLAN_ENV, THREADS_ENV
from ._settings import ServeSettings

__all__ = ["serve"]

log = logging.getLogger("wasmlet.server")

def _announce(plan: Plan, host: str, port: int, admin: tuple[str, int] | None) -> None:
    shown = f"[{host}]" if ":" in host else host
    print(f"wasmlet: serving {len(plan.components)} app(s) on http://{shown}:{port}", flush=True)
    for planned in plan.components:
        spec = planned.spec
        where = f"http://{spec.host or shown + ':' + str(port)}{spec.route}"
        print(f"  {spec.qualified_name:30s} {where}  sha256:{planned.digest[:12]}", flush=True)
    if admin is not None:
        print(f"wasmlet: admin (metrics, apps) on http://{admin[0]}:{admin[1]}", flush=True)


def serve(plan: Plan, settings: ServeSettings, log_level: str = "info") -> int:
    metrics_dir = os.environ.get(MULTIPROC_ENV)
    if not metrics_dir:
        raise RuntimeError("call wasmlet._multiproc.prepare_metrics_dir() before importing the server")
    try:
        if settings.server == "granian":
            return _serve_granian(plan, settings, log_level)
        return _serve_uvicorn(plan, settings, log_level, metrics_dir)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _serve_uvicorn(plan: Plan, settings: ServeSettings, log_level: str, metrics_dir: str) -> int:
    from ._admin import AdminServer
    from ._supervisor import Supervisor

    supervisor = Supervisor(plan, settings, log_level, multiproc_dir=metrics_dir)
    admin = None
    if settings.admin is not None:
        admin = AdminServer(settings.admin[0], settings.admin[1], plan, metrics_dir, supervisor.worker_memory)
    supervisor.startup()
    try:
        if admin is not None:
            admin.start()
        host, port = supervisor.address
        _announce(plan, host, port, admin.address if admin else None)
        return supervisor.serve()
    finally:
        if admin is not None:
            admin.stop()


def _serve_granian(plan: Plan, settings: ServeSettings, log_level: str) -> int:
    """Granian runs its own workers; wasmlet's supervisor, watchdog and admin listener are not used."""
    from granian import Granian
    from granian.constants import Interfaces, Loops

    fd, plan_file = tempfile.mkstemp(prefix="wasmlet-plan-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(plan.to_json())
    os.environ[PLAN_ENV] = plan_file
    os.environ[THREADS_ENV] = str(settings.threads)
    os.environ[METRICS_ENV] = "1" if settings.metrics else "0"
    try:
        server = Granian(
            "wasmlet.server._asgi:create_app",
            factory=True,
            address=settings.host,
            port=settings.port,
            interface=Interfaces.ASGI,
            workers=settings.workers,
            loop=Loops.uvloop,
            backlog=settings.backlog,
            log_enabled=log_level.lower() == "debug",
            workers_kill_timeout=int(settings.drain_timeout),
        )
        _announce(plan, settings.host, settings.port, None)
        server.serve()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(plan_file)
    return 0
