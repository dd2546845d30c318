"""``define_spin``: every Spin platform interface a Spin SDK guest imports, on one component linker."""

from __future__ import annotations

import wasmtime.component as wc

from .._proxy import Extension
from ._config import CONFIG_INTERFACE, VARIABLES_INTERFACE, define_config, define_variables
from ._context import KeyValueHost, spin_request_context
from ._denied import DENIED, define_denied
from ._keyvalue import INTERFACE as KEY_VALUE_INTERFACE
from ._keyvalue import define_key_value

__all__ = ["PROVIDED", "SPIN_INTERFACES", "SPIN_INTERFACE_NAMES", "define_spin", "spin_extension"]

#: The interfaces answered for real.
PROVIDED = (KEY_VALUE_INTERFACE, VARIABLES_INTERFACE, CONFIG_INTERFACE)
#: Every interface ``define_spin`` links (the rest refuse at call time), with its version.
SPIN_INTERFACES = (*PROVIDED, *DENIED)
#: The same without versions (``fermyon:spin/key-value``), as import checks match them.
SPIN_INTERFACE_NAMES = frozenset(name.split("@", 1)[0] for name in SPIN_INTERFACES)


def define_spin(linker: wc.Linker) -> None:
    """Link the Spin interfaces on ``linker``; calls answer from the thread's ``spin_context``."""
    with linker.root() as root:
        define_key_value(root)
        define_variables(root)
        define_config(root)
        define_denied(root)


def spin_extension(kv: KeyValueHost | None) -> Extension:
    """The Spin interfaces for ``wasi:http/proxy`` components: ``Linkers(engine, extensions=[spin_extension(kv)])``.

    ``kv`` is the host's ``KeyValueHost`` (one per worker process); ``None``
    links the same functions with no store behind them (``access-denied``),
    e.g. for the deploy-time check.
    """
    return Extension(SPIN_INTERFACE_NAMES, define_spin, spin_request_context(kv))
