"""The commands of ``wasmlet``, one module per group of verbs; ``wasmlet.cli`` puts them under ``main``.

- ``_options``: what the commands share (``--cache-dir``, ``-o/--json``, ``-v``, ``--insecure``, errors);
- ``_lattice_flags``: the ``--lattice*`` flags of ``serve`` and ``wasmlet lattice``, checked and joined;
- ``_serve_command``: ``serve`` (the host itself is ``wasmlet._serve``);
- ``_local_commands``: ``validate``, ``compile``, ``run``, ``new``;
- ``_registry_commands``: ``push``, ``pull``, ``login``;
- ``_signing_commands``: ``keygen``, ``certify``, ``sign``, ``verify``;
- ``_admin_commands``: the admin API's clients (``deploy``, ``apps``, ``rollback``..., ``top``);
- ``_lattice_commands``: the ``lattice`` group.

Each command imports what it needs when it runs: importing this package loads click and nothing
heavy (``tests/test_start_imports.py``).
"""

from __future__ import annotations

import click

from ._admin_commands import abort, apps, delete, deploy, history, logs, promote, rollback, top
from ._lattice_commands import lattice
from ._local_commands import compile as compile_command  # named so, not to shadow the builtin
from ._local_commands import new, run, validate
from ._options import http_logging
from ._registry_commands import login, pull, push
from ._serve_command import serve
from ._signing_commands import certify, keygen, sign, verify

__all__ = ["COMMANDS", "http_logging"]

COMMANDS: tuple[click.Command, ...] = (
    serve, validate, compile_command, run, new, push, pull, login, top, keygen, certify, sign, verify,
    deploy, apps, rollback, promote, abort, delete, logs, history, lattice,
)
