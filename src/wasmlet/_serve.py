"""``wasmlet serve``: the two sides of a host wired together in one process.

The control side (``ControlPlane`` and its admin API) and the worker side
(the ``Supervisor`` and its workers) never import each other; this module,
above both, joins them: the control plane publishes plans to the supervisor,
the admin API reads the supervisor's view of its workers.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ._errors import ConfigError
from ._multiproc import MULTIPROC_ENV
from .control import ControlPlane
from .plan import Plan
from .server import ASGI_APP_FACTORY, METRICS_ENV, PLAN_ENV, THREADS_ENV, ServeSettings
from .telemetry import release_cache_observations

if TYPE_CHECKING:
    from .control import AdminServer
    from .lattice import Lattice
    from .server import Supervisor

__all__ = ["check_listeners", "serve"]

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


def _collect_from_now() -> None:
    """Turn the collector back on (``wasmlet serve`` starts with it off), past what start-up made.

    Start-up's objects live as long as the process: frozen, later passes skip them.
    """
    gc.collect()
    gc.freeze()
    gc.enable()


def check_listeners(settings: ServeSettings) -> None:
    """Bind each address ``serve`` will listen on, and let go: a busy one is refused before any
    manifest is deployed to the state (``ConfigError``, one line naming the address and the flag)."""
    addresses = [((settings.host, settings.port), "--listen")]
    if settings.admin is not None and settings.server != "granian":  # granian runs no admin listener
        addresses.append((settings.admin, "--admin-listen"))
    for (host, port), flag in addresses:
        if port == 0:
            continue  # the kernel picks a free port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As the real listeners do; so a port in TIME_WAIT is free, one in LISTEN is not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise listen_error(host, port, flag, exc) from exc


def listen_error(host: str, port: int, flag: str, exc: OSError) -> ConfigError:
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    hint = " (or none)" if flag == "--admin-listen" else ""
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(f"cannot listen on {shown}: the address is already in use (another wasmlet or program "
                           f"holds it); choose another with {flag} ADDR:PORT{hint}")
    return ConfigError(f"cannot listen on {shown}: {exc.strerror or exc}; choose another with {flag} ADDR:PORT{hint}")


def serve(control: ControlPlane, settings: ServeSettings, log_level: str = "info",
          state_dir: Path | None = None, watch: list[Path] | None = None, lattice: Lattice | None = None) -> int:
    """Serve what the control plane holds; the admin API changes it while serving.

    With ``lattice`` (``--lattice``), this host serves what placement gives it and
    forwards the rest (``wasmlet.lattice``); it leaves the lattice when it stops.
    """
    metrics_dir = os.environ.get(MULTIPROC_ENV)
    if not metrics_dir:
        raise RuntimeError("call wasmlet._multiproc.prepare_metrics_dir() before importing the server")
    try:
        if settings.server == "granian":
            release_cache_observations()
            if lattice is not None:
                raise ConfigError("--lattice needs --server uvicorn (granian's workers get no lattice plans)")
            return _serve_granian(control.plan(), settings, log_level)
        return _serve_uvicorn(control, settings, log_level, metrics_dir, state_dir, watch or [], lattice)
    finally:
        # A start that failed first still holds them: released here, before the folder goes (the CLI's own
        # release on close comes after, and prometheus_client would then open files in a folder not there).
        release_cache_observations()
        if lattice is not None:
            lattice.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _serve_uvicorn(control: ControlPlane, settings: ServeSettings, log_level: str, metrics_dir: str,
                   state_dir: Path | None, watch: list[Path], lattice: Lattice | None = None) -> int:
    from .server import Supervisor

    plan = lattice.initial_plan() if lattice is not None else control.plan()
    log_dir = (state_dir / "logs") if state_dir is not None else None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(plan, settings, log_level, multiproc_dir=metrics_dir, log_dir=log_dir)
    try:
        supervisor.startup()
    except OSError as exc:  # taken since check_listeners: still one line, not a traceback
        raise listen_error(settings.host, settings.port, "--listen", exc) from exc
    release_cache_observations()  # the start-up deploy's, held until the workers were asked for (prometheus)
    # The admin API (FastAPI and httpx, about 0.4 s of imports) is built while the workers start
    # on the other cores, not before them; check_listeners found its address free before the deploy.
    admin = None
    if settings.admin is not None:
        try:
            admin = _admin_server(settings.admin, metrics_dir, supervisor, control, state_dir, log_dir)
        except BaseException:
            _stop_workers(supervisor)
            raise
    supervisor.on_tick = _housekeeping(control, watch)
    publish: Callable[[Plan], None] = supervisor.publish
    if lattice is not None:  # placement decides what of the desired state this host's workers get
        lattice.start(supervisor.publish)
        publish = lattice.publisher
        supervisor.on_tick = _leaving(supervisor, lattice, supervisor.on_tick)
    with control.publishing_to(publish):
        try:
            if admin is not None:
                admin.start()
            host, port = supervisor.address
            _announce(plan, host, port, admin.address if admin else None)
            with contextlib.ExitStack() as record:  # gone before the admin listener stops
                if admin is not None:
                    _record(record, admin.address, (host, port), state_dir)
                _collect_from_now()
                return supervisor.serve()
        finally:
            if admin is not None:
                admin.stop()


def _admin_server(address: tuple[str, int], metrics_dir: str, supervisor: Supervisor, control: ControlPlane,
                  state_dir: Path | None, log_dir: Path | None) -> AdminServer:
    from .control import TOKEN_FILE, AdminServer, token_file_create

    token = token_file_create(state_dir) if state_dir is not None else secrets.token_urlsafe(32)
    return AdminServer(address[0], address[1], metrics_dir, supervisor.worker_memory, control, token, log_dir,
                       state_dir / TOKEN_FILE if state_dir is not None else None)


def _stop_workers(supervisor: Supervisor, grace: float = 5.0) -> None:
    """Stop the workers just started (the admin listener could not be set up) and let go of the socket."""
    for worker in supervisor.workers:
        worker.process.terminate()
    for worker in supervisor.workers:
        try:
            worker.process.wait(grace)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()
    supervisor.shutdown()


def _leaving(supervisor: object, lattice: Lattice, then: Callable[[], None]) -> Callable[[], None]:
    """Once the host starts stopping, say so to the lattice: others take its apps over at once."""
    said = [False]

    def tick() -> None:
        if getattr(supervisor, "draining", False) and not said[0]:
            said[0] = True
            lattice.leave()
        then()

    return tick


def _record(stack: contextlib.ExitStack, admin: tuple[str, int], listen: tuple[str, int],
            state_dir: Path | None) -> None:
    """Record this host where ``wasmlet apps``, ``deploy``, ... look for it (removed at exit)."""
    from .control import TOKEN_FILE, recorded_host

    token_file = state_dir / TOKEN_FILE if state_dir is not None else None
    try:
        path = stack.enter_context(recorded_host(admin, listen, state_dir, token_file))
    except ConfigError as exc:
        log.warning("%s; client commands need --admin URL to reach this host", exc)
        return
    where = f"; token in {token_file.resolve()}" if token_file is not None else ""
    print(f"wasmlet: client commands (wasmlet apps, deploy, logs, ...) find this host through {path}{where}",
          flush=True)


def _housekeeping(control: ControlPlane, watch: list[Path]) -> Callable[[], None]:
    """Every second: re-check signatures if the trust folder changed; with ``--watch``,
    redeploy a manifest whose file, or a local module it names, changed."""
    stamps = {path: _mtimes(path) for path in watch}
    last = [0.0]

    def tick() -> None:
        now = time.monotonic()
        if now - last[0] < 1.0:
            return
        last[0] = now
        try:
            control.recheck_signatures()
        except Exception:
            log.exception("signature re-check failed")
        for path in watch:
            current = _mtimes(path)
            if current != stamps[path]:
                stamps[path] = current
                try:
                    result = control.deploy_files([path])
                    log.info("--watch: %s changed; redeployed (generation %d)", path, result.generation)
                except Exception as exc:  # a broken edit leaves the running version in place
                    log.error("--watch: %s changed but does not deploy: %s", path, exc)

    return tick


def _mtimes(manifest: Path) -> tuple[int, ...]:
    """mtimes of a manifest and of the local module files it names (missing: 0)."""
    from .plan import load_manifest
    from .registry import local_module_path

    paths = [manifest]
    # An invalid edit: the manifest's own mtime is enough to notice the next one.
    with contextlib.suppress(Exception):
        paths += [p for p in map(local_module_path, load_manifest(manifest)) if p is not None]
    stamps = []
    for path in paths:
        try:
            stamps.append(path.stat().st_mtime_ns)
        except OSError:
            stamps.append(0)
    return tuple(stamps)


def _serve_granian(plan: Plan, settings: ServeSettings, log_level: str) -> int:
    """Granian runs its own workers; wasmlet's supervisor, watchdog and admin listener are not used."""
    import multiprocessing

    from granian import Granian
    from granian.constants import Interfaces, Loops

    # granian starts its workers with multiprocessing's default method, fork on Linux. This
    # process has compiled modules with wasmtime (and may run its threads): a forked child
    # inherits that state half-made and hangs in its first wasmtime call. Spawned workers
    # start clean and build their app from $WASMLET_PLAN.
    multiprocessing.set_start_method("spawn", force=True)

    fd, plan_file = tempfile.mkstemp(prefix=f"wasmlet-plan-{os.getpid()}-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(plan.to_json())
    os.environ[PLAN_ENV] = plan_file
    os.environ[THREADS_ENV] = str(settings.threads)
    os.environ[METRICS_ENV] = "1" if settings.metrics else "0"
    try:
        server = Granian(
            ASGI_APP_FACTORY,
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
        _collect_from_now()
        server.serve()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(plan_file)
    return 0
