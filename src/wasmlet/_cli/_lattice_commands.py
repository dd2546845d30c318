"""``wasmlet lattice``: inspect and steer a lattice of hosts, talking to NATS directly (docs/lattice.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .._errors import ConfigError, WasmletError
from ._lattice_flags import lattice_link, lattice_options
from ._options import emit_json, fail, output_options

__all__ = ["lattice"]


@click.group()
def lattice() -> None:
    """A lattice of hosts on NATS JetStream (docs/lattice.md): hosts, placement, drains.

    Every command takes the --lattice* flags (or $WASMLET_LATTICE...) and talks to NATS directly.
    """


def _lattice_client(flags: dict[str, Any]) -> Any:
    from ..lattice import LatticeClient

    if not flags.get("lattice"):
        raise ConfigError("--lattice (or $WASMLET_LATTICE): give the NATS server URLs of the lattice")
    return LatticeClient(lattice_link(flags))


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@lattice.command(name="hosts")
@output_options
@lattice_options(host=False)
def lattice_hosts(output: str, **flags: Any) -> None:
    """The live hosts: labels, taints, capacity, what each serves."""
    try:
        with _lattice_client(flags) as client:
            rows = client.hosts()
    except WasmletError as exc:
        fail(exc)
    if output == "json":
        emit_json(rows)
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
@output_options
@lattice_options(host=False)
def lattice_apps(output: str, **flags: Any) -> None:
    """What runs where: each app's placed and serving hosts, and why a pending app is pending."""
    try:
        with _lattice_client(flags) as client:
            rows = client.apps()
    except WasmletError as exc:
        fail(exc)
    if output == "json":
        emit_json(rows)
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
@output_options
@lattice_options(host=False)
def lattice_drain(host: str, timeout: float, undo: bool, output: str, **flags: Any) -> None:
    """Move every app off HOST, with no failed request: its new hosts serve before it stops.

    Recorded in the desired state: the host stays drained (restarts included) until --undo.
    """
    try:
        with _lattice_client(flags) as client:
            result = client.drain(host, drained=not undo, wait=timeout)
    except WasmletError as exc:
        fail(exc)
    if output == "json":
        emit_json(result)
        return
    if undo:
        click.echo(f"{host}: placement may use it again")
    else:
        moved = ", ".join(result["moved"]) or "nothing"
        click.echo(f"{host}: drained; moved {moved}" if timeout > 0 else f"{host}: drained (not waited for)")


@lattice.command(name="apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@lattice_options(host=False)
def lattice_apply(file: Path, **flags: Any) -> None:
    """Record the PriorityClass documents of a YAML stream (the seed's wasm-critical); other kinds are skipped."""
    try:
        with _lattice_client(flags) as client:
            names = client.apply(file)
    except WasmletError as exc:
        fail(exc)
    click.echo(f"PriorityClass(es) recorded: {', '.join(names)}" if names else f"{file}: no PriorityClass")
