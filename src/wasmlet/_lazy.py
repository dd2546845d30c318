"""Names a package loads on first use (PEP 562): the ``__getattr__`` and ``__dir__`` it exports.

A package lists each public name and the private module that defines it; importing the
package then imports none of them, and the first use of a name imports its module. So a
process loads what it uses: a worker neither the manifest's schema nor the component stacks
it has no component for, the supervisor not the worker's ASGI app (issue 13). Standard
library only: ``wasmlet.plan`` uses it too.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(package: str, where: Mapping[str, str],
               names: Sequence[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, whose ``where`` maps each name to its module
    (relative to the package, as ``"._plan"``); ``names`` is its ``__all__``."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # once loaded, a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
