"""The import whitelist checked at deploy, and the directories an instance is given.

What a component may import and mount is declared in ``wasmlet.plan``'s
``Capabilities``; this is where it meets wasmtime: ``check_imports`` refuses
a module that imports more than its grants (``CapabilityError`` with the
list), and ``preopens`` resolves the ``files`` grants to host directories.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

import wasmtime

from .._errors import CapabilityError, ConfigError
from ..plan import Capabilities, allowed_imports

__all__ = ["Preopen", "check_imports", "offending_imports", "preopens"]


@dataclasses.dataclass(frozen=True)
class Preopen:
    """One directory to give the instance: ``WasiConfig.preopen_dir(host, guest, fs_mutable=writable)``."""

    host: str
    guest: str
    writable: bool


def preopens(caps: Capabilities, base_dir: str | Path) -> list[Preopen]:
    """The directories to preopen, sources resolved against the manifest's directory.

    Raises ``ConfigError`` for a source that is not an existing directory
    (called at deploy, so a typo fails before serving).
    """
    out = []
    for mount in caps.files:
        host = (Path(base_dir) / mount.source).resolve()
        if not host.is_dir():
            raise ConfigError(f"files: {mount.source!r} ({host}) is not a directory")
        out.append(Preopen(str(host), mount.destination, mount.writable))
    return out


def offending_imports(
    imports: wasmtime.Module | Iterable[tuple[str, str]], allowed: frozenset[tuple[str, str]]
) -> list[str]:
    """The imports not in ``allowed``, as sorted ``module::name`` strings."""
    pairs = (
        [(i.module, i.name or "") for i in imports.imports] if isinstance(imports, wasmtime.Module) else imports
    )
    bad = {
        f"{module}::{name}"
        for module, name in pairs
        if (module, name) not in allowed and (module, "*") not in allowed
    }
    return sorted(bad)


def check_imports(module: wasmtime.Module, caps: Capabilities, name: str) -> None:
    """Raise ``CapabilityError`` listing every import ``caps`` does not grant."""
    bad = offending_imports(module, allowed_imports(caps))
    if bad:
        raise CapabilityError(name, bad)
