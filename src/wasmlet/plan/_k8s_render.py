"""What an app needs on Kubernetes, for GitOps: the objects ``wasmlet k8s render`` prints.

For every ``Application`` of a manifest (validated as a deploy would be):

- a ``ConfigMap`` ``wasmlet-app-APP`` holding the Application document;
- a ``Job`` ``wasmlet-deploy-APP-HASH`` that deploys it with ``wasmlet deploy`` through the
  ``wasmlet-admin`` Service (the token from the ``wasmlet-admin-token`` Secret); ``HASH``
  is the document's, so a changed app is a new Job (a Job's pod spec cannot change);
- a ``networking.k8s.io/v1`` ``NetworkPolicy`` and a Calico ``projectcalico.org/v3``
  ``NetworkPolicy`` ``APP-egress`` from the components' ``allowedOutboundHosts``
  (``_netpolicy``), selecting the wasmlet host pods (``application: wasm``).

Pure: text in, plain dicts out. A pattern a policy cannot express is a ``ManifestError``
naming the file and the field (``spec.components[0].properties.capabilities.allowedOutboundHosts[1]``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import yaml

from .._errors import ConfigError, ManifestError
from ._egress import AllowedHost
from ._loader import parse_manifest
from ._netpolicy import (
    DEFAULT_POD_LABELS,
    PolicyError,
    Unmapped,
    calico_network_policy,
    egress_rules,
    kubernetes_network_policy,
)
from ._yaml import load_all

__all__ = ["RenderOptions", "render_app_resources"]

_FIELD = "properties.capabilities.allowedOutboundHosts"
_SECURE = {
    "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
}


@dataclasses.dataclass(frozen=True)
class RenderOptions:
    """How to render (the ``wasmlet k8s render`` flags)."""

    image: str  # the wasmlet image the deploy Job runs
    peers: Mapping[str, tuple[tuple[str, str], ...]] = dataclasses.field(default_factory=dict)
    pod_labels: tuple[tuple[str, str], ...] = DEFAULT_POD_LABELS
    namespace: str | None = None
    unmapped: Unmapped = "refuse"
    allow_all: bool = False
    explicit_deny: bool = False  # end the Calico policy with the seed's explicit Deny rule
    policy_name: str | None = None  # instead of APP-egress (one Application only)
    admin_url: str = "http://wasmlet-admin.wasmlet.svc:9180"
    token_secret: str = "wasmlet-admin-token"
    policies_only: bool = False


def _labels(app: str) -> dict[str, str]:
    return {"app.kubernetes.io/managed-by": "wasmlet", "wasmlet.dev/app": app}


def _metadata(name: str, app: str, options: RenderOptions) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": _labels(app)}
    if options.namespace:
        metadata["namespace"] = options.namespace
    return metadata


def _deploy_objects(app: str, document: dict[str, Any], options: RenderOptions) -> list[dict[str, Any]]:
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(f"wasmlet-app-{app}", app, options),
              "data": {"app.yaml": text}}
    pod = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "deploy",
            "image": options.image,
            "args": ["deploy", "/etc/wasmlet/app/app.yaml"],
            "env": [
                {"name": "WASMLET_ADMIN", "value": options.admin_url},
                {"name": "WASMLET_ADMIN_TOKEN",
                 "valueFrom": {"secretKeyRef": {"name": options.token_secret, "key": "admin-token"}}},
                {"name": "HOME", "value": "/tmp"},
            ],
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
            "securityContext": _SECURE,
            "volumeMounts": [{"name": "app", "mountPath": "/etc/wasmlet/app", "readOnly": True},
                             {"name": "tmp", "mountPath": "/tmp"}],
        }],
        "volumes": [{"name": "app", "configMap": {"name": f"wasmlet-app-{app}"}},
                    {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}],
    }
    # A Job's name is at most 63 characters (it becomes its pods' job-name label).
    job_name = f"wasmlet-deploy-{app[:37].rstrip('-')}-{digest}"
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": _metadata(job_name, app, options),
           "spec": {"backoffLimit": 6, "ttlSecondsAfterFinished": 86400,
                    "template": {"metadata": {"labels": _labels(app)}, "spec": pod}}}
    return [config, job]


def _policies(app: str, prefix: str, patterns: list[tuple[int, int, AllowedHost]], name: str, source: str,
              options: RenderOptions) -> list[dict[str, Any]]:
    notes: list[str] = []
    try:
        rules = egress_rules([p for _, _, p in patterns], options.peers, unmapped=options.unmapped,
                             allow_all=options.allow_all, notes=notes)
    except PolicyError as exc:
        if exc.index < 0:
            components = sorted({c for c, _, _ in patterns})
            where = ", ".join(f"spec.components[{c}].{_FIELD}" for c in components)
            raise ManifestError(source, [(f"{prefix}{where}", str(exc))]) from exc
        component, index, _ = patterns[exc.index]
        raise ManifestError(source, [(f"{prefix}spec.components[{component}].{_FIELD}[{index}]",
                                      str(exc))]) from exc
    annotations = {"wasmlet.dev/allowed-outbound-hosts": json.dumps([p.original for _, _, p in patterns])}
    if notes:
        annotations["wasmlet.dev/notes"] = "; ".join(notes)
    kubernetes = kubernetes_network_policy(name, rules, options.pod_labels, options.namespace, annotations)
    calico = calico_network_policy(name, rules, options.pod_labels, options.namespace, annotations,
                                   explicit_deny=options.explicit_deny)
    for policy in (kubernetes, calico):
        policy["metadata"]["labels"] = _labels(app)
    return [kubernetes, calico]


def render_app_resources(text: str, source: str, options: RenderOptions) -> list[dict[str, Any]]:
    """The objects for every ``Application`` of a manifest (module docstring), in document order.

    Raises ``ManifestError`` (file, field) for an invalid manifest or an allow-list entry a
    policy cannot express; ``ConfigError`` for ``policy_name`` with more than one Application.
    """
    specs = parse_manifest(text, source)  # every problem a deploy would refuse, with its field
    documents = [d for d in load_all(text) if d is not None]
    multiple = len(documents) > 1
    apps = [(i, d) for i, d in enumerate(documents) if isinstance(d, dict) and d.get("kind") == "Application"]
    if options.policy_name and len(apps) > 1:
        raise ConfigError(f"{source}: --policy-name names one policy, and this manifest has {len(apps)} "
                          "Applications; render them one at a time")
    names = [str(d["metadata"]["name"]) for _, d in apps]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ManifestError(source, [("metadata.name", f"Application {twice[0]!r} is declared twice")])
    objects: list[dict[str, Any]] = []
    for number, document in apps:
        app = str(document["metadata"]["name"])
        prefix = f"(document {number + 1}) " if multiple else ""
        own = [s for s in specs if s.app == app]
        patterns = [(c, j, pattern) for c, spec in enumerate(own)
                    for j, pattern in enumerate(spec.capabilities.outbound)]
        if not options.policies_only:
            objects += _deploy_objects(app, document, options)
        objects += _policies(app, prefix, patterns, options.policy_name or f"{app}-egress", source, options)
    return objects
