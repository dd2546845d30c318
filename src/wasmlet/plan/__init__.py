"""The plan: what the control side and the workers share, and nothing else.

A pure leaf: it imports only pydantic, PyYAML, ``wasmlet._errors`` and ``wasmlet._lazy``, and
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

Names load on first use (PEP 562), as in ``wasmlet.control``: a worker needs the
``Plan`` and the specs, not the YAML loader, the Kubernetes renderer or placement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

if TYPE_CHECKING:  # the names below, for type checkers; at run time they load on first use
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
    from ._engine import EngineSettings, wasmtime_version
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
    from ._limits import Concurrency, RateLimit
    from ._loader import (
        MAX_MANIFEST_BYTES,
        assign_routes,
        decode_manifest,
        field_path,
        load_manifest,
        parse_manifest,
        parse_manifest_bytes,
    )
    from ._manifest import Application, WasmProperties
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

# Each public name and the private module that defines it.
_WHERE = {
    "ALL_WASI_P1": "._capabilities",
    "AllowedHost": "._egress",
    "Application": "._manifest",
    "Capabilities": "._capabilities",
    "ComponentSpec": "._spec",
    "Concurrency": "._limits",
    "EgressRule": "._netpolicy",
    "EngineSettings": "._engine",
    "wasmtime_version": "._engine",
    "FILES_READ_IMPORTS": "._capabilities",
    "FILES_WRITE_IMPORTS": "._capabilities",
    "FileMount": "._capabilities",
    "HANDLER_IMPORTS": "._capabilities",
    "HTTP_IMPORTS": "._capabilities",
    "IPAddress": "._egress",
    "LatticeLink": "._plan",
    "MAX_MANIFEST_BYTES": "._loader",
    "MAX_REPLICAS": "._scheduling",
    "Node": "._kube",
    "NodeSelectorRequirement": "._scheduling",
    "NodeSelectorTerm": "._scheduling",
    "Placement": "._scheduling",
    "PlacementResult": "._placement",
    "Plan": "._plan",
    "PlannedComponent": "._plan",
    "PriorityClass": "._kube",
    "RateLimit": "._limits",
    "RemoteApp": "._plan",
    "RenderOptions": "._k8s_render",
    "SUPPORTED_TRAITS": "._traits",
    "Slot": "._plan",
    "SpreadConstraint": "._scheduling",
    "Taint": "._scheduling",
    "Target": "._egress",
    "Toleration": "._scheduling",
    "UNSCHEDULABLE_TAINT": "._kube",
    "WASI_HTTP": "._capabilities",
    "WASI_P1": "._capabilities",
    "WASM_MAGIC": "._binary",
    "WELL_KNOWN_PORTS": "._egress",
    "WasmProperties": "._manifest",
    "Workload": "._placement",
    "ZONE_LABEL": "._kube",
    "allowed_imports": "._capabilities",
    "assign_routes": "._loader",
    "calico_network_policy": "._netpolicy",
    "decode_manifest": "._loader",
    "egress_rules": "._netpolicy",
    "field_path": "._loader",
    "is_allowed": "._egress",
    "is_internal": "._egress",
    "kubernetes_network_policy": "._netpolicy",
    "load_manifest": "._loader",
    "load_nodes": "._kube",
    "load_priority_classes": "._kube",
    "parse_allowed_host": "._egress",
    "parse_allowed_hosts": "._egress",
    "parse_duration": "._quantity",
    "parse_labels": "._netpolicy",
    "parse_manifest": "._loader",
    "parse_manifest_bytes": "._loader",
    "parse_nodes": "._kube",
    "parse_priority_classes": "._kube",
    "parse_quantity": "._quantity",
    "parse_target": "._egress",
    "place": "._placement",
    "render_app_resources": "._k8s_render",
    "wasm_kind": "._binary",
}

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
    "wasmtime_version",
]


__getattr__, __dir__ = lazy_names(__name__, _WHERE, __all__)
