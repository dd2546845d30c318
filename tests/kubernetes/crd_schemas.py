"""JSON Schemas for the custom resources ``kubernetes-validate`` does not know (it has the core API only).

Written from the fields the projects document, closed (``additionalProperties: false``) at every
level we emit so that a misspelt field fails, and limited to the fields wasmlet writes or may:

- Calico ``projectcalico.org/v3`` ``NetworkPolicy``: the Calico Open Source reference,
  https://docs.tigera.io/calico/latest/reference/resources/networkpolicy (Spec, Rule, EntityRule,
  Ports: "a single integer, a range 'A:B' or a named port"; Protocol: TCP, UDP, ICMP, ICMPv6,
  SCTP, UDPLite or 1-255; Action: Allow, Deny, Log, Pass).
- Prometheus Operator ``monitoring.coreos.com/v1`` ``ServiceMonitor`` and ``PrometheusRule``: the
  API reference, https://prometheus-operator.dev/docs/api-reference/api/ (ServiceMonitorSpec,
  Endpoint, RelabelConfig, PrometheusRuleSpec, RuleGroup, Rule).
"""

from __future__ import annotations

from typing import Any

_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253}
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = {
    "type": "object", "required": ["name"],
    "properties": {"name": _NAME, "namespace": _NAME, "labels": _STRINGS, "annotations": _STRINGS},
    "additionalProperties": False,
}
_LABEL_SELECTOR = {
    "type": "object",
    "properties": {
        "matchLabels": _STRINGS,
        "matchExpressions": {"type": "array", "items": {
            "type": "object", "required": ["key", "operator"],
            "properties": {"key": {"type": "string"}, "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                           "values": {"type": "array", "items": {"type": "string"}}},
            "additionalProperties": False}},
    },
    "additionalProperties": False,
}


def _resource(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {"apiVersion": {"const": api_version}, "kind": {"const": kind}, "metadata": _METADATA,
                       "spec": spec},
        "additionalProperties": False,
    }


# --- Calico ---------------------------------------------------------------------------------------
_PORT = {"oneOf": [{"type": "integer", "minimum": 0, "maximum": 65535},
                   {"type": "string", "pattern": r"^[0-9]{1,5}:[0-9]{1,5}$"},  # a range, both ends included
                   {"type": "string", "pattern": r"^[a-z][-a-z0-9]{0,14}$"}]}  # a named port
_ENTITY = {
    "type": "object",
    "properties": {
        "nets": {"type": "array", "items": {"type": "string"}},
        "notNets": {"type": "array", "items": {"type": "string"}},
        "selector": {"type": "string"}, "notSelector": {"type": "string"},
        "namespaceSelector": {"type": "string"},
        "ports": {"type": "array", "items": _PORT}, "notPorts": {"type": "array", "items": _PORT},
        "serviceAccounts": {"type": "object"}, "services": {"type": "object"},
    },
    "additionalProperties": False,
}
_PROTOCOL = {"oneOf": [{"enum": ["TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite"]},
                       {"type": "integer", "minimum": 1, "maximum": 255}]}
_RULE = {
    "type": "object", "required": ["action"],
    "properties": {
        "action": {"enum": ["Allow", "Deny", "Log", "Pass"]},
        "protocol": _PROTOCOL, "notProtocol": _PROTOCOL, "ipVersion": {"enum": [4, 6]},
        "icmp": {"type": "object"}, "notICMP": {"type": "object"},
        "source": _ENTITY, "destination": _ENTITY, "http": {"type": "object"},
        "metadata": {"type": "object", "properties": {"annotations": _STRINGS}, "additionalProperties": False},
    },
    # "Ports ... only valid with protocol TCP, UDP or SCTP" (the reference's EntityRule table)
    "if": {"anyOf": [{"properties": {"destination": {"required": ["ports"]}}, "required": ["destination"]},
                     {"properties": {"source": {"required": ["ports"]}}, "required": ["source"]}]},
    "then": {"required": ["protocol"], "properties": {"protocol": {"enum": ["TCP", "UDP", "SCTP", 6, 17, 132]}}},
    "additionalProperties": False,
}
CALICO_NETWORK_POLICY = _resource("projectcalico.org/v3", "NetworkPolicy", {
    "type": "object",
    "properties": {
        "order": {"type": "number"}, "tier": {"type": "string"}, "selector": {"type": "string"},
        "types": {"type": "array", "items": {"enum": ["Ingress", "Egress"]}, "uniqueItems": True},
        "ingress": {"type": "array", "items": _RULE}, "egress": {"type": "array", "items": _RULE},
        "serviceAccountSelector": {"type": "string"}, "performanceHints": {"type": "array"},
    },
    "additionalProperties": False,
})

# --- Prometheus Operator --------------------------------------------------------------------------
_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
                                          r"(([0-9]+)s)?(([0-9]+)ms)?)$"}
_RELABEL = {
    "type": "object",
    "properties": {
        "sourceLabels": {"type": "array", "items": {"type": "string"}}, "separator": {"type": "string"},
        "targetLabel": {"type": "string"}, "regex": {"type": "string"}, "modulus": {"type": "integer"},
        "replacement": {"type": "string"},
        "action": {"enum": ["replace", "Replace", "keep", "Keep", "drop", "Drop", "hashmod", "HashMod", "labelmap",
                            "LabelMap", "labeldrop", "LabelDrop", "labelkeep", "LabelKeep", "lowercase", "Lowercase",
                            "uppercase", "Uppercase", "keepequal", "KeepEqual", "dropequal", "DropEqual"]},
    },
    "additionalProperties": False,
}
_ENDPOINT = {
    "type": "object",
    "properties": {
        "port": {"type": "string"}, "targetPort": {"type": ["string", "integer"]}, "path": {"type": "string"},
        "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]}, "params": {"type": "object"},
        "interval": _DURATION, "scrapeTimeout": _DURATION, "honorLabels": {"type": "boolean"},
        "honorTimestamps": {"type": "boolean"}, "tlsConfig": {"type": "object"},
        "bearerTokenSecret": {"type": "object"}, "authorization": {"type": "object"},
        "basicAuth": {"type": "object"}, "oauth2": {"type": "object"},
        "relabelings": {"type": "array", "items": _RELABEL}, "metricRelabelings": {"type": "array", "items": _RELABEL},
        "followRedirects": {"type": "boolean"}, "enableHttp2": {"type": "boolean"},
        "filterRunning": {"type": "boolean"},
        "proxyUrl": {"type": "string"},
    },
    "additionalProperties": False,
}
SERVICE_MONITOR = _resource("monitoring.coreos.com/v1", "ServiceMonitor", {
    "type": "object", "required": ["selector", "endpoints"],
    "properties": {
        "jobLabel": {"type": "string"}, "targetLabels": {"type": "array", "items": {"type": "string"}},
        "podTargetLabels": {"type": "array", "items": {"type": "string"}},
        "endpoints": {"type": "array", "items": _ENDPOINT, "minItems": 1},
        "selector": _LABEL_SELECTOR,
        "namespaceSelector": {"type": "object", "properties": {
            "any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}},
            "additionalProperties": False},
        "sampleLimit": {"type": "integer", "minimum": 0}, "targetLimit": {"type": "integer", "minimum": 0},
        "attachMetadata": {"type": "object"}, "scrapeClass": {"type": "string"},
    },
    "additionalProperties": False,
})
_RULE_ENTRY = {
    "type": "object", "required": ["expr"],
    "properties": {
        "alert": {"type": "string"}, "record": {"type": "string"}, "expr": {"type": ["string", "integer"]},
        "for": _DURATION, "keep_firing_for": _DURATION, "labels": _STRINGS, "annotations": _STRINGS,
    },
    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
    "additionalProperties": False,
}
PROMETHEUS_RULE = _resource("monitoring.coreos.com/v1", "PrometheusRule", {
    "type": "object",
    "properties": {"groups": {"type": "array", "items": {
        "type": "object", "required": ["name"],
        "properties": {"name": {"type": "string", "minLength": 1}, "labels": _STRINGS, "interval": _DURATION,
                       "query_offset": _DURATION, "limit": {"type": "integer"},
                       "partial_response_strategy": {"type": "string"},
                       "rules": {"type": "array", "items": _RULE_ENTRY}},
        "additionalProperties": False}}},
    "additionalProperties": False,
})

SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("projectcalico.org/v3", "NetworkPolicy"): CALICO_NETWORK_POLICY,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PROMETHEUS_RULE,
}
