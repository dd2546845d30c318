"""Both kustomizes render every overlay to the same objects: Debian's (kubectl 1.20, kustomize
v2.0.3, package kubernetes-client) and the current one on PATH (kubectl 1.32, kustomize 5.5 here).

Debian's is always there (tests/kubernetes/toolchain.py unpacks its .deb into the cache); the one on
PATH is not on a fresh Debian, where the comparison has nothing to compare and says so (skip) while
every other test in this folder renders with Debian's.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.kubernetes.conftest import DEPLOY, OVERLAYS, render
from tests.kubernetes.toolchain import cache_root, debian_kubectl, path_kubectl, version

CLUSTER_SCOPED = {"Namespace", "PriorityClass"}


def _key(document: dict[str, Any]) -> tuple[str, str, str, str]:
    metadata = document["metadata"]
    return document["apiVersion"], document["kind"], metadata.get("namespace", ""), metadata["name"]


def _current() -> str:
    current = path_kubectl()
    if current is None:
        pytest.skip("no kubectl on PATH: only Debian's kustomize v2.0.3 here, nothing to compare it with")
    if version(current) == version(debian_kubectl()):
        pytest.skip(f"the kubectl on PATH is Debian's {version(current)}: nothing to compare it with")
    return current


def test_debian_s_kubectl_is_the_old_one() -> None:
    """What the comparison is about: the kubectl from Debian's .deb is 1.20 (kustomize v2.0.3)."""
    binary = debian_kubectl()
    assert version(binary).startswith("v1.20."), version(binary)
    assert Path(binary).is_relative_to(cache_root())  # unpacked in the cache, never installed


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_both_kustomizes_render_the_same_objects(overlay: str) -> None:
    current = _current()
    old = render(overlay, debian_kubectl())
    new = render(overlay, current)
    assert len(old) == len(set(map(_key, old))), "duplicate objects"
    # The order differs (kustomize v2 does not know PriorityClass, and puts it last); the objects may not.
    assert sorted(old, key=_key) == sorted(new, key=_key)
    for document in old:  # kustomize v2's namespace transformer would namespace a PriorityClass: none used
        assert ("namespace" in document["metadata"]) == (document["kind"] not in CLUSTER_SCOPED), _key(document)


_HEAD = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"


@pytest.mark.parametrize(("field", "kustomization"), [
    ("components", _HEAD + "bases:\n  - ../../base\ncomponents: []\n"),
    ("labels", _HEAD + "bases:\n  - ../../base\nlabels:\n  - pairs:\n      app.kubernetes.io/part-of: wasmlet\n"),
    ("a directory in resources", _HEAD + "resources:\n  - ../../base\n"),
])
def test_debian_s_kustomize_refuses_what_it_does_not_know(tmp_path: Path, field: str, kustomization: str) -> None:
    """The comparison is not a formality: a field newer than kustomize v2.0.3 fails with Debian's
    kubectl (so the overlays cannot silently start to need a newer one), and renders with the new one."""
    shutil.copytree(DEPLOY, tmp_path / "kubernetes")
    overlay = tmp_path / "kubernetes" / "overlays" / "probe"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(kustomization)
    result = subprocess.run([debian_kubectl(), "kustomize", str(overlay)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0, (field, result.stdout[:200])
    current = path_kubectl()
    if current is not None and version(current) != version(debian_kubectl()):
        assert subprocess.run([current, "kustomize", str(overlay)], capture_output=True,
                              timeout=120).returncode == 0, field
