"""A component linker for one proxy component, from what it imports.

Every import is matched by interface name without its version
(``wasi:io/streams@0.2.3`` is ``wasi:io/streams``), so a guest built
against any 0.2.x release links to the same functions, under the exact name
it imports. The linker is built once per component at deploy; a request only
instantiates from it. Each import is one of:

- implemented here (``INTERFACES``);
- denied (``_deny``: ``wasi:filesystem``, ``wasi:sockets``);
- served by an ``Extension`` (another module's host functions, e.g. Spin's);
- none of those: the component is refused at deploy, the imports named.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

import wasmtime
import wasmtime.component as wc

from ...plan import ComponentSpec
from .. import _native as native
from . import _abi as abi
from ._cli import define_cli, define_clocks, define_random
from ._deny import define_denied, is_denied
from ._http import define_types
from ._io import define_error, define_poll, define_streams
from ._outgoing import define_outgoing_handler

__all__ = ["INTERFACES", "Extension", "Imports", "build_proxy_linker", "component_interfaces", "provided"]

Definer = Callable[[wc.Linker, str, wc.LinkerInstance], None]


def _simple(define: Callable[[wc.LinkerInstance], None]) -> Definer:
    return lambda linker, interface, instance: define(instance)


INTERFACES: dict[str, Definer] = {
    "wasi:io/error": _simple(define_error),
    "wasi:io/poll": _simple(define_poll),
    "wasi:io/streams": _simple(define_streams),
    "wasi:http/types": _simple(define_types),
    "wasi:http/outgoing-handler": _simple(define_outgoing_handler),
    **{f"wasi:cli/{n}": define_cli for n in (
        "environment", "exit", "stdin", "stdout", "stderr", "terminal-input", "terminal-output",
        "terminal-stdin", "terminal-stdout", "terminal-stderr")},
    "wasi:clocks/wall-clock": define_clocks,
    "wasi:clocks/monotonic-clock": define_clocks,
    "wasi:random/random": define_random,
    "wasi:random/insecure": define_random,
    "wasi:random/insecure-seed": define_random,
}
# 0.2.x only: a 0.3 or 1.x interface has other semantics under the same name.
_VERSION_PREFIX = "0.2."


@dataclasses.dataclass(frozen=True)
class Extension:
    """Host functions from elsewhere (Spin's), linked into a proxy component's linker.

    ``interfaces``: the unversioned interface names served
    (``fermyon:spin/key-value``); ``define(linker)`` defines them, every
    version it supports, on the component's linker at deploy; ``context``,
    if given, is called with the handler's name once at deploy and gives the
    context manager entered around each request (bind its per-request state
    to the thread there, as ``_wasi_http.outbound_context`` does).
    """

    interfaces: frozenset[str]
    define: Callable[[wc.Linker], None]
    context: Callable[[ComponentSpec, str], Callable[[], AbstractContextManager[Any]]] | None = None


@dataclasses.dataclass(frozen=True)
class Imports:
    """A component's imports: ``{full interface name: [function names]}``, and items that are not interfaces."""

    interfaces: dict[str, list[str]]
    other: list[str]


def component_interfaces(component: wc.Component, engine: wasmtime.Engine) -> Imports:
    interfaces: dict[str, list[str]] = {}
    other: list[str] = []
    for name, item in component.type.imports(engine).items():
        kind = item.ty
        if not isinstance(kind, wc.ComponentInstanceType):
            other.append(name)
            continue
        interfaces[name] = [n for n, export in kind.exports(engine).items() if isinstance(export.ty, wc.FuncType)]
    return Imports(interfaces, other)


_provided: dict[str, frozenset[str]] = {}


def provided(interface: str) -> frozenset[str]:
    """The function and resource names this host defines for ``interface`` (unversioned)."""
    if interface not in _provided:
        abi.recording = []
        try:
            INTERFACES[interface](None, interface, None)  # type: ignore[arg-type]
            _provided[interface] = frozenset(abi.recording)
        finally:
            abi.recording = None
    return _provided[interface]


def split(name: str) -> tuple[str, str]:
    interface, _, version = name.partition("@")
    return interface, version


def missing_imports(imports: Imports, extensions: Iterable[Extension]) -> list[str]:
    """What the component imports that nothing here provides, as ``interface@version::name`` strings."""
    served = set().union(*(e.interfaces for e in extensions))
    out = [f"{name} (not an interface)" for name in imports.other]
    for full, names in imports.interfaces.items():
        interface, version = split(full)
        if interface in served:
            continue
        if interface in INTERFACES or is_denied(interface):
            if not version.startswith(_VERSION_PREFIX):
                out.append(f"{full} (version {version or 'none'}; this host serves 0.2.x)")
                continue
            if interface in INTERFACES:
                have = provided(interface)
                out += [f"{full}::{n}" for n in names if n not in have]
            continue
        out.append(full)
    return sorted(out)


def build_proxy_linker(engine: wasmtime.Engine, imports: Imports, extensions: Iterable[Extension]) -> wc.Linker:
    """A linker with exactly what ``imports`` names (call ``missing_imports`` first)."""
    abi.use_native(native.fast_path())  # the resource conversions in C, when the helper is there
    abi.use_host_calls(native.host_calls())  # the host functions entered in C, when that helper is there
    linker = wc.Linker(engine)
    extensions = list(extensions)
    served = set().union(*(e.interfaces for e in extensions))
    with linker.root() as root:
        for full, names in sorted(imports.interfaces.items()):
            interface, _ = split(full)
            if interface in served:
                continue
            with root.add_instance(full) as instance:
                if interface in INTERFACES:
                    INTERFACES[interface](linker, interface, instance)
                elif is_denied(interface):
                    define_denied(interface, instance, names)
    for extension in extensions:
        if extension.interfaces & {split(full)[0] for full in imports.interfaces}:
            extension.define(linker)
    return linker
