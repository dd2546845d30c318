"""The plan: what the control side and the workers share, and nothing else.

A pure leaf: it imports only pydantic, PyYAML and ``wasmlet._errors``, and
importing it loads no engine, HTTP client or cryptography
(``tests/test_layers.py`` checks it). It holds

- the OAM ``Application`` manifest schema and loader (``load_manifest``,
  ``parse_manifest``, ``assign_routes``), quantities and durations;
- ``ComponentSpec``, what a manifest's component becomes once valid, with
  typed ``Capabilities``, ``RateLimit`` and ``Concurrency``;
- the ``Plan`` with its components and slots, and the ``EngineSettings``;
- the pure half of the egress policy (patterns, targets, internal addresses);
- ``wasm_kind``: a module, a component, or what the bytes are instead;
- Kubernetes objects for an app (``render_app_resources``): its NetworkPolicies (Kubernetes and
  Calico) from its egress allow-list (``egress_rules``), and a ConfigMap and Job that deploy it;
- placement in a lattice: the placement traits (``SUPPORTED_TRAITS``) and the
  ``Placement`` they make, the seed's Kubernetes ``Node`` and ``PriorityClass``
  (``load_nodes``, ``load_priority_classes``), and ``place``, a pure function
  from ``Workload``s and ``Node``s to a ``PlacementResult``.
"""

from ._binary import WASM_MAGIC, wasm_kind
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
from ._k8s_render import RenderOptions, render_app_resources
from ._kube import (
    UNSCHEDULABLE_TAINT,
    ZONE_LABEL,
    Node,
    PriorityClass,
    load_nodes,
    load_priority_classes,
    parse_nodes,
    parse_priority_classes,
)
from ._loader import (
    MAX_MANIFEST_BYTES,
    assign_routes,
    decode_manifest,
    field_path,
    load_manifest,
    parse_manifest,
    parse_manifest_bytes,
)
from ._manifest import Application, Concurrency, RateLimit, WasmProperties
from ._netpolicy import (
    EgressRule,
    calico_network_policy,
    egress_rules,
    kubernetes_network_policy,
    parse_labels,
)
from ._placement import PlacementResult, Workload, place
from ._plan import LatticeLink, Plan, PlannedComponent, RemoteApp, Slot
from ._quantity import parse_duration, parse_quantity
from ._scheduling import (
    MAX_REPLICAS,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    Placement,
    SpreadConstraint,
    Taint,
    Toleration,
)
from ._spec import ComponentSpec
from ._traits import SUPPORTED_TRAITS

__all__ = [
    "ALL_WASI_P1",
    "FILES_READ_IMPORTS",
    "FILES_WRITE_IMPORTS",
    "HANDLER_IMPORTS",
    "HTTP_IMPORTS",
    "MAX_MANIFEST_BYTES",
    "MAX_REPLICAS",
    "SUPPORTED_TRAITS",
    "UNSCHEDULABLE_TAINT",
    "WASI_HTTP",
    "WASI_P1",
    "WASM_MAGIC",
    "WELL_KNOWN_PORTS",
    "ZONE_LABEL",
    "AllowedHost",
    "Application",
    "Capabilities",
    "ComponentSpec",
    "Concurrency",
    "EgressRule",
    "EngineSettings",
    "FileMount",
    "IPAddress",
    "LatticeLink",
    "Node",
    "NodeSelectorRequirement",
    "NodeSelectorTerm",
    "Placement",
    "PlacementResult",
    "Plan",
    "PlannedComponent",
    "PriorityClass",
    "RateLimit",
    "RemoteApp",
    "RenderOptions",
    "Slot",
    "SpreadConstraint",
    "Taint",
    "Target",
    "Toleration",
    "WasmProperties",
    "Workload",
    "allowed_imports",
    "assign_routes",
    "calico_network_policy",
    "decode_manifest",
    "egress_rules",
    "field_path",
    "is_allowed",
    "is_internal",
    "kubernetes_network_policy",
    "load_manifest",
    "load_nodes",
    "load_priority_classes",
    "parse_allowed_host",
    "parse_allowed_hosts",
    "parse_duration",
    "parse_labels",
    "parse_manifest",
    "parse_manifest_bytes",
    "parse_nodes",
    "parse_priority_classes",
    "parse_quantity",
    "parse_target",
    "place",
    "render_app_resources",
    "wasm_kind",
]
