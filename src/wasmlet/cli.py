"""The ``wasmlet`` command: arguments -> settings -> load -> run."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import __version__
from ._errors import ConfigError, WasmletError
from ._logging import configure_logging

if TYPE_CHECKING:
    from .control import AdminClient

_cache_option = click.option(
    "--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    envvar="WASMLET_CACHE_DIR", help="Precompiled-module cache (default: $XDG_CACHE_HOME/wasmlet).",
)


def _fail(exc: WasmletError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wasmlet")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
@click.pass_context
def main(ctx: click.Context, log_level: str) -> None:
    """wasmlet: serve WebAssembly modules as HTTP edge functions."""
    ctx.obj = {"log_level": log_level}
    configure_logging(log_level)


@main.command()
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
@click.option("--watchdog-memory-growth", default="2Mi", show_default=True,
              help="Recycle a worker whose RSS grows faster than this per minute.")
@click.option("--watchdog-window", type=float, default=60.0, show_default=True,
              help="Seconds of RSS history the growth is measured over.")
@click.option("--watchdog-interval", type=float, default=5.0, show_default=True, help="Seconds between RSS samples.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar="WASMLET_STATE_DIR", help="Durable state: apps, versions, canaries, admin token "
              "(default: $XDG_STATE_HOME/wasmlet).")
@click.option("--watch", is_flag=True, help="Redeploy a manifest when it or a local module it names changes.")
@_cache_option
@click.pass_context
def serve(ctx: click.Context, manifests: tuple[Path, ...], listen: str, workers: int | None, threads: int,
          server: str, drain_timeout: float, admin_listen: str, otlp: bool, metrics: bool,
          trust_dir: Path | None, watchdog_memory_growth: str,
          watchdog_window: float, watchdog_interval: float, state_dir: Path | None, watch: bool,
          cache_dir: Path | None) -> None:
    """Serve the apps of OAM Application manifests, and what was deployed before.

    The manifests given are deployed over the durable state (a new version
    where a component changed); with none, the host serves what it served
    when it last stopped. `wasmlet deploy` changes a running host.
    """
    from ._multiproc import prepare_metrics_dir

    prepare_metrics_dir()  # before prometheus_client is imported by what follows
    from ._serve import serve as run_server
    from .control import ControlPlane, StateStore, default_state_dir
    from .engine import default_cache_dir
    from .plan import EngineSettings, parse_quantity
    from .server import ServeSettings, parse_listen

    try:
        host, port = parse_listen(listen)
        admin = None if admin_listen.lower() == "none" else parse_listen(admin_listen)
        try:
            growth = parse_quantity(watchdog_memory_growth)
        except ValueError as exc:
            raise ConfigError(f"--watchdog-memory-growth: {exc}") from exc
        kwargs = {"workers": workers} if workers is not None else {}
        settings = ServeSettings(host=host, port=port, threads=threads, server=server,
                                 drain_timeout=drain_timeout, admin=admin, otlp=otlp, metrics=metrics,
                                 watchdog_memory_growth=growth, watchdog_window=watchdog_window,
                                 watchdog_interval=watchdog_interval, **kwargs)
        trust = None
        if trust_dir is not None:
            from .signing import TrustStore

            trust = TrustStore.from_dir(trust_dir)
        state_dir = state_dir or default_state_dir()
        control = ControlPlane(StateStore(state_dir), EngineSettings(), cache_dir or default_cache_dir(), trust)
        if manifests:
            control.deploy_files(list(manifests))
        if not control.has_apps():
            click.echo("wasmlet: no apps yet; deploy some with `wasmlet deploy MANIFEST`", err=True)
    except WasmletError as exc:
        _fail(exc)
    sys.exit(run_server(control, settings, ctx.obj["log_level"], state_dir, list(manifests) if watch else []))


@main.command()
@click.argument("manifests", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(manifests: tuple[str, ...]) -> None:
    """Check manifests without deploying anything."""
    from .plan import assign_routes, load_manifest

    try:
        specs = [spec for path in manifests for spec in load_manifest(path)]
        specs = assign_routes(specs)
    except WasmletError as exc:
        _fail(exc)
    for spec in specs:
        click.echo(f"ok  {spec.qualified_name}  route={spec.route}  module={spec.module_url}")


@main.command()
@click.argument("modules", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_cache_option
def compile(modules: tuple[Path, ...], cache_dir: Path | None) -> None:  # noqa: A001 - the verb users type
    """Precompile modules into the cache (AOT), ahead of any deploy."""
    from .engine import ModuleCache, build_engine
    from .plan import EngineSettings

    settings = EngineSettings()
    engine = build_engine(settings.__class__(**{**settings.__dict__, "pool_instances": 4}))
    cache = ModuleCache(engine, settings, cache_dir)
    try:
        for module in modules:
            digest, path = cache.compile(module.read_bytes(), str(module))
            click.echo(f"sha256:{digest}  {path}")
    except WasmletError as exc:
        _fail(exc)


@main.command()
@click.argument("module", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-X", "--method", default="GET", show_default=True)
@click.option("--path", "req_path", default="/", show_default=True, help="Request path, with ?query.")
@click.option("-H", "--header", "headers", multiple=True, help="'Name: value', repeatable.")
@click.option("-d", "--data", default=None, help="Request body; @FILE reads a file.")
@click.option("-e", "--env", "env", multiple=True, help="NAME=VALUE for the guest, repeatable.")
@click.option("--memory-limit", default="128Mi", show_default=True)
@click.option("--timeout", default="10s", show_default=True)
@_cache_option
def run(module: Path, method: str, req_path: str, headers: tuple[str, ...], data: str | None,
        env: tuple[str, ...], memory_limit: str, timeout: str, cache_dir: Path | None) -> None:
    """Send one request through MODULE and print the HTTP response."""
    from ._run import run_once

    try:
        status, response_headers, body = run_once(
            module, method=method, target=req_path, headers=headers, data=data, env=env,
            memory_limit=memory_limit, timeout=timeout, cache_dir=cache_dir,
        )
    except WasmletError as exc:
        _fail(exc)
    click.echo(f"HTTP/1.1 {status}")
    for name, value in response_headers:
        click.echo(f"{name}: {value}")
    click.echo("")
    sys.stdout.flush()
    sys.stdout.buffer.write(body)
    sys.stdout.flush()
    sys.exit(0 if status < 500 else 1)


_insecure_option = click.option(
    "--insecure", is_flag=True,
    help="Plain HTTP to this registry (loopback registries always use it; see also $WASMLET_INSECURE_REGISTRIES).",
)


@main.command()
@click.argument("module", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("reference")
@_insecure_option
@_cache_option
def push(module: Path, reference: str, insecure: bool, cache_dir: Path | None) -> None:
    """Push MODULE as a Wasm OCI artifact to oci://HOST[:PORT]/REPO[:TAG]."""
    from .engine import BlobStore, default_cache_dir
    from .registry import push_module

    try:
        pushed = push_module(module.read_bytes(), reference, blobs=BlobStore(cache_dir or default_cache_dir()),
                             insecure=insecure, title=module.name)
    except WasmletError as exc:
        _fail(exc)
    click.echo(f"pushed  {pushed.reference}")
    click.echo(f"module  {pushed.module_digest}  ({pushed.size} bytes)")


@main.command()
@click.argument("reference")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the module to this file.")
@_insecure_option
@_cache_option
def pull(reference: str, output: Path | None, insecure: bool, cache_dir: Path | None) -> None:
    """Pull oci://HOST[:PORT]/REPO[:TAG|@sha256:DIGEST] into the local store."""
    from .engine import BlobStore, default_cache_dir
    from .registry import pull_module

    try:
        pulled = pull_module(reference, BlobStore(cache_dir or default_cache_dir()), insecure=insecure)
    except WasmletError as exc:
        _fail(exc)
    if output is not None:
        try:
            output.write_bytes(pulled.data)
        except OSError as exc:
            click.echo(f"error: cannot write {output}: {exc.strerror or exc}", err=True)
            sys.exit(1)
    click.echo(f"pulled  {pulled.reference}{'  (offline: local copy)' if pulled.offline else ''}")
    click.echo(f"module  sha256:{pulled.module_digest}  ({len(pulled.data)} bytes)")


@main.command()
@click.argument("registry")
@click.option("-u", "--username", required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@_insecure_option
def login(registry: str, username: str, password_stdin: bool, insecure: bool) -> None:
    """Check credentials for REGISTRY (HOST[:PORT]) and save them in ~/.docker/config.json."""
    from ._errors import ConfigError
    from .registry import Credentials
    from .registry import login as registry_login

    # docker accepts "https://host/" too; the config key is the bare host[:port].
    host = registry.split("://", 1)[-1].rstrip("/")
    password = sys.stdin.read().rstrip("\r\n") if password_stdin else click.prompt("Password", hide_input=True)
    try:
        if not password:
            raise ConfigError("empty password")
        path = registry_login(host, Credentials(username, password), insecure=insecure)
    except WasmletError as exc:
        _fail(exc)
    click.echo(f"Login Succeeded (credentials saved in {path})")


@main.command()
@click.option("--admin", "admin_url", default="http://127.0.0.1:9180", show_default=True,
              help="The admin listener of a running `wasmlet serve`.")
@click.option("--interval", type=float, default=1.0, show_default=True, help="Seconds between refreshes.")
@click.option("--once", is_flag=True, help="Print one table (after one interval) and exit.")
def top(admin_url: str, interval: float, once: bool) -> None:
    """A live view of apps: req/s, p50/p99, errors, memory, cold starts."""
    from ._top_view import run_top

    try:
        run_top(admin_url, interval, once)
    except WasmletError as exc:
        _fail(exc)


def _print_lines(lines: list[str]) -> None:
    for line in lines:
        click.echo(line)


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", required=True, help="File name stem: NAME.key (secret) and NAME.pub.")
def keygen(directory: Path, name: str) -> None:
    """Create an Ed25519 key pair (a trust root's or a publisher's)."""
    from .signing import keygen_command

    try:
        _print_lines(keygen_command(directory, name))
    except WasmletError as exc:
        _fail(exc)


@main.command()
@click.option("--root-key", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--publisher", "publisher_pub", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The publisher's public key (.pub).")
@click.option("--scope", multiple=True, required=True,
              help="Module names (app/component) or OCI repositories (host/repo, globs) it may sign; repeatable.")
@click.option("--not-after", default="365d", show_default=True, help="Expiry: YYYY-MM-DD or a duration (90d).")
@click.option("--subject", default="", help="The publisher's name, for people.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
def certify(root_key: Path, publisher_pub: Path, scope: tuple[str, ...], not_after: str, subject: str,
            output: Path) -> None:
    """Certify a publisher key with a trust root's key."""
    from .signing import certify_command

    try:
        _print_lines(certify_command(root_key, publisher_pub, list(scope), not_after, output, subject))
    except (WasmletError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@main.command()
@click.argument("module", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--key", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Publisher secret key.")
@click.option("--cert", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The publisher's certificate, embedded in the module.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the signed module (default: in place).")
def sign(module: Path, key: Path, cert: Path | None, output: Path | None) -> None:
    """Sign a module (a `signature` custom section, as wasmsign2 writes it)."""
    from .signing import sign_command

    try:
        _print_lines(sign_command(module, key, cert, output))
    except WasmletError as exc:
        _fail(exc)


@main.command()
@click.argument("module", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--trust", "trust_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--subject", required=True, help="What the module is deployed as: app/component or host/repo.")
def verify(module: Path, trust_dir: Path, subject: str) -> None:
    """Check a module's signature chain against a trust folder."""
    from .signing import verify_command

    try:
        _print_lines(verify_command(module, trust_dir, subject))
    except WasmletError as exc:
        _fail(exc)


# The control plane's verbs: thin clients of a running host's admin API.

def _admin_options(function: Callable[..., None]) -> Callable[..., None]:
    function = click.option("--admin", "admin_url", default="http://127.0.0.1:9180", show_default=True,
                            envvar="WASMLET_ADMIN", help="The admin listener of the host.")(function)
    function = click.option("--token", default=None, envvar="WASMLET_ADMIN_TOKEN",
                            help="Bearer token (default: read from the state folder).")(function)
    function = click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                            envvar="WASMLET_STATE_DIR", help="Where the host keeps its admin-token.")(function)
    return function


def _client(admin_url: str, token: str | None, state_dir: Path | None) -> AdminClient:
    from .control import AdminClient, default_state_dir, default_token

    return AdminClient(admin_url, token or default_token(state_dir or default_state_dir()))


def _show_app(app: dict[str, object]) -> None:
    canary = app.get("canary")
    line = f"{app['name']:28s} v{app['version']:<4} {str(app['digest'])[:19]}  {app['route']}  {app['state']}"
    if isinstance(canary, dict):
        line += f"  canary v{canary['version']} weight={canary['weight']}% header={canary['header'] or '-'}"
    click.echo(line)


@main.command()
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--canary", "canary_weight", type=click.IntRange(0, 100), default=None,
              help="Deploy as a canary taking this percent of requests.")
@click.option("--canary-header", default=None, help="Send requests with this 'Name: value' header to the canary.")
@_admin_options
def deploy(manifest: Path, canary_weight: int | None, canary_header: str | None, admin_url: str,
           token: str | None, state_dir: Path | None) -> None:
    """Deploy a manifest to a running host; returns once it serves the new versions."""
    try:
        with _client(admin_url, token, state_dir) as client:
            result = client.deploy(manifest.read_text(encoding="utf-8"), str(manifest.resolve()),
                                   canary_weight, canary_header)
    except WasmletError as exc:
        _fail(exc)
    for item in result["results"]:
        click.echo(f"{item['app']}: version {item['version']}{'' if item['changed'] else ' (unchanged)'}")


@main.command()
@_admin_options
def apps(admin_url: str, token: str | None, state_dir: Path | None) -> None:
    """List deployed apps: name, version, digest, route, state."""
    try:
        with _client(admin_url, token, state_dir) as client:
            listing = client.apps()
    except WasmletError as exc:
        _fail(exc)
    for app in listing:
        _show_app(app)


def _app_verb(verb: str, help_text: str) -> None:
    @main.command(name=verb, help=help_text)
    @click.argument("app")
    @_admin_options
    def command(app: str, admin_url: str, token: str | None, state_dir: Path | None) -> None:
        try:
            with _client(admin_url, token, state_dir) as client:
                result = getattr(client, verb)(app)
        except WasmletError as exc:
            _fail(exc)
        if verb == "delete":
            click.echo(f"{app}: deleted")
        else:
            _show_app(result)


_app_verb("rollback", "Serve the app's previous version again (instant: it is kept warm).")
_app_verb("promote", "Make the app's canary its stable version.")
_app_verb("abort", "Drop the app's canary.")
_app_verb("delete", "Stop serving an app.")


@main.command()
@click.argument("app")
@click.option("--tail", type=int, default=100, show_default=True)
@_admin_options
def logs(app: str, tail: int, admin_url: str, token: str | None, state_dir: Path | None) -> None:
    """Recent log lines of an app (failures and guest stderr), from every worker."""
    try:
        with _client(admin_url, token, state_dir) as client:
            entries = client.logs(app, tail)
    except WasmletError as exc:
        _fail(exc)
    for entry in entries:
        click.echo(f"{entry.get('time')} {entry.get('level', ''):7s} {entry.get('message')}")
