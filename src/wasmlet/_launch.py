"""The ``wasmlet`` console script: for ``wasmlet serve``, start the worker zygote before the CLI loads.

A host's first 200 waits for the zygote's imports (~300 ms with a warm cache, the longest step
on the way beside the supervisor's own; issue 13, ``docs/benchmarks.md`` sections 28-29). Loading
click and every command takes ~70 ms before ``serve`` runs; the zygote started here, with ``os``
alone (``wasmlet._early``) about a millisecond after the interpreter, imports on the other core
meanwhile. The look at the command line (``serves_with_zygote``) is only a head start: when it
misses (an unusual spelling of the arguments), ``serve`` starts the zygote itself, as before;
when it is wrong (a command line that fails before serving), what it started is removed on the
way out.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing and collections.abc are not imported for this: see main()
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main", "prepare_serving", "serves_with_zygote", "took_head_start"]

# The options of the top-level group (``wasmlet.cli.main``) that take a value.
_GLOBAL_VALUE_OPTIONS = frozenset({"--log-level"})
_HELP = frozenset({"-h", "--help", "--version"})

_head_start = False


def serves_with_zygote(args: Sequence[str]) -> bool:
    """True if ``wasmlet ARGS`` surely runs ``serve`` with workers forked from a zygote.

    False for anything else, including help, ``--version`` and ``--server granian`` (granian
    forks its own workers). A pure guess at click's parse, erring towards False.
    """
    index = 0
    while index < len(args) and args[index].startswith("-"):
        if args[index] in _HELP:
            return False
        index += 2 if args[index] in _GLOBAL_VALUE_OPTIONS else 1
    if index >= len(args) or args[index] != "serve":
        return False
    rest = list(args[index + 1:])
    for position, arg in enumerate(rest):
        if arg == "--":
            break
        if arg in _HELP or arg == "--server=granian":
            return False
        if arg == "--server" and rest[position + 1:position + 2] == ["granian"]:
            return False
    return True


def took_head_start() -> bool:
    """True, once, if ``main`` prepared the metrics folder and started the zygote for ``serve``."""
    global _head_start
    taken, _head_start = _head_start, False
    return taken


def prepare_serving(zygote: bool = True) -> None:
    """What ``serve`` needs before anything imports prometheus_client: the metrics folder, then
    (``zygote``) the worker zygote, which imports it and inherits the folder (``wasmlet._prefork``)."""
    from ._multiproc import prepare_metrics_dir
    from ._prefork import start_early

    prepare_metrics_dir()
    if zygote:
        start_early()


# Pydantic looks for plugins (the "pydantic" entry point group) when it builds its first model: it
# reads every installed distribution's entry_points.txt, ~4 ms in each of the supervisor and the
# zygote. wasmlet's models are its own plan, manifest and API; no plugin has a use for them. An
# explicit setting (a plugin the user wants) wins.
_NO_PYDANTIC_PLUGINS = ("PYDANTIC_DISABLE_PLUGINS", "__all__")


def main() -> None:
    global _head_start
    os.environ.setdefault(*_NO_PYDANTIC_PLUGINS)  # before the zygote's spawn, which inherits it
    # The head start comes first, before any import beyond the interpreter's own modules (``wasmlet``
    # itself imports nothing at start): ~1 ms after the interpreter, where ``prepare_serving``, with
    # tempfile, subprocess and logging to import first, started the zygote ~25 ms later.
    if serves_with_zygote(sys.argv[1:]):
        import gc

        gc.disable()  # for the CLI's imports too: ``serve`` turns it off for its start-up, on once serving
        from ._early import make_metrics_dir, spawn_zygote

        if make_metrics_dir() is not None:  # else ``serve`` prepares it all itself, and says why it cannot
            spawn_zygote()  # None (not Linux, WASMLET_ZYGOTE=0, fork failed): ``serve`` starts one or spawns
            _head_start = True
    try:
        from .cli import main as cli

        cli()
    finally:
        if _head_start:  # serve never took it: the command failed before (a bad flag, say)
            _discard()


def _discard() -> None:
    import shutil

    from ._multiproc import MULTIPROC_ENV
    from ._prefork import take_early

    zygote = take_early()
    if zygote is not None:
        zygote.close()
    folder = os.environ.pop(MULTIPROC_ENV, None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
