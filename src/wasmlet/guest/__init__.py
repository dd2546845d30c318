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
"""

from ._component import ComponentHandler, build_component_linker, find_run_export
from ._egress import CheckedTarget, Resolver, resolve_and_check, system_resolver
from ._handlers import Handler, Linkers, build_handler
from ._imports import Preopen, check_component_imports, check_imports, component_imports, offending_imports, preopens
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
