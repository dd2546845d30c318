"""OCI registries: ``push``, ``pull``, ``login``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .._errors import WasmletError
from ._options import cache_option, fail, insecure_option, verbose_option

__all__ = ["login", "pull", "push"]


@click.command()
@click.argument("module", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("reference")
@insecure_option
@cache_option
@verbose_option
def push(module: Path, reference: str, insecure: bool, cache_dir: Path | None) -> None:
    """Push MODULE as a Wasm OCI artifact to oci://HOST[:PORT]/REPO[:TAG]."""
    from ..engine import BlobStore, default_cache_dir
    from ..registry import push_module

    try:
        pushed = push_module(module.read_bytes(), reference, blobs=BlobStore(cache_dir or default_cache_dir()),
                             insecure=insecure, title=module.name)
    except WasmletError as exc:
        fail(exc)
    click.echo(f"pushed  {pushed.reference}")
    click.echo(f"module  {pushed.module_digest}  ({pushed.size} bytes)")


@click.command()
@click.argument("reference")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the module to this file.")
@insecure_option
@cache_option
@verbose_option
def pull(reference: str, output: Path | None, insecure: bool, cache_dir: Path | None) -> None:
    """Pull oci://HOST[:PORT]/REPO[:TAG|@sha256:DIGEST] into the local store."""
    from ..engine import BlobStore, default_cache_dir
    from ..registry import pull_module

    try:
        pulled = pull_module(reference, BlobStore(cache_dir or default_cache_dir()), insecure=insecure)
    except WasmletError as exc:
        fail(exc)
    if output is not None:
        try:
            output.write_bytes(pulled.data)
        except OSError as exc:
            click.echo(f"error: cannot write {output}: {exc.strerror or exc}", err=True)
            sys.exit(1)
    click.echo(f"pulled  {pulled.reference}{'  (offline: local copy)' if pulled.offline else ''}")
    click.echo(f"module  sha256:{pulled.module_digest}  ({len(pulled.data)} bytes)")


@click.command()
@click.argument("registry")
@click.option("-u", "--username", required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@insecure_option
@verbose_option
def login(registry: str, username: str, password_stdin: bool, insecure: bool) -> None:
    """Check credentials for REGISTRY (HOST[:PORT]) and save them in ~/.docker/config.json."""
    from .._errors import ConfigError
    from ..registry import Credentials
    from ..registry import login as registry_login

    # docker accepts "https://host/" too; the config key is the bare host[:port].
    host = registry.split("://", 1)[-1].rstrip("/")
    password = sys.stdin.read().rstrip("\r\n") if password_stdin else click.prompt("Password", hide_input=True)
    try:
        if not password:
            raise ConfigError("empty password")
        path = registry_login(host, Credentials(username, password), insecure=insecure)
    except WasmletError as exc:
        fail(exc)
    click.echo(f"Login Succeeded (credentials saved in {path})")
