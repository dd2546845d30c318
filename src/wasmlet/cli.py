"""The ``wasmlet`` command: arguments -> settings -> load -> run.

Thin: the ``main`` group and its global options are here; the commands are in
``wasmlet._cli`` (one module per group of verbs) and ``wasmlet._k8s``.
"""

from __future__ import annotations

import click

from . import __version__
from ._cli import COMMANDS, http_logging
from ._k8s import k8s
from ._logging import configure_logging

__all__ = ["main"]


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
    http_logging(verbose)


for _command in COMMANDS:
    main.add_command(_command)
main.add_command(k8s)  # `wasmlet k8s`: its own module (_k8s.py)
