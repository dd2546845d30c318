"""Choosing the guest ABI for a compiled binary.

A core module is WAGI; a component exporting ``wasi:http/incoming-handler@0.2.x``
is a ``wasi:http/proxy`` component (``_proxy``); any other component is a
``wasi:cli`` command run CGI-style (``_component``).

The component stacks (``_component``, ``_proxy`` and Spin's interfaces, ``_spin``) load
with the first component, not with this module: a host serving WAGI modules starts
~15 ms sooner without them (``docs/benchmarks.md`` section 29).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import wasmtime

from .._errors import ModuleError
from ..plan import ComponentSpec
from ._imports import check_component_imports, check_imports, preopens
from ._runner import GuestLimits, GuestResult, WagiHandler, check_module
from ._sleep import define_deadline_poll
from ._wagi import CgiRequest
from ._wasi_http import define_wasi_http

if TYPE_CHECKING:  # wasmtime.component loads with the first component (engine._cache)
    import wasmtime.component

    from ._proxy import Extension

__all__ = ["Handler", "Linkers", "build_handler"]


class Handler(Protocol):
    name: str
    abi: str  # what kind of guest it runs, for logs: "WAGI module", "wasi:cli component", ...

    def handle(self, request: CgiRequest, traceparent: str = "") -> GuestResult: ...


class Linkers:
    """The linkers of one engine, built once and shared by every handler.

    A ``wasi:http`` component gets a linker of its own instead, built at deploy
    from its imports (``_proxy.build_proxy_linker``) with ``extensions``.
    """

    def __init__(self, engine: wasmtime.Engine,
                 extensions: Sequence[Extension] | Callable[[], Sequence[Extension]] = ()) -> None:
        self.engine = engine
        # Host interfaces from elsewhere (Spin's) for wasi:http components: linked per component at deploy.
        # A function makes them when the first such component is linked (and imports what they need then).
        self._extensions = extensions
        self._lock = threading.Lock()  # the function runs once, whichever thread links first
        self.core = wasmtime.Linker(engine)
        self.core.define_wasi()
        define_deadline_poll(self.core, engine)  # sleeping is bounded by the request deadline
        define_wasi_http(self.core)  # outbound HTTP, enforced per component by its allowedOutboundHosts
        self._component: wasmtime.component.Linker | None = None

    @property
    def extensions(self) -> list[Extension]:
        with self._lock:
            if callable(self._extensions):
                self._extensions = self._extensions()
            return list(self._extensions)

    @property
    def component(self) -> wasmtime.component.Linker:
        if self._component is None:
            from ._component import build_component_linker

            self._component = build_component_linker(self.engine)
        return self._component


def build_handler(
    spec: ComponentSpec,
    compiled: wasmtime.Module | wasmtime.component.Component,
    linkers: Linkers,
    name: str | None = None,
) -> Handler:
    """A handler for ``compiled``; raises ``ModuleError`` for what could never serve a request.

    ``name`` (default ``app/component``) is what logs and errors call it; deploy
    passes the manifest file and component so a refusal names both.
    """
    name = name or spec.qualified_name
    assert spec.route is not None
    limits = GuestLimits(spec.memory_limit, spec.timeout, spec.max_response_size)
    capabilities = spec.capabilities
    if not isinstance(compiled, wasmtime.Module):  # a component
        from ._component import ComponentHandler
        from ._proxy import find_handler_export

        handle = find_handler_export(compiled, linkers.engine)
        if handle is not None:
            return _proxy_handler(spec, compiled, linkers, name, limits, handle)
        # The same sandbox as WAGI: the import check, and files grants as the only directories.
        check_component_imports(compiled, linkers.engine, capabilities, name)
        return ComponentHandler(name=name, engine=linkers.engine, component=compiled, limits=limits, route=spec.route,
                                environment=spec.environment, argv=spec.argv, linker=linkers.component,
                                preopens=preopens(capabilities, spec.base_dir))
    check_module(compiled, spec.entrypoint, spec.memory_limit, name)
    check_imports(compiled, capabilities, name)  # deny by default: only what a WAGI handler needs
    return WagiHandler(name=name, engine=linkers.engine, linker=linkers.core, module=compiled, limits=limits,
                       route=spec.route, environment=spec.environment, entrypoint=spec.entrypoint, argv=spec.argv,
                       preopens=preopens(capabilities, spec.base_dir), outbound=capabilities.outbound)


def _proxy_handler(spec: ComponentSpec, component: wasmtime.component.Component, linkers: Linkers, name: str,
                   limits: GuestLimits, handle: wasmtime.component.ExportIndex) -> Handler:
    """A ``wasi:http/proxy`` component: refused unless every import is provided, denied or served by an extension."""
    from ._proxy import ProxyHandler, build_proxy_linker, component_interfaces, missing_imports

    assert spec.route is not None
    capabilities = spec.capabilities
    if capabilities.files:
        raise ModuleError(
            f"{name}: capabilities.files is not available to wasi:http components yet: wasmlet links "
            "wasi:filesystem for them as a denial only (see docs/guest-abis.md); remove the files grant, or "
            "serve the code as a WAGI module or a wasi:cli component"
        )
    imports = component_interfaces(component, linkers.engine)
    extensions = linkers.extensions
    missing = missing_imports(imports, extensions)
    if missing:
        raise ModuleError(f"{name}: the component imports what wasmlet cannot provide: {', '.join(missing)}")
    used = [e for e in extensions if e.interfaces & {n.split("@", 1)[0] for n in imports.interfaces}]
    linker = build_proxy_linker(linkers.engine, imports, used)
    contexts = [e.context(spec, name) for e in used if e.context is not None]
    return ProxyHandler(name=name, engine=linkers.engine, component=component, limits=limits, route=spec.route,
                        linker=linker, handle=handle, environment=spec.environment,
                        outbound=capabilities.outbound, contexts=contexts)
