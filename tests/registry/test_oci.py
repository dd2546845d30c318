"""Push, pull and deploy Wasm OCI artifacts against a real registry (Debian's docker-registry)."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import deploy_plan

from wasmlet import RegistryError
from wasmlet.engine import BlobStore
from wasmlet.registry import pull_module, push_module

ROOT = Path(__file__).resolve().parents[2]
HELLO = (ROOT / "examples" / "hello" / "hello.wasm").read_bytes()
HELLO_HEX = hashlib.sha256(HELLO).hexdigest()
ECHO_PATH = ROOT / "examples" / "echo" / "echo.wasm"
SEED = ROOT / "examples" / "seed" / "app.yaml"


def _manifest(path: Path, module_url: str, **props: Any) -> Path:
    document = {
        "apiVersion": "core.oam.dev/v1beta1",
        "kind": "Application",
        "metadata": {"name": "oci"},
        "spec": {"components": [{"name": "hello", "type": "wasm",
                                 "properties": {"moduleURL": module_url, "memoryLimit": "16Mi", **props}}]},
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wasmlet", *args], capture_output=True, text=True, timeout=120,
                          check=False)


def test_push_then_pull_roundtrip(registry: Any, tmp_path: Path, isolated: Path,
                                  store_files: Callable[[Path], list[str]]) -> None:
    pushed = push_module(HELLO, registry.ref("roundtrip/hello:v1"), blobs=None, title="hello.wasm")
    assert pushed.module_digest == f"sha256:{HELLO_HEX}"
    assert pushed.reference.digest == pushed.manifest_digest

    blobs = BlobStore(isolated)
    pulled = pull_module(registry.ref("roundtrip/hello:v1"), blobs)
    assert pulled.data == HELLO
    assert pulled.module_digest == HELLO_HEX
    assert pulled.manifest_digest == pushed.manifest_digest
    assert str(pulled.reference) == f"{registry.ref('roundtrip/hello:v1')}@{pushed.manifest_digest}"
    # Manifest, config and module, each under its own digest, each intact; and the tag recorded.
    files = store_files(isolated)
    blob_files = [f for f in files if f.startswith("blobs/")]
    assert len(blob_files) == 3
    for name in blob_files:
        assert hashlib.sha256((isolated / name).read_bytes()).hexdigest() == Path(name).name
    tags = json.loads((isolated / "oci" / "tags.json").read_text())["tags"]
    assert tags[f"{registry.host}/roundtrip/hello:v1"]["manifest"] == pushed.manifest_digest
    assert tags[f"{registry.host}/roundtrip/hello:v1"]["module"] == f"sha256:{HELLO_HEX}"
    assert not [f for f in files if ".tmp" in f]

    # A second pull of the tag asks the registry what it names, and reuses the stored blob.
    again = pull_module(registry.ref("roundtrip/hello:v1"), blobs)
    assert again.data == HELLO and not again.offline


def test_pull_by_digest(registry: Any, isolated: Path) -> None:
    pushed = push_module(HELLO, registry.ref("bydigest/hello:v1"))
    blobs = BlobStore(isolated)
    pulled = pull_module(f"{registry.ref('bydigest/hello')}@{pushed.manifest_digest}", blobs)
    assert pulled.data == HELLO
    assert pulled.manifest_digest == pushed.manifest_digest
    # A digest pull names no tag, so the tag index is not touched.
    assert not (isolated / "oci" / "tags.json").exists()


def test_retag_is_followed(registry: Any, isolated: Path, tmp_path: Path) -> None:
    """Tags move: a deploy resolves the tag again and gets the new module."""
    import wasmtime

    other = wasmtime.wat2wasm('(module (func (export "_start")))')
    push_module(HELLO, registry.ref("moving/app:stable"))
    blobs = BlobStore(isolated)
    assert pull_module(registry.ref("moving/app:stable"), blobs).data == HELLO
    push_module(bytes(other), registry.ref("moving/app:stable"))
    assert pull_module(registry.ref("moving/app:stable"), blobs).data == bytes(other)


def test_skopeo_sees_the_wasm_oci_artifact_layout(registry: Any) -> None:
    pushed = push_module(HELLO, registry.ref("layout/hello:v1"), title="hello.wasm")
    image = f"docker://{registry.host}/layout/hello:v1"
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", image],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == pushed.manifest_digest
    manifest = json.loads(raw)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.wasm.config.v0+json"
    assert len(manifest["layers"]) == 1
    layer = manifest["layers"][0]
    assert layer["mediaType"] == "application/wasm"
    assert layer["digest"] == f"sha256:{HELLO_HEX}"
    assert layer["size"] == len(HELLO)
    assert layer["annotations"]["org.opencontainers.image.title"] == "hello.wasm"

    config = json.loads(subprocess.run(["skopeo", "inspect", "--config", "--raw", "--tls-verify=false", image],
                                       capture_output=True, text=True, check=True, timeout=60).stdout)
    assert config["architecture"] == "wasm"
    assert config["os"] == "wasip1"
    assert config["layerDigests"] == [f"sha256:{HELLO_HEX}"]
    assert config["created"].endswith("Z")


def test_deploy_from_oci_module_url(registry: Any, tmp_path: Path, isolated: Path,
                                    caplog: pytest.LogCaptureFixture, serve_once: Callable[..., bytes]) -> None:
    pushed = push_module(HELLO, registry.ref("deploy/hello:v1"))
    manifest = _manifest(tmp_path / "app.yaml", registry.ref("deploy/hello:v1"))
    with caplog.at_level(logging.INFO):
        plan = deploy_plan([manifest], cache_dir=isolated)
    # What gets recorded is the module's sha256; the manifest digest it came from is logged.
    assert plan.components[0].digest == HELLO_HEX
    assert any(pushed.manifest_digest in r.getMessage() and "resolved" in r.getMessage() for r in caplog.records)
    assert serve_once(plan, "oci/hello") == b"Hello, world!\n"


def test_deploy_pinned_by_digest_and_module_digest(registry: Any, tmp_path: Path, isolated: Path) -> None:
    pushed = push_module(HELLO, registry.ref("pinned/hello:v1"))
    url = f"{registry.ref('pinned/hello')}@{pushed.manifest_digest}"
    plan = deploy_plan([_manifest(tmp_path / "ok.yaml", url, moduleDigest=f"sha256:{HELLO_HEX}")], cache_dir=isolated)
    assert plan.components[0].digest == HELLO_HEX

    wrong = "sha256:" + "0" * 64
    with pytest.raises(RegistryError, match="moduleDigest pins") as info:
        deploy_plan([_manifest(tmp_path / "bad.yaml", registry.ref("pinned/hello:v1"), moduleDigest=wrong)],
                   cache_dir=tmp_path / "other-cache")
    assert "component oci/hello" in str(info.value)


def test_seed_manifest_deploys_from_the_registry(registry: Any, tmp_path: Path, isolated: Path,
                                                 serve_once: Callable[..., bytes]) -> None:
    # The seed's module is the echo guest when the examples have it: it shows the environment it was given.
    module = ECHO_PATH.read_bytes() if ECHO_PATH.exists() else HELLO
    push_module(module, registry.ref("wasm/resize:v1.2.0"))
    if SEED.exists():
        text = SEED.read_text(encoding="utf-8")
        assert "oci://registry.acme.com/wasm/resize:v1.2.0" in text
        text = text.replace("registry.acme.com", registry.host)
    else:
        text = yaml.safe_dump({
            "apiVersion": "core.oam.dev/v1beta1", "kind": "Application",
            "metadata": {"name": "image-processor"},
            "spec": {"components": [{"name": "resizer", "type": "wasm", "properties": {
                "moduleURL": registry.ref("wasm/resize:v1.2.0"), "memoryLimit": "128Mi",
                "environment": [{"name": "QUALITY", "value": "85"}]}}]},
        })
    seed = tmp_path / "app.yaml"
    seed.write_text(text, encoding="utf-8")
    plan = deploy_plan([seed], cache_dir=isolated)
    (component,) = plan.components
    assert component.spec.qualified_name == "image-processor/resizer"
    assert component.spec.memory_limit == 128 * 1024 * 1024
    assert component.digest == hashlib.sha256(module).hexdigest()
    body = serve_once(plan, "image-processor/resizer")
    if module is not HELLO:
        assert b"env: QUALITY=85" in body
    else:
        assert body == b"Hello, world!\n"


def test_cli_push_and_pull(registry: Any, tmp_path: Path, isolated: Path) -> None:
    module = tmp_path / "hello.wasm"
    module.write_bytes(HELLO)
    pushed = _run_cli("push", str(module), registry.ref("cli/hello:v1"))
    assert pushed.returncode == 0, pushed.stderr
    assert f"pushed  {registry.ref('cli/hello:v1')}@sha256:" in pushed.stdout
    assert f"module  sha256:{HELLO_HEX}" in pushed.stdout

    out = tmp_path / "pulled.wasm"
    pulled = _run_cli("pull", registry.ref("cli/hello:v1"), "-o", str(out), "--cache-dir", str(tmp_path / "c2"))
    assert pulled.returncode == 0, pulled.stderr
    assert out.read_bytes() == HELLO
    assert f"module  sha256:{HELLO_HEX}" in pulled.stdout
    assert "resolved to manifest sha256:" in pulled.stderr  # logged at info
    assert "\x1b[" not in pulled.stderr  # no progress bar when stderr is not a terminal

    missing = _run_cli("pull", registry.ref("cli/absent:v1"))
    assert missing.returncode == 1
    assert f"error: {registry.ref('cli/absent:v1')}:" in missing.stderr
    assert "HTTP 404" in missing.stderr and "Traceback" not in missing.stderr

    not_wasm = tmp_path / "notes.txt"
    not_wasm.write_text("hello")
    refused = _run_cli("push", str(not_wasm), registry.ref("cli/notes:v1"))
    assert refused.returncode == 1
    assert "not a WebAssembly binary" in refused.stderr


def test_image_index_with_a_wasm_platform(registry: Any, isolated: Path) -> None:
    import wasmtime

    from wasmlet.registry._client import RegistryClient

    wasm = push_module(HELLO, registry.ref("multi/app:wasm"))
    other = push_module(bytes(wasmtime.wat2wasm("(module)")), registry.ref("multi/app:other"))
    manifest_type = "application/vnd.oci.image.manifest.v1+json"

    def entry(digest: str, os_name: str, arch: str) -> dict[str, Any]:
        with RegistryClient(registry.host, hostname="127.0.0.1", where="test") as client:
            body, _, _ = client.get_manifest("multi/app", digest)
        return {"mediaType": manifest_type, "digest": digest, "size": len(body),
                "platform": {"os": os_name, "architecture": arch}}

    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [entry(other.manifest_digest, "linux", "amd64"),
                                      entry(wasm.manifest_digest, "wasip1", "wasm")]}).encode()
    index_digest = "sha256:" + hashlib.sha256(index).hexdigest()
    with RegistryClient(registry.host, hostname="127.0.0.1", where="test") as client:
        client.put_manifest("multi/app", "v1", "application/vnd.oci.image.index.v1+json", index, index_digest)

    blobs = BlobStore(isolated)
    pulled = pull_module(registry.ref("multi/app:v1"), blobs)
    assert pulled.data == HELLO and pulled.manifest_digest == wasm.manifest_digest
    # Pinned to the index's digest, it is answered from the store (index -> manifest -> layer).
    again = pull_module(f"{registry.ref('multi/app')}@{index_digest}", blobs)
    assert again.data == HELLO and again.manifest_digest == wasm.manifest_digest
