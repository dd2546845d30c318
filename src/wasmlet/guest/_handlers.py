"""Choosing the guest ABI for a compiled binary: WAGI for a core module, ``wasi:cli`` for a component."""

from __future__ import annotations

from typing import Protocol

import wasmtime
import wasmtime.component

from ..plan import ComponentSpec
from ._component import ComponentHandler
from ._imports import check_component_imports, check_imports, preopens
from ._runner import GuestLimits, GuestResult, WagiHandler, check_module
from ._sleep import define_deadline_poll
from ._wagi import CgiRequest
from ._wasi_http import define_wasi_http

__all__ = ["Handler", "Linkers", "build_handler"]


class Handler(Protocol):
    name: str

    def handle(self, request: CgiRequest, traceparent: str = "") -> GuestResult: ...


class Linkers:
    """The linkers of one engine, built once and shared by every handler."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        self.engine = engine
        self.core = wasmtime.Linker(engine)
        self.core.define_wasi()
        define_deadline_poll(self.core, engine)  # sleeping is bounded by the request deadline
        define_wasi_http(self.core)  # outbound HTTP, enforced per component by its allowedOutboundHosts
        self._component: wasmtime.component.Linker | None = None

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
    if isinstance(compiled, wasmtime.component.Component):
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
