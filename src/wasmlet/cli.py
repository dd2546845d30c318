"""The ``wasmlet`` command: arguments -> settings -> load -> run."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import __version__
from ._errors import ConfigError, WasmletError
from ._k8s import k8s
from ._logging import configure_logging

if TYPE_CHECKING:
    from .control import AdminClient

_cache_option = click.option(
    "--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    envvar="WASMLET_CACHE_DIR", help="Precompiled-module cache (default: $XDG_CACHE_HOME/wasmlet).",
)


class _ServerDefault(click.Option):
    """An option of ``serve`` whose default is a constant of ``wasmlet.server``, defined there once.

    Left unset, the option is None and ``ServeSettings`` applies its default. The help shows the
    constant; nothing else imports the server here (it must come after ``prepare_metrics_dir``).
    """

    def __init__(self, *args: Any, constant: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.constant = constant

    def get_help_extra(self, ctx: click.Context) -> Any:
        from . import server

        extra = super().get_help_extra(ctx)
        extra["default"] = str(getattr(server, self.constant))
        return extra


def _fail(exc: WasmletError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


# The HTTP client's own loggers: one INFO line per request is noise for a user of `wasmlet apps`.
_HTTP_LOGGERS = ("httpx", "httpcore")


def _http_logging(verbose: int) -> None:
    """0: quiet; -v: show each HTTP request the command makes; -vv: and the HTTP client's debug lines."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    for name in _HTTP_LOGGERS:
        logging.getLogger(name).setLevel(level)


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: int) -> None:
    if value:  # `wasmlet apps -v`, as well as `wasmlet -v apps`
        _http_logging(value)


_verbose_option = click.option(
    "-v", "--verbose", count=True, expose_value=False, callback=_set_verbosity,
    help="Show the HTTP requests made (-vv: with the HTTP client's debug lines).",
)


def _output_options(function: Callable[..., None]) -> Callable[..., None]:
    function = click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text",
                            show_default=True, help="Output format; json is for scripts (jq).")(function)
    return click.option("--json", "as_json", is_flag=True, help="Same as -o json.")(function)


def _emit_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def _lattice_options(host: bool) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The lattice flags (docs/lattice.md): how to reach NATS, as NATS users give it, and (``host``) who this host is.

    Their values reach the command as keyword arguments named ``lattice*`` and ``host_*``.
    """
    def apply(function: Callable[..., None]) -> Callable[..., None]:
        options = [
            click.option("--lattice", "lattice", envvar="WASMLET_LATTICE", default=None,
                         help="Join (serve) or inspect a lattice: NATS server URLs, comma-separated "
                         "(nats://[USER:PASSWORD@]HOST:PORT, tls://...)."),
            click.option("--lattice-creds", "lattice_creds", type=click.Path(exists=True, dir_okay=False),
                         envvar="WASMLET_LATTICE_CREDS", help="NATS credentials file (JWT and NKey seed)."),
            click.option("--lattice-user", "lattice_user", envvar="WASMLET_LATTICE_USER", help="NATS user."),
            click.option("--lattice-password", "lattice_password", envvar="WASMLET_LATTICE_PASSWORD",
                         help="NATS password (better in $WASMLET_LATTICE_PASSWORD than on the command line)."),
            click.option("--lattice-token", "lattice_token", envvar="WASMLET_LATTICE_TOKEN",
                         help="NATS authentication token (better in $WASMLET_LATTICE_TOKEN)."),
            click.option("--lattice-tls-ca", "lattice_tls_ca", type=click.Path(exists=True, dir_okay=False),
                         help="PEM CA bundle to verify the NATS servers with."),
            click.option("--lattice-tls-cert", "lattice_tls_cert", type=click.Path(exists=True, dir_okay=False),
                         help="PEM client certificate (TLS client authentication)."),
            click.option("--lattice-tls-key", "lattice_tls_key", type=click.Path(exists=True, dir_okay=False),
                         help="PEM key of --lattice-tls-cert."),
            click.option("--lattice-prefix", "lattice_prefix", default="wasmlet", show_default=True,
                         help="First token of the lattice's NATS subjects and bucket names (one lattice per prefix)."),
        ]
        if host:
            options += [
                click.option("--lattice-replicas", "lattice_replicas", type=click.IntRange(1, 5), default=None,
                             help="JetStream replicas of the lattice's buckets when they are created "
                             "(default: 3 on a cluster of 3 or more servers, else 1)."),
                click.option("--host-name", "host_name", default=None,
                             help="This host's name in the lattice (default: --node's Node, else the machine's)."),
                click.option("--node", "host_node_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                             default=None, help="A Kubernetes Node YAML (a stream may hold other kinds): this host's "
                             "name, labels, taints and capacity; its PriorityClasses join the lattice's."),
                click.option("--label", "host_labels", multiple=True, help="A host label KEY=VALUE; repeatable."),
                click.option("--taint", "host_taints", multiple=True,
                             help="A host taint KEY[=VALUE]:EFFECT, as wasm=true:NoSchedule; repeatable."),
                click.option("--zone", "host_zone", default=None, help="Sets the label topology.kubernetes.io/zone."),
                click.option("--capacity-memory", "host_memory", default=None,
                             help="Memory the apps placed here may use (the sum of their memoryLimit), as 4Gi."),
                click.option("--capacity-apps", "host_apps", type=click.IntRange(0), default=None,
                             help="How many app replicas this host takes."),
            ]
        for option in reversed(options):
            function = option(function)
        return function

    return apply


def _lattice_link(flags: dict[str, Any], host: str = "") -> Any:
    """The ``LatticeLink`` the ``--lattice*`` flags describe (``ConfigError`` for a bad URL or prefix)."""
    from .plan import LatticeLink
    from .server import valid_token

    urls = tuple(url.strip() for url in (flags.get("lattice") or "").split(",") if url.strip())
    for url in urls:
        if not url.startswith(("nats://", "tls://", "ws://", "wss://")):
            raise ConfigError(f"--lattice: {url!r} is not a NATS server URL (nats://HOST:PORT or tls://HOST:PORT)")
    if flags.get("lattice_creds"):
        _check_creds(flags["lattice_creds"])
    prefix = flags.get("lattice_prefix") or "wasmlet"
    if not valid_token(prefix):
        raise ConfigError(f"--lattice-prefix: {prefix!r} is not a lower-case RFC 1123 label")
    link = LatticeLink(
        servers=urls, host=host, prefix=prefix, creds=flags.get("lattice_creds") or "",
        user=flags.get("lattice_user") or "", password=flags.get("lattice_password") or "",
        token=flags.get("lattice_token") or "", tls_ca=flags.get("lattice_tls_ca") or "",
        tls_cert=flags.get("lattice_tls_cert") or "", tls_key=flags.get("lattice_tls_key") or "",
    )
    if link.tls_key and not link.tls_cert:
        raise ConfigError("--lattice-tls-key: give --lattice-tls-cert too (the key is the certificate's)")
    _check_tls(link)
    return link


def _check_tls(link: Any) -> None:
    """``ConfigError`` naming the flag and file when the TLS files do not load (before any connection is tried)."""
    import ssl

    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    try:
        if link.tls_ca:
            context.load_verify_locations(cafile=link.tls_ca)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"--lattice-tls-ca {link.tls_ca}: not a PEM CA bundle ({exc.strerror or exc})") from exc
    try:
        if link.tls_cert:
            context.load_cert_chain(link.tls_cert, link.tls_key or None)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"--lattice-tls-cert {link.tls_cert}"
                          f"{f' / --lattice-tls-key {link.tls_key}' if link.tls_key else ''}: not a PEM certificate "
                          f"and its key ({exc.strerror or exc})") from exc


def _check_creds(path: str) -> None:
    """``ConfigError`` unless ``path`` looks like a NATS ``.creds`` file: a user JWT block and a user seed block.

    Checked here because nats-py reads lines until it finds the JWT block: a file without one hangs the connect.
    """
    try:
        with open(path, "rb") as file:
            text = file.read(65536)
    except OSError as exc:
        raise ConfigError(f"--lattice-creds {path}: cannot read it: {exc.strerror or exc}") from exc
    for block in (b"-----BEGIN NATS USER JWT-----", b"-----BEGIN USER NKEY SEED-----"):
        if block not in text:
            raise ConfigError(f"--lattice-creds {path}: not a NATS credentials file (expected a "
                              f"'{block.decode()}' block, as `nsc generate creds` writes)")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wasmlet")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
@click.option("-v", "--verbose", count=True, help="Show the HTTP requests made (-vv: with debug lines).")
@click.pass_context
def main(ctx: click.Context, log_level: str, verbose: int) -> None:
    """wasmlet: serve WebAssembly modules as HTTP edge functions."""
    ctx.obj = {"log_level": log_level}
    configure_logging(log_level)
    _http_logging(verbose)


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
@_lattice_options(host=True)
@_cache_option
@click.pass_context
def serve(ctx: click.Context, /, manifests: tuple[Path, ...], listen: str, workers: int | None, threads: int,
          server: str, drain_timeout: float, admin_listen: str, otlp: bool, metrics: bool,
          trust_dir: Path | None, allow_files: tuple[Path, ...], watchdog_memory_growth: str | None,
          watchdog_window: float | None, watchdog_interval: float | None, watchdog_warmup: float | None,
          state_dir: Path | None, watch: bool,
          forwarded_allow_ips: str, header_timeout: float, max_client_connections: int, body_memory: str,
          cache_dir: Path | None, **lattice_flags: Any) -> None:
    """Serve the apps of OAM Application manifests, and what was deployed before.

    The manifests given are deployed over the durable state (a new version
    where a component changed); with none, the host serves what it served
    when it last stopped. `wasmlet deploy` changes a running host.
    """
    import gc

    from ._multiproc import prepare_metrics_dir, sweep_stale_dirs

    # Start-up makes ~60,000 long-lived objects (imports, the deploy) and no garbage worth a pass:
    # the collector stays off until the host serves (_serve), ~85 ms sooner to the first 200, and
    # is on again whatever happens (a command run in-process, say by a test, that fails first).
    gc.disable()
    ctx.call_on_close(gc.enable)
    sweep_stale_dirs()  # what a host killed with SIGKILL left in the temp and shared-memory folders
    prepare_metrics_dir()  # before prometheus_client is imported by what follows
    if server != "granian":
        from ._prefork import start_early

        start_early()  # the worker zygote imports while this process imports and deploys (issue 13)
    from ._serve import check_listeners
    from ._serve import serve as run_server
    from .control import ControlPlane, StateStore, default_state_dir
    from .engine import default_cache_dir
    from .plan import EngineSettings, parse_quantity
    from .server import ServeSettings, parse_forwarded_allow_ips, parse_listen

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
        kwargs = {"workers": workers} if workers is not None else {}
        settings = ServeSettings(host=host, port=port, threads=threads, server=server,
                                 drain_timeout=drain_timeout, admin=admin, otlp=otlp, metrics=metrics,
                                 **watchdog,
                                 forwarded_allow_ips=parse_forwarded_allow_ips(forwarded_allow_ips),
                                 header_timeout=header_timeout, client_connections=max_client_connections,
                                 body_memory=bodies, **kwargs)
        check_listeners(settings)  # a busy port is said before anything is deployed to the state
        trust = None
        if trust_dir is not None:
            from .signing import TrustStore

            trust = TrustStore.from_dir(trust_dir)
        state_dir = state_dir or default_state_dir()
        lattice = _join_lattice(lattice_flags, state_dir, cache_dir or default_cache_dir(), settings)
        control = ControlPlane(lattice.state if lattice and lattice.state else StateStore(state_dir),
                               EngineSettings(), cache_dir or default_cache_dir(), trust, allow_files=allow_files)
        control.restore()  # every recorded version checked (spec, bytes, --trust) before it is served; problems logged
        if manifests:
            control.deploy_files(list(manifests))
        if not control.has_apps():
            click.echo("wasmlet: no apps yet; deploy some with `wasmlet deploy MANIFEST`", err=True)
        if lattice is not None:
            lattice.attach(control)
    except WasmletError as exc:
        _fail(exc)
    try:
        code = run_server(control, settings, ctx.obj["log_level"], state_dir, list(manifests) if watch else [],
                          lattice=lattice)
    except WasmletError as exc:
        _fail(exc)
    sys.exit(code)


@main.command()
@click.argument("manifests", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(manifests: tuple[str, ...]) -> None:
    """Check manifests, and what they name, without deploying anything.

    Offline: a local module must exist and be a WebAssembly binary (a module
    or a component) with the sha256 its moduleDigest pins, and files sources
    must be directories; oci:// and https:// modules are not fetched (they are
    reported as not checked offline). Exits 1 if anything would fail a deploy.
    """
    from ._errors import ManifestError
    from .control import check_offline
    from .plan import ComponentSpec, assign_routes, load_manifest

    failed = False
    specs: list[ComponentSpec] = []
    for path in manifests:  # every manifest's problems, not only the first one's
        try:
            specs += load_manifest(path)
        except WasmletError as exc:
            click.echo(f"error: {exc}", err=True)
            failed = True
    try:
        specs = assign_routes(specs)
    except WasmletError as exc:
        _fail(exc)
    problems: dict[str, list[tuple[str, str]]] = {}
    for check in check_offline(specs):
        spec = check.spec
        if check.ok:
            click.echo(f"ok  {spec.qualified_name}  route={spec.route}  module={spec.module_url}  ({check.module})")
        else:
            problems.setdefault(spec.source, []).extend(
                (field, f"component {spec.qualified_name}: {message}") for field, message in check.problems)
    for source, found in problems.items():
        click.echo(f"error: {ManifestError(source, found)}", err=True)
    if failed or problems:
        sys.exit(1)


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
@click.option("-X", "--method", default=None, help="HTTP method (default: GET, or POST with -d, as curl does).")
@click.option("--path", "req_path", default="/", show_default=True, help="Request path, with ?query.")
@click.option("-H", "--header", "headers", multiple=True, help="'Name: value', repeatable.")
@click.option("-d", "--data", default=None, help="Request body (makes it a POST unless -X says); @FILE reads a file.")
@click.option("-e", "--env", "env", multiple=True, help="NAME=VALUE for the guest, repeatable.")
@click.option("--memory-limit", default="128Mi", show_default=True)
@click.option("--timeout", default="10s", show_default=True)
@_cache_option
def run(module: Path, method: str | None, req_path: str, headers: tuple[str, ...], data: str | None,
        env: tuple[str, ...], memory_limit: str, timeout: str, cache_dir: Path | None) -> None:
    """Send one request through MODULE and print the HTTP response.

    The response goes to stdout; what the guest wrote to stderr goes to stderr,
    whether it answered or failed.
    """
    from ._run import run_once

    if logging.getLogger().level > logging.DEBUG:  # "deployed run/module" says nothing to a user of run
        logging.getLogger("wasmlet.deploy").setLevel(logging.WARNING)
    try:
        result = run_once(
            module, method=method, target=req_path, headers=headers, data=data, env=env,
            memory_limit=memory_limit, timeout=timeout, cache_dir=cache_dir,
        )
    except WasmletError as exc:
        _fail(exc)
    if result.stderr:
        sys.stderr.buffer.write(result.stderr if result.stderr.endswith(b"\n") else result.stderr + b"\n")
        sys.stderr.flush()
    click.echo(f"HTTP/1.1 {result.status}")
    for name, value in result.headers:
        click.echo(f"{name}: {value}")
    click.echo("")
    sys.stdout.flush()
    sys.stdout.buffer.write(result.body)
    sys.stdout.flush()
    sys.exit(0 if result.status < 500 else 1)


@main.command()
@click.argument("name", type=click.Path(path_type=Path))
@click.option("--lang", default="c", show_default=True, help="The guest's language (c).")
def new(name: Path, lang: str) -> None:
    """Create an app folder NAME: the guest's source, a build script, the module prebuilt, a manifest.

    `wasmlet serve NAME/app.yaml` serves it at once; ./NAME/build.sh rebuilds the module.
    """
    from ._new import create_app

    try:
        written = create_app(name, lang)
    except WasmletError as exc:
        _fail(exc)
    click.echo(f"created {name}/ ({lang} guest, WAGI):")
    for path in written:
        click.echo(f"  {path}")
    manifest = name / "app.yaml"
    click.echo(f"next: wasmlet serve {manifest}   then: curl http://127.0.0.1:3000/")


_insecure_option = click.option(
    "--insecure", is_flag=True,
    help="Plain HTTP to this registry (loopback registries always use it; see also $WASMLET_INSECURE_REGISTRIES).",
)


@main.command()
@click.argument("module", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("reference")
@_insecure_option
@_cache_option
@_verbose_option
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
@_verbose_option
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
@_verbose_option
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
@click.option("--admin", "admin_url", default=None, envvar="WASMLET_ADMIN",
              help="The admin listener of a running `wasmlet serve` (default: the running host).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar="WASMLET_STATE_DIR", help="Find the running host that uses this state folder.")
@click.option("--interval", type=float, default=1.0, show_default=True, help="Seconds between refreshes.")
@click.option("--once", is_flag=True, help="Print one table (after one interval) and exit.")
@_verbose_option
def top(admin_url: str | None, state_dir: Path | None, interval: float, once: bool) -> None:
    """A live view of apps: req/s, p50/p99, errors, memory, cold starts."""
    from ._top_view import run_top
    from .control import find_admin

    try:
        url, _ = find_admin(admin_url, state_dir)  # /metrics needs no token: only the URL
        run_top(url, interval, once)
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
@_output_options
def verify(module: Path, trust_dir: Path, subject: str, output: str, as_json: bool) -> None:
    """Check a module's signature chain against a trust folder.

    With -o json, a refused signature is an object too ("verified": false and
    the stable "reason"), on stdout, with exit status 1.
    """
    from .signing import verify_command

    if as_json or output == "json":
        _verify_json(module, trust_dir, subject)
        return
    try:
        _print_lines(verify_command(module, trust_dir, subject))
    except WasmletError as exc:
        _fail(exc)


def _verify_json(module: Path, trust_dir: Path, subject: str) -> None:
    from ._errors import SignatureError
    from .signing import TrustStore, verify_module

    base: dict[str, object] = {"module": str(module), "subject": subject}
    try:
        store = TrustStore.from_dir(trust_dir)
        try:
            data = module.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{module}: cannot read the module: {exc.strerror or exc}") from exc
        verified = verify_module(data, store, subject)
    except SignatureError as exc:
        _emit_json({**base, "verified": False, "reason": exc.reason, "error": str(exc)})
        sys.exit(1)
    except WasmletError as exc:
        _fail(exc)
    _emit_json({
        **base, "verified": True, "key_id": verified.key_id, "root_id": verified.root_id,
        "publisher": verified.publisher, "scope": list(verified.scope),
        "not_after": f"{verified.not_after:%Y-%m-%dT%H:%M:%SZ}", "module_sha256": verified.module_hash,
    })


# The control plane's verbs: thin clients of a running host's admin API.

def _admin_options(function: Callable[..., None]) -> Callable[..., None]:
    function = click.option("--admin", "admin_url", default=None, envvar="WASMLET_ADMIN",
                            help="The admin listener of the host (default: the running host, found through "
                                 "the record `wasmlet serve` keeps in $XDG_RUNTIME_DIR/wasmlet).")(function)
    function = click.option("--token", default=None, envvar="WASMLET_ADMIN_TOKEN",
                            help="Bearer token (default: read from the host's state folder).")(function)
    function = click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                            envvar="WASMLET_STATE_DIR",
                            help="The state folder of the host to talk to (its admin-token is read there).")(function)
    return _verbose_option(function)


def _client(admin_url: str | None, token: str | None, state_dir: Path | None) -> AdminClient:
    from .control import connect

    return connect(admin_url, token, state_dir)


def _resolve_app(client: AdminClient, name: str, verb: str) -> str:
    """``APP/COMPONENT`` as given; ``APP`` alone when that app has one component.

    Otherwise a ``ConfigError`` that lists what is deployed under that name, so the
    user can copy the right one.
    """
    if "/" in name:
        return name
    deployed = sorted(str(app["name"]) for app in client.apps())
    components = [n for n in deployed if n.split("/", 1)[0] == name]
    if len(components) == 1:
        return components[0]
    if components:
        raise ConfigError(f"app {name!r} has {len(components)} components: {', '.join(components)}; "
                          f"name one as APP/COMPONENT, e.g. `wasmlet {verb} {components[0]}`")
    known = ", ".join(deployed) if deployed else "nothing is deployed"
    raise ConfigError(f"no app named {name!r} is deployed (deployed: {known}); "
                      f"expected APP or APP/COMPONENT, e.g. `wasmlet {verb} {deployed[0] if deployed else 'APP'}`")


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
@_output_options
@_admin_options
def deploy(manifest: Path, canary_weight: int | None, canary_header: str | None, output: str, as_json: bool,
           admin_url: str | None, token: str | None, state_dir: Path | None) -> None:
    """Deploy a manifest to a running host; returns once it serves the new versions."""
    from .plan import decode_manifest

    try:
        try:
            data = manifest.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{manifest}: cannot read the manifest: {exc.strerror or exc}") from exc
        text = decode_manifest(data, str(manifest))  # refused here as the host would refuse it
        with _client(admin_url, token, state_dir) as client:
            result = client.deploy(text, str(manifest.resolve()), canary_weight, canary_header)
    except WasmletError as exc:
        _fail(exc)
    if as_json or output == "json":
        _emit_json(result)
        return
    for item in result["results"]:
        click.echo(f"{item['app']}: version {item['version']}{'' if item['changed'] else ' (unchanged)'}")


@main.command()
@_output_options
@_admin_options
def apps(output: str, as_json: bool, admin_url: str | None, token: str | None, state_dir: Path | None) -> None:
    """List deployed apps: name, version, digest, route, state."""
    try:
        with _client(admin_url, token, state_dir) as client:
            listing = client.apps()
    except WasmletError as exc:
        _fail(exc)
    if as_json or output == "json":
        _emit_json(listing)
        return
    if not listing:
        click.echo("no apps deployed; deploy one with `wasmlet deploy MANIFEST`", err=True)
    for app in listing:
        _show_app(app)


def _app_verb(verb: str, help_text: str) -> None:
    @main.command(name=verb, help=f"{help_text}\n\nAPP is APP/COMPONENT, or APP alone when it has one component.")
    @click.argument("app")
    @_output_options
    @_admin_options
    def command(app: str, output: str, as_json: bool, admin_url: str | None, token: str | None,
                state_dir: Path | None) -> None:
        try:
            with _client(admin_url, token, state_dir) as client:
                app = _resolve_app(client, app, verb)
                result = getattr(client, verb)(app)
        except WasmletError as exc:
            _fail(exc)
        if verb == "delete":
            result = {"name": app, "deleted": True}
            if not (as_json or output == "json"):
                click.echo(f"{app}: deleted")
                return
        if as_json or output == "json":
            _emit_json(result)
        else:
            _show_app(result)


_app_verb("rollback", "Serve the app's previous version again (instant: it is kept warm).")
_app_verb("promote", "Make the app's canary its stable version.")
_app_verb("abort", "Drop the app's canary.")
_app_verb("delete", "Stop serving an app.")


@main.command()
@click.argument("app")
@click.option("--tail", type=int, default=100, show_default=True)
@_output_options
@_admin_options
def logs(app: str, tail: int, output: str, as_json: bool, admin_url: str | None, token: str | None,
         state_dir: Path | None) -> None:
    """Recent log lines of an app (failures and guest stderr), from every worker.

    APP is APP/COMPONENT, or APP alone when it has one component.
    """
    try:
        with _client(admin_url, token, state_dir) as client:
            app = _resolve_app(client, app, "logs")
            entries = client.logs(app, tail)
    except WasmletError as exc:
        _fail(exc)
    if as_json or output == "json":
        _emit_json(entries)
        return
    for entry in entries:
        click.echo(f"{entry.get('time')} {entry.get('level') or '':7s} {entry.get('message')}")


@main.command()
@click.argument("app")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="At most this many.")
@_output_options
@_admin_options
def history(app: str, limit: int, output: str, as_json: bool, admin_url: str | None, token: str | None,
            state_dir: Path | None) -> None:
    """The versions of an app, newest first, and what each is now (stable, previous, canary, retired).

    APP is APP/COMPONENT, or APP alone when it has one component. A deleted app keeps its history.
    """
    try:
        with _client(admin_url, token, state_dir) as client:
            app = _resolve_app(client, app, "history")  # a deleted app: name it as APP/COMPONENT
            versions = client.history(app, limit)
    except WasmletError as exc:
        _fail(exc)
    if as_json or output == "json":
        _emit_json(versions)
        return
    click.echo(f"{'VERSION':>7s}  {'ROLE':8s}  {'CREATED (UTC)':19s}  {'DIGEST':19s}  MODULE")
    for v in versions:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(v.get("created") or 0)))
        click.echo(f"{v.get('version'):>7}  {v.get('role', ''):8s}  {created}  {str(v.get('digest'))[:19]}  "
                   f"{v.get('module')}")


# --- past one machine --------------------------------------------------------------------------------------


def _join_lattice(flags: dict[str, Any], state_dir: Path, cache_dir: Path, settings: Any) -> Any:
    """With ``--lattice``: this host's ``Lattice``, joined (connected, heartbeating, desired state read)."""
    if not flags.get("lattice"):
        given = [name for name in ("host_node_file", "host_name", "host_zone") if flags.get(name)]
        if given or flags.get("host_labels") or flags.get("host_taints"):
            raise ConfigError("--host-name, --node, --label, --taint and --zone describe a lattice host: "
                              "give --lattice too")
        return None
    import socket

    from .lattice import Lattice, host_node
    from .plan import load_priority_classes

    node_file = flags.get("host_node_file")
    node = host_node(flags.get("host_name"), flags.get("host_labels") or (), flags.get("host_taints") or (),
                     flags.get("host_zone"), flags.get("host_memory"), flags.get("host_apps"), node_file,
                     default_name=socket.gethostname().lower())
    classes = load_priority_classes(node_file) if node_file else []
    link = _lattice_link(flags, node.name)
    listen = f"{settings.host}:{settings.port}"
    admin = f"{settings.admin[0]}:{settings.admin[1]}" if settings.admin else ""
    lattice = Lattice(link, node, state_dir, cache_dir, flags.get("lattice_replicas"), classes, listen, admin)
    lattice.join()
    lattice.prefetch()
    click.echo(f"wasmlet: host {node.name} joined the lattice at {', '.join(link.servers)}", err=True)
    return lattice


@main.group()
def lattice() -> None:
    """A lattice of hosts on NATS JetStream (docs/lattice.md): hosts, placement, drains.

    Every command takes the --lattice* flags (or $WASMLET_LATTICE...) and talks to NATS directly.
    """


def _lattice_client(flags: dict[str, Any]) -> Any:
    from .lattice import LatticeClient

    if not flags.get("lattice"):
        raise ConfigError("--lattice (or $WASMLET_LATTICE): give the NATS server URLs of the lattice")
    return LatticeClient(_lattice_link(flags))


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@lattice.command(name="hosts")
@_output_options
@_lattice_options(host=False)
def lattice_hosts(output: str, as_json: bool, **flags: Any) -> None:
    """The live hosts: labels, taints, capacity, what each serves."""
    try:
        with _lattice_client(flags) as client:
            rows = client.hosts()
    except WasmletError as exc:
        _fail(exc)
    if as_json or output == "json":
        _emit_json(rows)
        return
    table = [["HOST", "ZONE", "LABELS", "TAINTS", "SERVING", "LISTEN", "STATE"]]
    for row in rows:
        labels = ",".join(f"{k}={v}" for k, v in sorted((row.get("labels") or {}).items())
                          if k != "topology.kubernetes.io/zone")
        state = "down, drained" if row.get("down") else "drained" if row.get("drained") else "ready"
        table.append([row["name"], row.get("zone") or "-", labels or "-", ",".join(row.get("taints") or []) or "-",
                      ",".join(row["serving"]) or "-", row.get("listen") or "-", state])
    _table(table)


@lattice.command(name="apps")
@_output_options
@_lattice_options(host=False)
def lattice_apps(output: str, as_json: bool, **flags: Any) -> None:
    """What runs where: each app's placed and serving hosts, and why a pending app is pending."""
    try:
        with _lattice_client(flags) as client:
            rows = client.apps()
    except WasmletError as exc:
        _fail(exc)
    if as_json or output == "json":
        _emit_json(rows)
        return
    table = [["APP", "VERSION", "REPLICAS", "PLACED", "SERVING", "PENDING"]]
    for row in rows:
        table.append([row["app"], str(row["version"]), str(row["replicas"]), ",".join(row["placed"]) or "-",
                      ",".join(row["serving"]) or "-", row["pending"] or "-"])
    _table(table)


@lattice.command(name="drain")
@click.argument("host")
@click.option("--timeout", type=float, default=60.0, show_default=True,
              help="Seconds to wait for its apps to run elsewhere (0: do not wait).")
@click.option("--undo", is_flag=True, help="Let placement use the host again (uncordon).")
@_output_options
@_lattice_options(host=False)
def lattice_drain(host: str, timeout: float, undo: bool, output: str, as_json: bool, **flags: Any) -> None:
    """Move every app off HOST, with no failed request: its new hosts serve before it stops.

    Recorded in the desired state: the host stays drained (restarts included) until --undo.
    """
    try:
        with _lattice_client(flags) as client:
            result = client.drain(host, drained=not undo, wait=timeout)
    except WasmletError as exc:
        _fail(exc)
    if as_json or output == "json":
        _emit_json(result)
        return
    if undo:
        click.echo(f"{host}: placement may use it again")
    else:
        moved = ", ".join(result["moved"]) or "nothing"
        click.echo(f"{host}: drained; moved {moved}" if timeout > 0 else f"{host}: drained (not waited for)")


@lattice.command(name="apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_lattice_options(host=False)
def lattice_apply(file: Path, **flags: Any) -> None:
    """Record the PriorityClass documents of a YAML stream (the seed's wasm-critical); other kinds are skipped."""
    try:
        with _lattice_client(flags) as client:
            names = client.apply(file)
    except WasmletError as exc:
        _fail(exc)
    click.echo(f"PriorityClass(es) recorded: {', '.join(names)}" if names else f"{file}: no PriorityClass")


main.add_command(k8s)  # `wasmlet k8s`: its own module (_k8s.py)
