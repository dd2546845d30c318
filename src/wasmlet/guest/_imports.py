"""The import whitelist checked at deploy, and the directories an instance is given.

What a component may import and mount is declared in ``wasmlet.plan``'s
``Capabilities``; this is where it meets wasmtime: ``check_imports`` refuses
a module that imports more than its grants (``CapabilityError`` with the
list), and ``preopens`` resolves the ``files`` grants to host directories.

``check_component_imports`` is the same check for a ``wasi:cli`` component,
whose imports are WASI 0.2 interface functions rather than preview 1 names
(the version is ignored: ``wasi:io/streams@0.2.3`` is ``wasi:io/streams``):

- by default, what a CGI-style command needs (``COMPONENT_IMPORTS``):
  arguments, environment, exit, stdio and terminals, streams and polling,
  clocks, random, the list of preopened directories, and the descriptor
  methods that act on a descriptor already held (``FS_ON_DESCRIPTOR``: the
  preview 1 adapter imports them for its stdio); without a ``files`` grant
  there is no descriptor to act on;
- ``files``: the rest of ``wasi:filesystem/types`` that reads (opening,
  listing, ``stat-at``), and with a writable mount what writes (``FS_WRITE``);
- ``wasiImports``: ``INTERFACE::FUNCTION`` or ``INTERFACE::*`` for the rest
  (``wasi:sockets/tcp::*``; the host gives no network to components, so such
  a grant links but connects nowhere);
- never: ``wasi:clocks/monotonic-clock``'s ``subscribe-duration`` and
  ``subscribe-instant``. wasmtime's WASI 0.2 waits on them in native code that
  the epoch deadline cannot interrupt, and wasmtime-py offers no way to define
  that wait again (a ``pollable`` is wasmtime's own resource), so a component
  that sleeps would hold a guest thread past any deadline. WAGI modules may
  sleep: their ``poll_oneoff`` is bounded (``_sleep``), and so may
  ``wasi:http`` proxy components, whose WASI is wasmlet's own (``_proxy``).

A ``wasi:http`` proxy component is checked by ``_proxy`` instead
(``missing_imports``): it gets no wasmtime WASI at all, only what ``_proxy``
implements or denies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import wasmtime

if TYPE_CHECKING:  # loaded with the first component (engine._cache), not at a WAGI host's start
    import wasmtime.component as wc

from .._errors import CapabilityError, ConfigError, ModuleError
from ..plan import Capabilities, allowed_imports

__all__ = [
    "COMPONENT_IMPORTS",
    "FS_ON_DESCRIPTOR",
    "FS_WRITE",
    "NEVER_IMPORTS",
    "Preopen",
    "check_component_imports",
    "check_imports",
    "component_imports",
    "offending_imports",
    "preopens",
]

_FS_TYPES = "wasi:filesystem/types"

# Interfaces a component may import in full, by default.
COMPONENT_IMPORTS = frozenset({
    "wasi:cli/environment", "wasi:cli/exit", "wasi:cli/stdin", "wasi:cli/stdout", "wasi:cli/stderr",
    "wasi:cli/terminal-input", "wasi:cli/terminal-output", "wasi:cli/terminal-stdin", "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr", "wasi:io/error", "wasi:io/streams", "wasi:io/poll", "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock", "wasi:random/random", "wasi:random/insecure", "wasi:random/insecure-seed",
    "wasi:filesystem/preopens",
})

# wasi:filesystem/types functions on a descriptor already held (default).
FS_ON_DESCRIPTOR = frozenset({
    "[method]descriptor.read-via-stream", "[method]descriptor.write-via-stream",
    "[method]descriptor.append-via-stream", "[method]descriptor.get-type", "[method]descriptor.get-flags",
    "[method]descriptor.stat", "filesystem-error-code",
})

# wasi:filesystem/types functions that change the file system (a writable mount).
FS_WRITE = frozenset({
    "[method]descriptor.write", "[method]descriptor.set-size", "[method]descriptor.set-times",
    "[method]descriptor.set-times-at", "[method]descriptor.create-directory-at", "[method]descriptor.link-at",
    "[method]descriptor.remove-directory-at", "[method]descriptor.rename-at", "[method]descriptor.symlink-at",
    "[method]descriptor.unlink-file-at", "[method]descriptor.sync", "[method]descriptor.sync-data",
    "[method]descriptor.advise",
})

# Never granted (see the module's docstring).
NEVER_IMPORTS = frozenset({
    ("wasi:clocks/monotonic-clock", "subscribe-duration"),
    ("wasi:clocks/monotonic-clock", "subscribe-instant"),
})


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


def component_imports(component: wc.Component, engine: wasmtime.Engine) -> list[tuple[str, str]]:
    """The functions ``component`` imports, as ``(interface without version, function)``.

    A top-level import that is not an interface instance is listed with the
    function name ``""`` (no grant names it: the host defines none).
    """
    import wasmtime.component as wc

    out = []
    for name, item in component.type.imports(engine).items():
        interface = name.split("@", 1)[0]
        kind = item.ty
        if not isinstance(kind, wc.ComponentInstanceType):
            out.append((interface, ""))
            continue
        out += [(interface, fn) for fn, export in kind.exports(engine).items() if isinstance(export.ty, wc.FuncType)]
    return out


def check_component_imports(component: wc.Component, engine: wasmtime.Engine, caps: Capabilities,
                            name: str) -> None:
    """Refuse a component that imports more than ``caps`` grants (``CapabilityError``), or can sleep."""
    imports = component_imports(component, engine)
    never = sorted(f"{i}::{f}" for i, f in imports if (i, f) in NEVER_IMPORTS)
    if never:
        raise ModuleError(
            f"{name}: the component imports {', '.join(never)}: a component cannot sleep on this host "
            "(wasmtime's WASI 0.2 waits in native code that the request deadline cannot stop); "
            "a WAGI module may, see docs/security.md"
        )
    grants = set()
    for entry in caps.wasi_imports:
        module, _, function = entry.rpartition("::")
        grants.add((module.split("@", 1)[0], function))
    writable = any(m.writable for m in caps.files)
    bad = []
    for interface, function in imports:
        if interface in COMPONENT_IMPORTS and function:
            continue
        if interface == _FS_TYPES and (
            function in FS_ON_DESCRIPTOR or (caps.files and (writable or function not in FS_WRITE))
        ):
            continue
        if (interface, function) in grants or (interface, "*") in grants:
            continue
        bad.append(f"{interface}::{function}" if function else interface)
    if bad:
        raise CapabilityError(name, sorted(set(bad)))
