"""The plan: what the control side and the workers share, and nothing else.

A pure leaf: it imports only pydantic, PyYAML and ``wasmlet._errors``, and
importing it loads no engine, HTTP client or cryptography
(``tests/test_layers.py`` checks it). It holds

- the OAM ``Application`` manifest schema and loader (``load_manifest``,
  ``parse_manifest``, ``assign_routes``), quantities and durations;
- ``ComponentSpec``, what a manifest's component becomes once valid, with
  typed ``Capabilities``, ``RateLimit`` and ``Concurrency``;
- the ``Plan`` with its components and slots, and the ``EngineSettings``;
- the pure half of the egress policy (patterns, targets, internal addresses).
"""

from ._capabilities import (
    ALL_WASI_P1,
    FILES_READ_IMPORTS,
    FILES_WRITE_IMPORTS,
    HANDLER_IMPORTS,
    HTTP_IMPORTS,
    WASI_HTTP,
    WASI_P1,
    Capabilities,
    FileMount,
    allowed_imports,
)
from ._egress import (
    WELL_KNOWN_PORTS,
    AllowedHost,
    IPAddress,
    Target,
    is_allowed,
    is_internal,
    parse_allowed_host,
    parse_allowed_hosts,
    parse_target,
)
from ._engine import EngineSettings
from ._loader import assign_routes, field_path, load_manifest, parse_manifest
from ._manifest import Application, Concurrency, RateLimit, WasmProperties
from ._plan import Plan, PlannedComponent, Slot
from ._quantity import parse_duration, parse_quantity
from ._spec import ComponentSpec

__all__ = [
    "ALL_WASI_P1",
    "FILES_READ_IMPORTS",
    "FILES_WRITE_IMPORTS",
    "HANDLER_IMPORTS",
    "HTTP_IMPORTS",
    "WASI_HTTP",
    "WASI_P1",
    "WELL_KNOWN_PORTS",
    "AllowedHost",
    "Application",
    "Capabilities",
    "ComponentSpec",
    "Concurrency",
    "EngineSettings",
    "FileMount",
    "IPAddress",
    "Plan",
    "PlannedComponent",
    "RateLimit",
    "Slot",
    "Target",
    "WasmProperties",
    "allowed_imports",
    "assign_routes",
    "field_path",
    "is_allowed",
    "is_internal",
    "load_manifest",
    "parse_allowed_host",
    "parse_allowed_hosts",
    "parse_duration",
    "parse_manifest",
    "parse_quantity",
    "parse_target",
]
