"""Guest ABIs and their sandbox: how one request runs in one fresh instance.

- ABIs: WAGI (CGI over WASI preview 1; ``_wagi`` is the pure CGI mapping,
  ``_runner`` runs it), ``wasi:cli`` components (``_component``) and
  ``wasi:http/proxy`` components (``_proxy``, whose host side of WASI 0.2 is
  Python);
- the sandbox: the import whitelist checked at deploy and the directories an
  instance gets (``_imports``, for modules and components alike), the egress
  check after DNS (``_egress``), and the ``wasi_experimental_http`` host
  functions behind it (``_wasi_http``);
- the deadline inside host calls: ``poll_oneoff`` bounded by it (``_sleep``),
  and outbound requests that end by it (``_deadline_io``).

Names load on first use (PEP 562), as in ``wasmlet.plan``: what imports one name
from here loads its module, not the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

if TYPE_CHECKING:  # the names below, for type checkers; at run time they load on first use
    from ._component import ComponentHandler, build_component_linker, find_run_export
    from ._egress import CheckedTarget, Resolver, resolve_and_check, system_resolver
    from ._handlers import Handler, Linkers, build_handler
    from ._imports import (
        Preopen,
        check_component_imports,
        check_imports,
        component_imports,
        offending_imports,
        preopens,
    )
    from ._proxy import Extension, ProxyHandler, find_handler_export
    from ._runner import GuestLimits, GuestResult, GuestStats, WagiHandler, check_module
    from ._spin import KeyValueHost, KvLimits, remove_app_store, spin_extension
    from ._stdio import remove_scratch_root, scratch_files
    from ._wagi import CgiRequest, CgiResponse, build_argv, build_environment, parse_cgi_response
    from ._wasi_http import (
        CALL_DEPTH_HEADER,
        INTERNAL_SUFFIX,
        MAX_CALL_DEPTH,
        HttpError,
        InternalCall,
        OutboundContext,
        define_wasi_http,
        outbound_context,
        preload_http_client,
        set_internal_caller,
    )

# Each public name and the private module that defines it.
_WHERE = {
    "ComponentHandler": "._component",
    "build_component_linker": "._component",
    "find_run_export": "._component",
    "CheckedTarget": "._egress",
    "Resolver": "._egress",
    "resolve_and_check": "._egress",
    "system_resolver": "._egress",
    "Handler": "._handlers",
    "Linkers": "._handlers",
    "build_handler": "._handlers",
    "Preopen": "._imports",
    "check_component_imports": "._imports",
    "check_imports": "._imports",
    "component_imports": "._imports",
    "offending_imports": "._imports",
    "preopens": "._imports",
    "Extension": "._proxy",
    "ProxyHandler": "._proxy",
    "find_handler_export": "._proxy",
    "GuestLimits": "._runner",
    "GuestResult": "._runner",
    "GuestStats": "._runner",
    "WagiHandler": "._runner",
    "check_module": "._runner",
    "KeyValueHost": "._spin",
    "KvLimits": "._spin",
    "remove_app_store": "._spin",
    "spin_extension": "._spin",
    "remove_scratch_root": "._stdio",
    "scratch_files": "._stdio",
    "CgiRequest": "._wagi",
    "CgiResponse": "._wagi",
    "build_argv": "._wagi",
    "build_environment": "._wagi",
    "parse_cgi_response": "._wagi",
    "CALL_DEPTH_HEADER": "._wasi_http",
    "INTERNAL_SUFFIX": "._wasi_http",
    "MAX_CALL_DEPTH": "._wasi_http",
    "HttpError": "._wasi_http",
    "InternalCall": "._wasi_http",
    "OutboundContext": "._wasi_http",
    "define_wasi_http": "._wasi_http",
    "outbound_context": "._wasi_http",
    "preload_http_client": "._wasi_http",
    "set_internal_caller": "._wasi_http",
}

__all__ = [
    "CALL_DEPTH_HEADER",
    "INTERNAL_SUFFIX",
    "MAX_CALL_DEPTH",
    "CgiRequest",
    "CgiResponse",
    "CheckedTarget",
    "ComponentHandler",
    "Extension",
    "GuestLimits",
    "GuestResult",
    "GuestStats",
    "Handler",
    "HttpError",
    "InternalCall",
    "KeyValueHost",
    "KvLimits",
    "Linkers",
    "OutboundContext",
    "Preopen",
    "ProxyHandler",
    "Resolver",
    "WagiHandler",
    "build_argv",
    "build_component_linker",
    "build_environment",
    "build_handler",
    "check_component_imports",
    "check_imports",
    "check_module",
    "component_imports",
    "define_wasi_http",
    "find_handler_export",
    "find_run_export",
    "offending_imports",
    "outbound_context",
    "parse_cgi_response",
    "preload_http_client",
    "preopens",
    "remove_app_store",
    "remove_scratch_root",
    "resolve_and_check",
    "scratch_files",
    "set_internal_caller",
    "spin_extension",
    "system_resolver",
]


__getattr__, __dir__ = lazy_names(__name__, _WHERE, __all__)
