"""What the commands share: option decorators, ``-v``, error and JSON output.

Only click and the standard library here: every command imports this module
at start, so it must cost nothing (``tests/test_start_imports.py``).
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .._errors import WasmletError

__all__ = ["cache_option", "emit_json", "fail", "http_logging", "insecure_option", "output_options",
           "verbose_option"]

cache_option = click.option(
    "--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    envvar="WASMLET_CACHE_DIR", help="Precompiled-module cache (default: $XDG_CACHE_HOME/wasmlet).",
)

insecure_option = click.option(
    "--insecure", is_flag=True,
    help="Plain HTTP to this registry (loopback registries always use it; see also $WASMLET_INSECURE_REGISTRIES).",
)


def fail(exc: WasmletError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


# The HTTP client's own loggers: one INFO line per request is noise for a user of `wasmlet apps`.
_HTTP_LOGGERS = ("httpx", "httpcore")


def http_logging(verbose: int) -> None:
    """0: quiet; -v: show each HTTP request the command makes; -vv: and the HTTP client's debug lines."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    for name in _HTTP_LOGGERS:
        logging.getLogger(name).setLevel(level)


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: int) -> None:
    if value:  # `wasmlet apps -v`, as well as `wasmlet -v apps`
        http_logging(value)


verbose_option = click.option(
    "-v", "--verbose", count=True, expose_value=False, callback=_set_verbosity,
    help="Show the HTTP requests made (-vv: with the HTTP client's debug lines).",
)


def output_options(function: Callable[..., None]) -> Callable[..., None]:
    """``-o/--output text|json`` and ``--json``; the command gets ``output`` alone, "json" for either."""

    @functools.wraps(function)
    def command(*args: Any, output: str, as_json: bool, **kwargs: Any) -> None:
        function(*args, output="json" if as_json else output, **kwargs)

    command = click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text",
                           show_default=True, help="Output format; json is for scripts (jq).")(command)
    return click.option("--json", "as_json", is_flag=True, help="Same as -o json.")(command)


def emit_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))
