"""``wasmlet k8s render``: a YAML stream on stdout that validates, and clear errors for what it cannot render."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from tests.kubernetes.conftest import SEED, validate

WASMLET = [sys.executable, "-m", "wasmlet"]


def _render(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WASMLET, "k8s", "render", *args], capture_output=True, text=True, timeout=60)


def _manifest(path: Path, name: str, hosts: list[str]) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "core.oam.dev/v1beta1", "kind": "Application", "metadata": {"name": name},
        "spec": {"components": [{"name": "web", "type": "wasm", "properties": {
            "moduleURL": "oci://registry.example.com/shop/web:v1",
            "capabilities": {"allowedOutboundHosts": hosts}}}]}}))
    return path


def test_render_prints_objects_that_validate(tmp_path: Path) -> None:
    shop = _manifest(tmp_path / "shop.yaml", "shop", ["postgres://db:5432", "https://10.0.0.0/8:443"])
    result = _render(str(SEED), str(shop), "--peer", "db=tier=database", "--namespace", "wasmlet")
    assert result.returncode == 0, result.stderr
    objects = list(yaml.safe_load_all(result.stdout))
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("ConfigMap", "wasmlet-app-image-processor"), ("Job", objects[1]["metadata"]["name"]),
        ("NetworkPolicy", "image-processor-egress"), ("NetworkPolicy", "image-processor-egress"),
        ("ConfigMap", "wasmlet-app-shop"), ("Job", objects[5]["metadata"]["name"]),
        ("NetworkPolicy", "shop-egress"), ("NetworkPolicy", "shop-egress"),
    ]
    for document in objects:
        validate(document)
        assert document["metadata"]["namespace"] == "wasmlet"
    assert objects[1]["metadata"]["name"].startswith("wasmlet-deploy-image-processor-")
    # The ConfigMap holds the Application alone (not the seed's Node, PriorityClass, Calico policy).
    assert [d["kind"] for d in yaml.safe_load_all(objects[0]["data"]["app.yaml"])] == ["Application"]
    # Same input, same output: a GitOps diff shows only real changes.
    again = _render(str(SEED), str(shop), "--peer", "db=tier=database", "--namespace", "wasmlet")
    assert again.stdout == result.stdout


def test_a_changed_app_gets_a_new_deploy_job(tmp_path: Path) -> None:
    first = _render(str(_manifest(tmp_path / "a.yaml", "shop", ["https://10.0.0.1"])), "--policies-only")
    assert [o["kind"] for o in yaml.safe_load_all(first.stdout)] == ["NetworkPolicy", "NetworkPolicy"]
    jobs = []
    for hosts in (["https://10.0.0.1"], ["https://10.0.0.2"]):
        result = _render(str(_manifest(tmp_path / "a.yaml", "shop", hosts)))
        jobs.append(next(o for o in yaml.safe_load_all(result.stdout) if o["kind"] == "Job")["metadata"]["name"])
    assert jobs[0] != jobs[1]


def test_errors_name_the_file_and_field(tmp_path: Path) -> None:
    shop = _manifest(tmp_path / "shop.yaml", "shop", ["https://api.example.com"])
    result = _render(str(shop))
    assert result.returncode == 1 and result.stdout == ""
    assert f"error: {shop}: invalid manifest" in result.stderr
    assert "spec.components[0].properties.capabilities.allowedOutboundHosts[0]" in result.stderr
    assert "Traceback" not in result.stderr

    bad = _manifest(tmp_path / "bad.yaml", "bad", ["https://10.0.0.0/40"])
    result = _render(str(bad))
    assert result.returncode == 1 and "allowedOutboundHosts" in result.stderr and str(bad) in result.stderr

    everything = _manifest(tmp_path / "all.yaml", "all", ["*://*:*"])
    result = _render(str(everything))
    assert result.returncode == 1 and "all egress" in result.stderr
    result = _render(str(everything), "--allow-all-egress", "--policies-only")
    assert result.returncode == 0
    policy = next(yaml.safe_load_all(result.stdout))
    assert policy["spec"]["egress"] == [{}] and "ALL egress" in policy["metadata"]["annotations"]["wasmlet.dev/notes"]

    for args, message in ((["--peer", "db"], "--peer 'db'"), (["--peer", "db=tier=x'y"], "label value"),
                          (["--pod-label", "app"], "--pod-label"),
                          (["--policy-name", "p", str(SEED)], "one manifest")):
        result = _render(str(shop), *args)
        assert result.returncode == 1 and message in result.stderr, (args, result.stderr)
    missing = _render(str(tmp_path / "absent.yaml"))
    assert missing.returncode == 1 and "absent.yaml" in missing.stderr and "Traceback" not in missing.stderr
