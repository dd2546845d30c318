"""Module signatures: ``keygen``, ``certify``, ``sign``, ``verify`` (the work is in ``wasmlet.signing``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .._errors import ConfigError, WasmletError
from ._options import emit_json, fail, output_options

__all__ = ["certify", "keygen", "sign", "verify"]


def _print_lines(lines: list[str]) -> None:
    for line in lines:
        click.echo(line)


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", required=True, help="File name stem: NAME.key (secret) and NAME.pub.")
def keygen(directory: Path, name: str) -> None:
    """Create an Ed25519 key pair (a trust root's or a publisher's)."""
    from ..signing import keygen_command

    try:
        _print_lines(keygen_command(directory, name))
    except WasmletError as exc:
        fail(exc)


@click.command()
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
    from ..signing import certify_command

    try:
        _print_lines(certify_command(root_key, publisher_pub, list(scope), not_after, output, subject))
    except (WasmletError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@click.command()
@click.argument("module", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--key", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Publisher secret key.")
@click.option("--cert", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The publisher's certificate, embedded in the module.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the signed module (default: in place).")
def sign(module: Path, key: Path, cert: Path | None, output: Path | None) -> None:
    """Sign a module (a `signature` custom section, as wasmsign2 writes it)."""
    from ..signing import sign_command

    try:
        _print_lines(sign_command(module, key, cert, output))
    except WasmletError as exc:
        fail(exc)


@click.command()
@click.argument("module", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--trust", "trust_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--subject", required=True, help="What the module is deployed as: app/component or host/repo.")
@output_options
def verify(module: Path, trust_dir: Path, subject: str, output: str) -> None:
    """Check a module's signature chain against a trust folder.

    With -o json, a refused signature is an object too ("verified": false and
    the stable "reason"), on stdout, with exit status 1.
    """
    from ..signing import verify_command

    if output == "json":
        _verify_json(module, trust_dir, subject)
        return
    try:
        _print_lines(verify_command(module, trust_dir, subject))
    except WasmletError as exc:
        fail(exc)


def _verify_json(module: Path, trust_dir: Path, subject: str) -> None:
    from .._errors import SignatureError
    from ..signing import TrustStore, verify_module

    base: dict[str, object] = {"module": str(module), "subject": subject}
    try:
        store = TrustStore.from_dir(trust_dir)
        try:
            data = module.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{module}: cannot read the module: {exc.strerror or exc}") from exc
        verified = verify_module(data, store, subject)
    except SignatureError as exc:
        emit_json({**base, "verified": False, "reason": exc.reason, "error": str(exc)})
        sys.exit(1)
    except WasmletError as exc:
        fail(exc)
    emit_json({
        **base, "verified": True, "key_id": verified.key_id, "root_id": verified.root_id,
        "publisher": verified.publisher, "scope": list(verified.scope),
        "not_after": f"{verified.not_after:%Y-%m-%dT%H:%M:%SZ}", "module_sha256": verified.module_hash,
    })
