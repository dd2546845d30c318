"""The host side of the ``wasi:http/proxy`` world (0.2.x), in Python.

- ``_abi``: host functions through the C API, with lean argument decoding
  and result encoders;
- ``_state``: one request's resource table, response and log, bound to the thread;
- ``_io``: ``wasi:io`` error, poll, streams (in memory, or a request body
  as it arrives: ``SourceStream``); ``_http``: ``wasi:http/types``;
  ``_outgoing``: ``wasi:http/outgoing-handler`` behind the egress policy;
  ``_cli``: ``wasi:cli``, ``wasi:clocks``, ``wasi:random``; ``_deny``:
  ``wasi:filesystem`` and ``wasi:sockets`` as clean denials;
- ``_linker``: a component's linker from its imports (and ``Extension`` for
  host functions from elsewhere); ``_handler``: ``ProxyHandler``.
"""

from ._handler import ProxyHandler, find_handler_export
from ._linker import Extension, Imports, build_proxy_linker, component_interfaces, missing_imports

__all__ = [
    "Extension",
    "Imports",
    "ProxyHandler",
    "build_proxy_linker",
    "component_interfaces",
    "find_handler_export",
    "missing_imports",
]
