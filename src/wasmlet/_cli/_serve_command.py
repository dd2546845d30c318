"""``wasmlet serve``: its flags, read into ``ServeSettings``, handed to ``wasmlet._serve``.

Everything heavy (the control plane, the server, the engine) is imported inside
``serve``, in the order start-up needs (``prepare_serving`` first: the metrics folder).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._errors import ConfigError, WasmletError
from ._lattice_flags import join_lattice, lattice_options
from ._options import cache_option, fail

if TYPE_CHECKING:
    from ..plan import EngineSettings

__all__ = ["serve"]


class _ServerDefault(click.Option):
    """An option of ``serve`` whose default is a constant of ``wasmlet.server``, defined there once.

    Left unset, the option is None and ``ServeSettings`` applies its default. The help shows the
    constant; nothing else imports the server here (it must come after ``prepare_serving``).
    """

    def __init__(self, *args: Any, constant: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.constant = constant

    def get_help_extra(self, ctx: click.Context) -> Any:
        from .. import server

        extra = super().get_help_extra(ctx)
        extra["default"] = str(getattr(server, self.constant))
        return extra


@click.command()
@click.argument("manifests", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--listen", default="127.0.0.1:3000", show_default=True, help="ADDR:PORT to listen on.")
@click.option("--workers", type=int, default=None, help="Worker processes (default: one per core).")
@click.option("--threads", type=int, default=16, show_default=True, help="Guest threads per worker.")
@click.option("--server", type=click.Choice(["uvicorn", "granian"]), default="uvicorn", show_default=True)
@click.option("--drain-timeout", type=float, default=30.0, show_default=True,
              help="Seconds to finish in-flight requests after SIGTERM.")
@click.option("--admin-listen", default="127.0.0.1:9180", show_default=True, envvar="WASMLET_ADMIN_LISTEN",
              help="ADDR:PORT of the admin listener (/metrics, /apps), or 'none'.")
@click.option("--otlp", is_flag=True, help="Export traces over OTLP (also enabled by the OTEL_* variables).")
@click.option("--metrics/--no-metrics", default=True, show_default=True, help="Record Prometheus metrics.")
@click.option("--trust", "trust_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Require signed modules: trust roots, certificates and revocations in this folder.")
@click.option("--allow-files", "allow_files", multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A folder manifests may mount (capabilities.files) or read modules from; repeatable. Manifests "
              "sent to the admin API may use only these (none by default); given, it also limits the manifests "
              "named here (to these and their own folder).")
@click.option("--watchdog-memory-growth", cls=_ServerDefault, constant="WATCHDOG_MEMORY_GROWTH",
              help="Recycle a worker whose RSS grows faster than this per minute.")
@click.option("--watchdog-window", type=float, cls=_ServerDefault, constant="WATCHDOG_WINDOW",
              help="Seconds of RSS history the growth is measured over.")
@click.option("--watchdog-interval", type=float, cls=_ServerDefault, constant="WATCHDOG_INTERVAL",
              help="Seconds between RSS samples.")
@click.option("--watchdog-warmup", type=float, cls=_ServerDefault, constant="WATCHDOG_WARMUP",
              help="Seconds after a worker starts before its memory growth is judged (its pools fill meanwhile).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar="WASMLET_STATE_DIR", help="Durable state: apps, versions, canaries, admin token "
              "(default: $XDG_STATE_HOME/wasmlet).")
@click.option("--watch", is_flag=True, help="Redeploy a manifest when it or a local module it names changes.")
@click.option("--forwarded-allow-ips", default="",
              help="Proxies trusted to set the client's address and scheme (X-Forwarded-For, X-Forwarded-Proto): "
              "addresses or networks, comma-separated, or '*'. None by default.")
@click.option("--header-timeout", type=float, default=10.0, show_default=True,
              help="Seconds a client has to send a request's headers.")
@click.option("--max-client-connections", type=int, default=64, show_default=True,
              help="Open connections per client address (IPv6: per /64) in each worker; trusted proxies are exempt.")
@click.option("--body-memory", default="256Mi", show_default=True,
              help="Request bodies a worker holds at once; past it, new uploads get 503.")
@click.option("--pool-keep-resident", default="1Mi", show_default=True,
              help="Bytes of each instance's memory zeroed and kept mapped when it ends, instead of released and "
              "faulted in again by the next: more suits guests that touch much memory (an image resizer), less "
              "those that declare much and touch little (docs/benchmarks.md, section 26). Up to 1Gi.")
@click.option("--worker-priority", type=click.IntRange(-20, 19), default=None, metavar="NICE",
              help="The workers' nice value, as nginx's worker_priority: lower runs them ahead of other busy "
              "processes on the machine (a negative one needs CAP_SYS_NICE or RLIMIT_NICE). Default: this "
              "process's own (docs/benchmarks.md, section 32).")
@lattice_options(host=True)
@cache_option
@click.pass_context
def serve(ctx: click.Context, /, manifests: tuple[Path, ...], listen: str, workers: int | None, threads: int,
          server: str, drain_timeout: float, admin_listen: str, otlp: bool, metrics: bool,
          trust_dir: Path | None, allow_files: tuple[Path, ...], watchdog_memory_growth: str | None,
          watchdog_window: float | None, watchdog_interval: float | None, watchdog_warmup: float | None,
          state_dir: Path | None, watch: bool,
          forwarded_allow_ips: str, header_timeout: float, max_client_connections: int, body_memory: str,
          pool_keep_resident: str, worker_priority: int | None, cache_dir: Path | None,
          **lattice_flags: Any) -> None:
    """Serve the apps of OAM Application manifests, and what was deployed before.

    The manifests given are deployed over the durable state (a new version
    where a component changed); with none, the host serves what it served
    when it last stopped. `wasmlet deploy` changes a running host.
    """
    import gc

    from .._launch import prepare_serving, took_head_start
    from .._multiproc import sweep_stale_dirs

    # Start-up makes ~60,000 long-lived objects (imports, the deploy) and no garbage worth a pass:
    # the collector stays off until the host serves (_serve), ~85 ms sooner to the first 200, and
    # is on again whatever happens (a command run in-process, say by a test, that fails first).
    gc.disable()
    ctx.call_on_close(gc.enable)
    # Likewise the start-up deploy's cache metrics: written once the first workers are asked for (_serve).
    from ..telemetry import hold_cache_observations, release_cache_observations

    hold_cache_observations()
    ctx.call_on_close(release_cache_observations)
    sweep_stale_dirs()  # what a host killed with SIGKILL left in the temp and shared-memory folders
    if not took_head_start():  # else the console script did it before loading the CLI (wasmlet._launch)
        # Before prometheus_client is imported by what follows; the worker zygote imports while this
        # process imports and deploys (issue 13). granian forks its own workers.
        prepare_serving(zygote=server != "granian")
    from .._serve import check_listeners
    from .._serve import serve as run_server
    from ..control import ControlPlane, StateStore, default_state_dir
    from ..engine import default_cache_dir
    from ..plan import parse_quantity
    from ..server import ServeSettings, check_priority, parse_forwarded_allow_ips, parse_listen

    try:
        host, port = parse_listen(listen)
        admin = None if admin_listen.lower() == "none" else parse_listen(admin_listen)
        watchdog: dict[str, Any] = {}  # what was given; ServeSettings has the defaults
        if watchdog_memory_growth is not None:
            try:
                watchdog["watchdog_memory_growth"] = parse_quantity(watchdog_memory_growth)
            except ValueError as exc:
                raise ConfigError(f"--watchdog-memory-growth: {exc}") from exc
        for name, value in (("watchdog_window", watchdog_window), ("watchdog_interval", watchdog_interval),
                            ("watchdog_warmup", watchdog_warmup)):
            if value is not None:
                watchdog[name] = value
        try:
            bodies = parse_quantity(body_memory)
        except ValueError as exc:
            raise ConfigError(f"--body-memory: {exc}") from exc
        engine = engine_settings(pool_keep_resident)
        kwargs = {"workers": workers} if workers is not None else {}
        settings = ServeSettings(host=host, port=port, threads=threads, server=server,
                                 drain_timeout=drain_timeout, admin=admin, otlp=otlp, metrics=metrics,
                                 **watchdog,
                                 forwarded_allow_ips=parse_forwarded_allow_ips(forwarded_allow_ips),
                                 header_timeout=header_timeout, client_connections=max_client_connections,
                                 body_memory=bodies, worker_priority=worker_priority, **kwargs)
        check_listeners(settings)  # a busy port is said before anything is deployed to the state
        if settings.worker_priority is not None:
            check_priority(settings.worker_priority)  # likewise a priority the kernel would refuse the workers
        trust = None
        if trust_dir is not None:
            from ..signing import TrustStore

            trust = TrustStore.from_dir(trust_dir)
        state_dir = state_dir or default_state_dir()
        lattice = join_lattice(lattice_flags, state_dir, cache_dir or default_cache_dir(), settings)
        control = ControlPlane(lattice.state if lattice and lattice.state else StateStore(state_dir),
                               engine, cache_dir or default_cache_dir(), trust, allow_files=allow_files)
        control.restore()  # every recorded version checked (spec, bytes, --trust) before it is served; problems logged
        if manifests:
            control.deploy_files(list(manifests))
        if not control.has_apps():
            click.echo("wasmlet: no apps yet; deploy some with `wasmlet deploy MANIFEST`", err=True)
        if lattice is not None:
            lattice.attach(control)
    except WasmletError as exc:
        fail(exc)
    try:
        code = run_server(control, settings, ctx.obj["log_level"], state_dir, list(manifests) if watch else [],
                          lattice=lattice)
    except WasmletError as exc:
        fail(exc)
    sys.exit(code)


def engine_settings(pool_keep_resident: str) -> EngineSettings:
    """The serving engine's settings from ``serve``'s flags: ``EngineSettings``, or ``ConfigError`` naming the flag."""
    from ..plan import EngineSettings, parse_quantity

    default = EngineSettings()
    try:
        keep = parse_quantity(pool_keep_resident)
    except ValueError as exc:
        raise ConfigError(f"--pool-keep-resident: {exc}") from exc
    if not 0 <= keep <= default.pool_max_memory:
        # No slot is larger than the pool's largest memory: more could never be kept.
        raise ConfigError(f"--pool-keep-resident: expected 0 to {default.pool_max_memory >> 20}Mi (the pool's "
                          f"largest memory), got {pool_keep_resident!r}")
    return EngineSettings(pool_keep_resident=keep)
