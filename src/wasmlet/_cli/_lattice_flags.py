"""The ``--lattice*`` flags (docs/lattice.md), shared by ``serve`` and ``wasmlet lattice``: declared, checked, joined.

Everything that reaches past click (the plan, the server's token check, the lattice
itself) is imported inside the functions, when a command runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .._errors import ConfigError

__all__ = ["join_lattice", "lattice_link", "lattice_options"]


def lattice_options(host: bool) -> Callable[[Callable[..., None]], Callable[..., None]]:
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


def lattice_link(flags: dict[str, Any], host: str = "") -> Any:
    """The ``LatticeLink`` the ``--lattice*`` flags describe (``ConfigError`` for a bad URL or prefix)."""
    from ..plan import LatticeLink
    from ..server import valid_token

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


def join_lattice(flags: dict[str, Any], state_dir: Path, cache_dir: Path, settings: Any) -> Any:
    """With ``--lattice``: this host's ``Lattice``, joined (connected, heartbeating, desired state read)."""
    if not flags.get("lattice"):
        given = [name for name in ("host_node_file", "host_name", "host_zone") if flags.get(name)]
        if given or flags.get("host_labels") or flags.get("host_taints"):
            raise ConfigError("--host-name, --node, --label, --taint and --zone describe a lattice host: "
                              "give --lattice too")
        return None
    import socket

    from ..lattice import Lattice, host_node
    from ..plan import load_priority_classes

    node_file = flags.get("host_node_file")
    node = host_node(flags.get("host_name"), flags.get("host_labels") or (), flags.get("host_taints") or (),
                     flags.get("host_zone"), flags.get("host_memory"), flags.get("host_apps"), node_file,
                     default_name=socket.gethostname().lower())
    classes = load_priority_classes(node_file) if node_file else []
    link = lattice_link(flags, node.name)
    listen = f"{settings.host}:{settings.port}"
    admin = f"{settings.admin[0]}:{settings.admin[1]}" if settings.admin else ""
    lattice = Lattice(link, node, state_dir, cache_dir, flags.get("lattice_replicas"), classes, listen, admin)
    lattice.join()
    lattice.prefetch()
    click.echo(f"wasmlet: host {node.name} joined the lattice at {', '.join(link.servers)}", err=True)
    return lattice
