"""The control plane's verbs: thin clients of a running host's admin API.

``deploy``, ``apps``, ``rollback``, ``promote``, ``abort``, ``delete``, ``logs``,
``history``, and ``top`` (which reads the host's /metrics).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .._errors import ConfigError, WasmletError
from ._options import emit_json, fail, output_options, verbose_option

if TYPE_CHECKING:
    from ..control import AdminClient

__all__ = ["abort", "apps", "delete", "deploy", "history", "logs", "promote", "rollback", "top"]


def _admin_options(function: Callable[..., None]) -> Callable[..., None]:
    function = click.option("--admin", "admin_url", default=None, envvar="WASMLET_ADMIN",
                            help="The admin listener of the host (default: the running host, found through "
                                 "the record `wasmlet serve` keeps in $XDG_RUNTIME_DIR/wasmlet).")(function)
    function = click.option("--token", default=None, envvar="WASMLET_ADMIN_TOKEN",
                            help="Bearer token (default: read from the host's state folder).")(function)
    function = click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                            envvar="WASMLET_STATE_DIR",
                            help="The state folder of the host to talk to (its admin-token is read there).")(function)
    return verbose_option(function)


def _client(admin_url: str | None, token: str | None, state_dir: Path | None) -> AdminClient:
    from ..control import connect

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


@click.command()
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--canary", "canary_weight", type=click.IntRange(0, 100), default=None,
              help="Deploy as a canary taking this percent of requests.")
@click.option("--canary-header", default=None, help="Send requests with this 'Name: value' header to the canary.")
@output_options
@_admin_options
def deploy(manifest: Path, canary_weight: int | None, canary_header: str | None, output: str,
           admin_url: str | None, token: str | None, state_dir: Path | None) -> None:
    """Deploy a manifest to a running host; returns once it serves the new versions."""
    from ..plan import decode_manifest

    try:
        try:
            data = manifest.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{manifest}: cannot read the manifest: {exc.strerror or exc}") from exc
        text = decode_manifest(data, str(manifest))  # refused here as the host would refuse it
        with _client(admin_url, token, state_dir) as client:
            result = client.deploy(text, str(manifest.resolve()), canary_weight, canary_header)
    except WasmletError as exc:
        fail(exc)
    if output == "json":
        emit_json(result)
        return
    for item in result["results"]:
        click.echo(f"{item['app']}: version {item['version']}{'' if item['changed'] else ' (unchanged)'}")


@click.command()
@output_options
@_admin_options
def apps(output: str, admin_url: str | None, token: str | None, state_dir: Path | None) -> None:
    """List deployed apps: name, version, digest, route, state."""
    try:
        with _client(admin_url, token, state_dir) as client:
            listing = client.apps()
    except WasmletError as exc:
        fail(exc)
    if output == "json":
        emit_json(listing)
        return
    if not listing:
        click.echo("no apps deployed; deploy one with `wasmlet deploy MANIFEST`", err=True)
    for app in listing:
        _show_app(app)


def _app_verb(verb: str, help_text: str) -> click.Command:
    """The command ``wasmlet VERB APP``: one admin call on one app, the same for the four verbs below."""
    @click.command(name=verb, help=f"{help_text}\n\nAPP is APP/COMPONENT, or APP alone when it has one component.")
    @click.argument("app")
    @output_options
    @_admin_options
    def command(app: str, output: str, admin_url: str | None, token: str | None,
                state_dir: Path | None) -> None:
        try:
            with _client(admin_url, token, state_dir) as client:
                app = _resolve_app(client, app, verb)
                result = getattr(client, verb)(app)
        except WasmletError as exc:
            fail(exc)
        if verb == "delete":
            result = {"name": app, "deleted": True}
            if output != "json":
                click.echo(f"{app}: deleted")
                return
        if output == "json":
            emit_json(result)
        else:
            _show_app(result)

    return command


rollback = _app_verb("rollback", "Serve the app's previous version again (instant: it is kept warm).")
promote = _app_verb("promote", "Make the app's canary its stable version.")
abort = _app_verb("abort", "Drop the app's canary.")
delete = _app_verb("delete", "Stop serving an app.")


@click.command()
@click.argument("app")
@click.option("--tail", type=int, default=100, show_default=True)
@output_options
@_admin_options
def logs(app: str, tail: int, output: str, admin_url: str | None, token: str | None,
         state_dir: Path | None) -> None:
    """Recent log lines of an app (failures and guest stderr), from every worker.

    APP is APP/COMPONENT, or APP alone when it has one component.
    """
    try:
        with _client(admin_url, token, state_dir) as client:
            app = _resolve_app(client, app, "logs")
            entries = client.logs(app, tail)
    except WasmletError as exc:
        fail(exc)
    if output == "json":
        emit_json(entries)
        return
    for entry in entries:
        click.echo(f"{entry.get('time')} {entry.get('level') or '':7s} {entry.get('message')}")


@click.command()
@click.argument("app")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="At most this many.")
@output_options
@_admin_options
def history(app: str, limit: int, output: str, admin_url: str | None, token: str | None,
            state_dir: Path | None) -> None:
    """The versions of an app, newest first, and what each is now (stable, previous, canary, retired).

    APP is APP/COMPONENT, or APP alone when it has one component. A deleted app keeps its history.
    """
    try:
        with _client(admin_url, token, state_dir) as client:
            app = _resolve_app(client, app, "history")  # a deleted app: name it as APP/COMPONENT
            versions = client.history(app, limit)
    except WasmletError as exc:
        fail(exc)
    if output == "json":
        emit_json(versions)
        return
    click.echo(f"{'VERSION':>7s}  {'ROLE':8s}  {'CREATED (UTC)':19s}  {'DIGEST':19s}  MODULE")
    for v in versions:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(v.get("created") or 0)))
        click.echo(f"{v.get('version'):>7}  {v.get('role', ''):8s}  {created}  {str(v.get('digest'))[:19]}  "
                   f"{v.get('module')}")


@click.command()
@click.option("--admin", "admin_url", default=None, envvar="WASMLET_ADMIN",
              help="The admin listener of a running `wasmlet serve` (default: the running host).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar="WASMLET_STATE_DIR", help="Find the running host that uses this state folder.")
@click.option("--interval", type=float, default=1.0, show_default=True, help="Seconds between refreshes.")
@click.option("--once", is_flag=True, help="Print one table (after one interval) and exit.")
@verbose_option
def top(admin_url: str | None, state_dir: Path | None, interval: float, once: bool) -> None:
    """A live view of apps: req/s, p50/p99, errors, memory, cold starts."""
    from .._top_view import run_top
    from ..control import find_admin

    try:
        url, _ = find_admin(admin_url, state_dir)  # /metrics needs no token: only the URL
        run_top(url, interval, once)
    except WasmletError as exc:
        fail(exc)
