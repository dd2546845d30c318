"""The Kubernetes deployment as ``kubectl kustomize`` renders it, and validation of what it renders.

Rendered with the ``kubectl`` on PATH (here the ``kubectl`` package 1:528.0.0-0: kubectl 1.32.4,
kustomize 5.5.0), else with Debian bookworm's ``kubernetes-client`` (kubectl 1.20, kustomize 2.0.3)
unpacked into the cache (tests/kubernetes/toolchain.py); test_kustomize_versions.py renders with
both and compares. The core
objects are validated with ``kubernetes-validate`` (PyPI; the OpenAPI schemas of the Kubernetes
releases, in strict mode: unknown fields fail); the custom resources with ``crd_schemas``.
No API server runs here: docs/kubernetes.md says what that leaves unchecked.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from tests.kubernetes.crd_schemas import SCHEMAS
from tests.kubernetes.toolchain import kubectl

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if (p / "kustomization.yaml").exists())
SEED = ROOT / "tests" / "fixtures" / "seed-stream.yaml"
# The newest Kubernetes release whose OpenAPI schemas kubernetes-validate ships (1.37.0 with 1.37.0).
K8S_VERSION = kubernetes_validate.latest_version()


@functools.cache
def render(overlay: str, binary: str | None = None) -> tuple[dict[str, Any], ...]:
    """``kubectl kustomize deploy/kubernetes/overlays/OVERLAY`` (``binary``: that kubectl), parsed.

    Newer kustomize warns on stderr that ``bases`` and ``patches*`` are deprecated: only stdout counts.
    """
    result = subprocess.run([binary or kubectl(), "kustomize", str(DEPLOY / "overlays" / overlay)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d is not None)


def find(objects: tuple[dict[str, Any], ...] | list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def validate(document: dict[str, Any]) -> None:
    """Raise (``kubernetes_validate.ValidationError`` or ``jsonschema.ValidationError``) unless valid."""
    schema = SCHEMAS.get((document.get("apiVersion", ""), document.get("kind", "")))
    if schema is not None:
        jsonschema.Draft202012Validator(schema).validate(document)
        return
    kubernetes_validate.validate(document, K8S_VERSION, strict=True)
