"""KubeVela ``traits``, ``policies`` and ``workflow`` are refused, not silently ignored (issue 10, item 12).

A user who writes ``traits: [{type: gateway}]`` expects an ingress; a trait
wasmlet does not implement is refused with its type, its field path and the
trait types that are supported (the lattice's placement traits, or none), by
``validate`` and by every way of deploying it, before anything is recorded.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import EXAMPLES, Server

from wasmlet.plan._manifest import SUPPORTED_TRAITS

HELLO = EXAMPLES / "hello" / "hello.wasm"


def wasmlet(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wasmlet", *args], capture_output=True, text=True, timeout=60,
                          env=env)


def manifest(tmp_path: Path, extra_component: str = "", extra_spec: str = "") -> Path:
    path = tmp_path / "app.yaml"
    path.write_text(f"""\
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: shop
spec:
  components:
    - name: web
      type: wasm
      properties:
        moduleURL: {HELLO}
        route: /
    - name: api
      type: wasm
      properties:
        moduleURL: {HELLO}
        route: /api
{extra_component}{extra_spec}""")
    return path


TRAITS = """\
      traits:
        - type: gateway
          properties: {domain: shop.example.com}
        - type: sidecar
          properties: {name: proxy, image: envoy}
"""


def test_a_trait_is_refused_with_its_type_and_path(tmp_path: Path) -> None:
    result = wasmlet("validate", str(manifest(tmp_path, TRAITS)))
    assert result.returncode == 1
    assert "app.yaml: invalid manifest" in result.stderr
    supported = ", ".join(SUPPORTED_TRAITS) or "none yet"
    assert "spec.components[1].traits[0].type: trait type 'gateway' is not supported by wasmlet " \
           f"(supported traits: {supported}); remove it, or deploy this Application with KubeVela" in result.stderr
    assert "spec.components[1].traits[1].type: trait type 'sidecar' is not supported" in result.stderr
    assert result.stdout == ""


def test_a_trait_without_a_type_names_the_field(tmp_path: Path) -> None:
    result = wasmlet("validate", str(manifest(tmp_path, "      traits:\n        - properties: {replicas: 2}\n")))
    assert result.returncode == 1
    assert "spec.components[1].traits[0].type: required field is missing" in result.stderr


def test_policies_and_a_workflow_are_refused(tmp_path: Path) -> None:
    spec = """\
  policies:
    - name: two-clusters
      type: topology
      properties: {clusters: [local, edge]}
  workflow:
    steps:
      - name: approve
        type: suspend
"""
    result = wasmlet("validate", str(manifest(tmp_path, extra_spec=spec)))
    assert result.returncode == 1
    assert "spec.policies[0].type: policy type 'topology' is not supported by wasmlet (supported policies: " \
           "none yet)" in result.stderr
    assert "spec.workflow: a KubeVela workflow is not supported by wasmlet" in result.stderr


def test_empty_lists_and_other_oam_fields_are_still_accepted(tmp_path: Path) -> None:
    component = "      traits: []\n      dependsOn: [web]\n"
    result = wasmlet("validate", str(manifest(tmp_path, component, "  policies: []\n")))
    assert result.returncode == 0, result.stderr
    assert "ok  shop/api  route=/api" in result.stdout


def test_serve_refuses_before_recording_anything(tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = wasmlet("serve", str(manifest(tmp_path, TRAITS)), "--listen", "127.0.0.1:0", "--admin-listen", "none",
                     "--state-dir", str(state))
    assert result.returncode == 1
    assert "spec.components[1].traits[0].type: trait type 'gateway' is not supported" in result.stderr
    if (state / "state.db").exists():
        db = sqlite3.connect(state / "state.db")
        try:
            assert db.execute("SELECT COUNT(*) FROM versions").fetchone()[0] == 0
        finally:
            db.close()


def test_deploy_to_a_running_host_refuses_and_keeps_serving(serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve(str(EXAMPLES / "hello" / "app.yaml"), "--allow-files", str(EXAMPLES))
    env = {**os.environ, "WASMLET_ADMIN": server.admin_url, "WASMLET_STATE_DIR": str(server.state_dir)}
    result = wasmlet("deploy", str(manifest(tmp_path, TRAITS)), env=env)
    assert result.returncode == 1
    assert "spec.components[1].traits[0].type: trait type 'gateway' is not supported" in result.stderr
    assert [app["name"] for app in server.admin("GET", "/v1/apps").json()] == ["hello/hello"]
