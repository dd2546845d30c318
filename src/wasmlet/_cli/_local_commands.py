"""The commands that need no running host: ``validate``, ``compile``, ``run``, ``new``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from .._errors import WasmletError
from ._options import cache_option, fail

__all__ = ["compile", "new", "run", "validate"]


@click.command()
@click.argument("manifests", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(manifests: tuple[str, ...]) -> None:
    """Check manifests, and what they name, without deploying anything.

    Offline: a local module must exist and be a WebAssembly binary (a module
    or a component) with the sha256 its moduleDigest pins, and files sources
    must be directories; oci:// and https:// modules are not fetched (they are
    reported as not checked offline). Exits 1 if anything would fail a deploy.
    """
    from .._errors import ManifestError
    from ..control import check_offline
    from ..plan import ComponentSpec, assign_routes, load_manifest

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
        fail(exc)
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


@click.command()
@click.argument("modules", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@cache_option
def compile(modules: tuple[Path, ...], cache_dir: Path | None) -> None:  # noqa: A001 - the verb users type
    """Precompile modules into the cache (AOT), ahead of any deploy."""
    from ..engine import ModuleCache, build_engine
    from ..plan import EngineSettings

    settings = EngineSettings()
    engine = build_engine(settings.__class__(**{**settings.__dict__, "pool_instances": 4}))
    cache = ModuleCache(engine, settings, cache_dir)
    try:
        for module in modules:
            digest, path = cache.compile(module.read_bytes(), str(module))
            click.echo(f"sha256:{digest}  {path}")
    except WasmletError as exc:
        fail(exc)


@click.command()
@click.argument("module", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-X", "--method", default=None, help="HTTP method (default: GET, or POST with -d, as curl does).")
@click.option("--path", "req_path", default="/", show_default=True, help="Request path, with ?query.")
@click.option("-H", "--header", "headers", multiple=True, help="'Name: value', repeatable.")
@click.option("-d", "--data", default=None, help="Request body (makes it a POST unless -X says); @FILE reads a file.")
@click.option("-e", "--env", "env", multiple=True, help="NAME=VALUE for the guest, repeatable.")
@click.option("--memory-limit", default="128Mi", show_default=True)
@click.option("--timeout", default="10s", show_default=True)
@cache_option
def run(module: Path, method: str | None, req_path: str, headers: tuple[str, ...], data: str | None,
        env: tuple[str, ...], memory_limit: str, timeout: str, cache_dir: Path | None) -> None:
    """Send one request through MODULE and print the HTTP response.

    The response goes to stdout; what the guest wrote to stderr goes to stderr,
    whether it answered or failed.
    """
    from .._run import run_once

    if logging.getLogger().level > logging.DEBUG:  # "deployed run/module" says nothing to a user of run
        logging.getLogger("wasmlet.deploy").setLevel(logging.WARNING)
    try:
        result = run_once(
            module, method=method, target=req_path, headers=headers, data=data, env=env,
            memory_limit=memory_limit, timeout=timeout, cache_dir=cache_dir,
        )
    except WasmletError as exc:
        fail(exc)
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


@click.command()
@click.argument("name", type=click.Path(path_type=Path))
@click.option("--lang", default="c", show_default=True, help="The guest's language (c).")
def new(name: Path, lang: str) -> None:
    """Create an app folder NAME: the guest's source, a build script, the module prebuilt, a manifest.

    `wasmlet serve NAME/app.yaml` serves it at once; ./NAME/build.sh rebuilds the module.
    """
    from .._new import create_app

    try:
        written = create_app(name, lang)
    except WasmletError as exc:
        fail(exc)
    click.echo(f"created {name}/ ({lang} guest, WAGI):")
    for path in written:
        click.echo(f"  {path}")
    manifest = name / "app.yaml"
    click.echo(f"next: wasmlet serve {manifest}   then: curl http://127.0.0.1:3000/")
