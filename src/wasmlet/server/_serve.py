"""``wasmlet serve``: run a plan under the chosen HTTP server."""

from __future__ import annotations

import logging
import os
import tempfile

from .._deploy import Plan
from ._asgi import PLAN_ENV, THREADS_ENV
from ._settings import ServeSettings
from ._supervisor import Supervisor

__all__ = ["serve"]

log = logging.getLogger("wasmlet.server")


def _announce(plan: Plan, host: str, port: int) -> None:
    shown = f"[{host}]" if ":" in host else host
    print(f"wasmlet: serving {len(plan.components)} app(s) on http://{shown}:{port}", flush=True)
    for planned in plan.components:
        spec = planned.spec
        where = f"http://{spec.host or shown + ':' + str(port)}{spec.route}"
        print(f"  {spec.qualified_name:30s} {where}  sha256:{planned.digest[:12]}", flush=True)


def serve(plan: Plan, settings: ServeSettings, log_level: str = "info") -> int:
    if settings.server == "granian":
        return _serve_granian(plan, settings, log_level)
    supervisor = Supervisor(plan, settings, log_level)
    supervisor.startup()
    host, port = supervisor.address
    _announce(plan, host, port)
    return supervisor.serve()


def _serve_granian(plan: Plan, settings: ServeSettings, log_level: str) -> int:
    from granian import Granian
    from granian.constants import Interfaces, Loops

    fd, plan_file = tempfile.mkstemp(prefix="wasmlet-plan-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(plan.to_json())
    os.environ[PLAN_ENV] = plan_file
    os.environ[THREADS_ENV] = str(settings.threads)
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
        _announce(plan, settings.host, settings.port)
        server.serve()
    finally:
        os.unlink(plan_file)
    return 0
