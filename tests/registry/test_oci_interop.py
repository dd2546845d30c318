"""Interoperability with another OCI client: artifacts pushed by oras-py deploy on wasmlet, and back."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import oras.client
import pytest
import yaml
from tests.conftest import deploy_plan

from wasmlet.engine import BlobStore
from wasmlet.registry import pull_module, push_module

ROOT = Path(__file__).resolve().parents[2]
HELLO_PATH = ROOT / "examples" / "hello" / "hello.wasm"
HELLO = HELLO_PATH.read_bytes()
HELLO_HEX = hashlib.sha256(HELLO).hexdigest()


@pytest.fixture
def oras_push(registry: Any, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str, str, dict[str, Any]], None]:
    # oras-py validates that pushed files sit under the working directory; push from a scratch dir.
    work = tmp_path / "oras"
    work.mkdir()
    shutil.copyfile(HELLO_PATH, work / "hello.wasm")
    monkeypatch.chdir(work)
    logging.getLogger("oras").setLevel(logging.WARNING)

    def push(name: str, layer_type: str, config_type: str, config: dict[str, Any]) -> None:
        (work / "config.json").write_text(json.dumps(config))
        client = oras.client.OrasClient(hostname=registry.host, insecure=True)
        response = client.push(target=f"{registry.host}/{name}", files=[f"hello.wasm:{layer_type}"],
                               manifest_config=f"config.json:{config_type}")
        assert response.status_code == 201

    return push


def test_artifact_pushed_by_oras_deploys(registry: Any, oras_push: Callable[..., None], tmp_path: Path,
                                         isolated: Path, serve_once: Callable[..., bytes]) -> None:
    oras_push("interop/hello:v1", "application/wasm", "application/vnd.wasm.config.v0+json", {
        "created": "2024-01-01T00:00:00Z", "architecture": "wasm", "os": "wasip1",
        "layerDigests": [f"sha256:{HELLO_HEX}"],
    })
    app = tmp_path / "app.yaml"
    app.write_text(yaml.safe_dump({
        "apiVersion": "core.oam.dev/v1beta1", "kind": "Application", "metadata": {"name": "interop"},
        "spec": {"components": [{"name": "hello", "type": "wasm", "properties": {
            "moduleURL": registry.ref("interop/hello:v1"), "memoryLimit": "16Mi"}}]},
    }))
    plan = deploy_plan([app], cache_dir=isolated)
    assert plan.components[0].digest == HELLO_HEX
    assert serve_once(plan, "interop/hello") == b"Hello, world!\n"


def test_older_wasm_to_oci_layout_pulls(registry: Any, oras_push: Callable[..., None], isolated: Path) -> None:
    oras_push("interop/legacy:v1", "application/vnd.wasm.content.layer.v1+wasm",
              "application/vnd.wasm.config.v1+json", {})
    pulled = pull_module(registry.ref("interop/legacy:v1"), BlobStore(isolated))
    assert pulled.data == HELLO


def test_oras_pulls_what_wasmlet_pushed(registry: Any, tmp_path: Path) -> None:
    push_module(HELLO, registry.ref("interop/frompush:v1"), title="hello.wasm")
    client = oras.client.OrasClient(hostname=registry.host, insecure=True)
    files = client.pull(target=f"{registry.host}/interop/frompush:v1", outdir=str(tmp_path / "out"))
    assert [Path(f).name for f in files] == ["hello.wasm"]
    assert Path(files[0]).read_bytes() == HELLO
