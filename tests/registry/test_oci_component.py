"""Components as OCI artifacts: the Wasm OCI Artifact layout's component form, against a real registry.

Pushed with ``os: wasip2`` and the ``component`` object (imports and exports read from the
binary), inspected with skopeo, pulled back by tag and by digest, deployed by a real
``wasmlet serve`` (signed, under ``--trust``, too) and answered over HTTP; pushed by oras with
the config wkg writes; stored once however often and by however many apps it is pulled.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import oras.client
import pytest
import wasmtime
import wasmtime.component
from tests.conftest import Server, write_manifest

from wasmlet.engine import BlobStore
from wasmlet.registry import pull_module, push_module
from wasmlet.signing import KeyPair, certify, sign_module

ROOT = Path(__file__).resolve().parents[2]
CGI_P2_PATH = ROOT / "tests" / "guests" / "components" / "cgi_p2.wasm"
CGI_P2 = CGI_P2_PATH.read_bytes()
CGI_P2_HEX = hashlib.sha256(CGI_P2).hexdigest()


def wasmtime_names(data: bytes) -> tuple[list[str], list[str]]:
    """(imports, exports) as wasmtime's own component type gives them: the independent answer."""
    engine = wasmtime.Engine()
    component = wasmtime.component.Component(engine, data)
    return list(component.type.imports(engine)), list(component.type.exports(engine))


def skopeo(*args: str) -> str:
    return subprocess.run(["skopeo", "inspect", "--tls-verify=false", *args], capture_output=True, text=True,
                          check=True, timeout=60).stdout


def blob_files(cache: Path) -> list[Path]:
    root = cache / "blobs" / "sha256"
    return sorted(root.iterdir()) if root.is_dir() else []


def test_skopeo_sees_the_component_form_of_the_layout(registry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764115200")
    pushed = push_module(CGI_P2, registry.ref("component/cgi:v1"), title="cgi_p2.wasm", target="wasi:cli/command@0.2.0")
    image = f"docker://{registry.host}/component/cgi:v1"
    raw = skopeo("--raw", image)
    assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == pushed.manifest_digest
    manifest = json.loads(raw)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.wasm.config.v0+json"
    (layer,) = manifest["layers"]
    # The layer is the component's bytes as they are: application/wasm, its own sha256 and size.
    assert layer["mediaType"] == "application/wasm"
    assert layer == {"mediaType": "application/wasm", "digest": f"sha256:{CGI_P2_HEX}", "size": len(CGI_P2),
                     "annotations": {"org.opencontainers.image.title": "cgi_p2.wasm"}}

    config = json.loads(skopeo("--config", "--raw", image))
    imports, exports = wasmtime_names(CGI_P2)
    assert config == {
        "created": "2025-11-26T00:00:00Z", "architecture": "wasm", "os": "wasip2",
        "layerDigests": [f"sha256:{CGI_P2_HEX}"],
        "component": {"exports": exports, "imports": imports, "target": "wasi:cli/command@0.2.0"},
    }
    assert exports == ["wasi:cli/run@0.2.0"] and "wasi:io/streams@0.2.0" in imports
    # The same push again is the same artifact, byte for byte (SOURCE_DATE_EPOCH).
    assert push_module(CGI_P2, registry.ref("component/cgi:v2")).manifest_digest != pushed.manifest_digest  # no title
    assert push_module(CGI_P2, registry.ref("component/cgi:v3"), title="cgi_p2.wasm",
                       target="wasi:cli/command@0.2.0").manifest_digest == pushed.manifest_digest


def test_a_target_is_a_world_name(registry: Any) -> None:
    from wasmlet import ModuleError

    with pytest.raises(ModuleError, match="is not a world name"):
        push_module(CGI_P2, registry.ref("component/badtarget:v1"), target="wasi cli\n")
    hello = (ROOT / "examples" / "hello" / "hello.wasm").read_bytes()
    with pytest.raises(ModuleError, match="this is a core module"):
        push_module(hello, registry.ref("component/moduletarget:v1"), target="wasi:cli/command@0.2.0")


def test_pull_a_component_by_tag_and_by_digest(registry: Any, isolated: Path) -> None:
    pushed = push_module(CGI_P2, registry.ref("component/pull:v1"))
    blobs = BlobStore(isolated)
    by_tag = pull_module(registry.ref("component/pull:v1"), blobs)
    assert by_tag.data == CGI_P2 and by_tag.module_digest == CGI_P2_HEX
    assert by_tag.manifest_digest == pushed.manifest_digest
    by_digest = pull_module(f"{registry.ref('component/pull')}@{pushed.manifest_digest}", BlobStore(isolated))
    assert by_digest.data == CGI_P2 and by_digest.manifest_digest == pushed.manifest_digest
    # manifest, config, component: three blobs, each under its own digest.
    files = blob_files(isolated)
    assert len(files) == 3
    assert all(hashlib.sha256(f.read_bytes()).hexdigest() == f.name for f in files)
    manifest = json.loads((isolated / "blobs" / "sha256" / pushed.manifest_digest.removeprefix("sha256:")).read_bytes())
    config = json.loads((isolated / "blobs" / "sha256" / manifest["config"]["digest"].removeprefix("sha256:"))
                        .read_bytes())
    assert config["os"] == "wasip2" and config["component"]["exports"] == ["wasi:cli/run@0.2.0"]


def test_a_component_pulled_twice_and_by_two_apps_is_stored_and_downloaded_once(
        registry: Any, isolated: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764115200")  # both repositories get the same config blob
    first = push_module(CGI_P2, registry.ref("shared/one:v1"))
    push_module(CGI_P2, registry.ref("shared/two:v1"))
    blobs = BlobStore(isolated)
    pull_module(registry.ref("shared/one:v1"), blobs)
    # From here on the registry cannot serve the component: any second download would fail.
    registry.blob_file(f"sha256:{CGI_P2_HEX}").unlink()
    with caplog.at_level(logging.INFO, logger="wasmlet.registry"):
        again = pull_module(registry.ref("shared/one:v1"), blobs)  # the same tag, pulled twice
        other = pull_module(registry.ref("shared/two:v1"), blobs)  # another app's repository
        pinned = pull_module(f"{registry.ref('shared/one')}@{first.manifest_digest}", blobs)
    assert again.data == other.data == pinned.data == CGI_P2
    assert sum("(already stored)" in r.getMessage() for r in caplog.records) == 2
    copies = [f for f in blob_files(isolated) if f.read_bytes() == CGI_P2]
    assert [f.name for f in copies] == [CGI_P2_HEX]


def test_two_apps_deploy_one_component_from_the_registry_and_answer_over_http(
        registry: Any, serve: Callable[..., Server], tmp_path: Path, isolated: Path) -> None:
    pushed = push_module(CGI_P2, registry.ref("edge/cgi:v1"))
    one = write_manifest(tmp_path / "one.yaml", [{"name": "first", "properties": {
        "moduleURL": registry.ref("edge/cgi:v1")}}], name="one")
    two = write_manifest(tmp_path / "two.yaml", [{"name": "second", "properties": {
        "moduleURL": f"{registry.ref('edge/cgi')}@{pushed.manifest_digest}",
        "moduleDigest": f"sha256:{CGI_P2_HEX}"}}], name="two")
    server = serve(str(one), str(two))
    for route in ("first", "second"):
        response = httpx.post(f"{server.url}/{route}/echo?q=1", content=b"from the registry", timeout=10)
        assert response.status_code == 200, (route, response.text, server.output()[-2000:])
        assert response.headers["x-guest"] == "cgi-p2"  # the component answered, through wasi:cli
        assert "method=POST\npath=/echo\nquery=q=1\n" in response.text and "body=from the registry" in response.text
    # One copy in the cache's store and one in the state's, however many apps use it.
    assert [f.name for f in blob_files(isolated) if f.read_bytes() == CGI_P2] == [CGI_P2_HEX]
    kept = [f for f in server.state_dir.rglob("*") if f.is_file() and f.read_bytes() == CGI_P2]
    assert [f.name for f in kept] == [CGI_P2_HEX]


def _trust(tmp_path: Path, scope: str) -> tuple[Path, KeyPair, Any]:
    root, publisher = KeyPair.generate(), KeyPair.generate()
    now = dt.datetime.now(dt.UTC)
    cert = certify(root, publisher.public, [scope], now + dt.timedelta(days=1), subject="acme",
                   not_before=now - dt.timedelta(days=1))
    trust = tmp_path / "trust"
    (trust / "roots").mkdir(parents=True)
    (trust / "roots" / "root.pub").write_bytes(root.public.to_bytes())
    return trust, publisher, cert


def test_a_signed_component_from_the_registry_deploys_under_trust(
        registry: Any, serve: Callable[..., Server], tmp_path: Path) -> None:
    trust, publisher, cert = _trust(tmp_path, f"{registry.host}/signed/**")
    signed = sign_module(CGI_P2, publisher, cert)
    push_module(signed, registry.ref("signed/cgi:v1"))
    push_module(CGI_P2, registry.ref("signed/unsigned:v1"))
    good = write_manifest(tmp_path / "good.yaml", [{"name": "web", "properties": {
        "moduleURL": registry.ref("signed/cgi:v1")}}], name="signed")
    server = serve(str(good), "--trust", str(trust))
    response = httpx.get(f"{server.url}/web/", timeout=10)
    assert response.status_code == 200, server.output()[-2000:]
    assert response.headers["x-guest"] == "cgi-p2"
    assert "signature verified" in server.output()

    bad = write_manifest(tmp_path / "bad.yaml", [{"name": "web", "properties": {
        "moduleURL": registry.ref("signed/unsigned:v1")}}], name="unsigned")
    result = subprocess.run([sys.executable, "-m", "wasmlet", "serve", str(bad), "--trust", str(trust),
                             "--listen", "127.0.0.1:0", "--admin-listen", "none", "--state-dir",
                             str(tmp_path / "state-bad")], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1, result.stderr
    assert "signature refused (unsigned)" in result.stderr and registry.ref("signed/unsigned:v1") in result.stderr


# -- another client: oras, writing the config wkg (oci-wasm) writes ---------------------------------------


@pytest.fixture
def oras_push(registry: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    work = tmp_path / "oras"
    work.mkdir()
    monkeypatch.chdir(work)  # oras-py pushes only files under the working directory
    logging.getLogger("oras").setLevel(logging.WARNING)

    def push(name: str, data: bytes, config: dict[str, Any]) -> None:
        (work / "component.wasm").write_bytes(data)
        (work / "config.json").write_text(json.dumps(config))
        client = oras.client.OrasClient(hostname=registry.host, insecure=True)
        response = client.push(target=f"{registry.host}/{name}", files=["component.wasm:application/wasm"],
                               manifest_config="config.json:application/vnd.wasm.config.v0+json")
        assert response.status_code == 201

    return push


def wkg_config(data: bytes, **changes: Any) -> dict[str, Any]:
    """The config ``oci-wasm``'s ``WasmConfig::from_raw_component`` (what ``wkg oci push`` uses) writes."""
    imports, exports = wasmtime_names(data)
    config: dict[str, Any] = {
        "created": "2025-11-26T10:00:00.123456789Z", "author": None, "architecture": "wasm", "os": "wasip2",
        "layerDigests": ["sha256:" + hashlib.sha256(data).hexdigest()],
        "component": {"exports": exports, "imports": imports, "target": None},
    }
    config.update(changes)
    return config


def test_a_component_pushed_by_oras_with_wkgs_config_deploys(
        registry: Any, oras_push: Callable[..., None], serve: Callable[..., Server], tmp_path: Path) -> None:
    oras_push("interop/component:v1", CGI_P2, wkg_config(CGI_P2))
    manifest = write_manifest(tmp_path / "app.yaml", [{"name": "web", "properties": {
        "moduleURL": registry.ref("interop/component:v1")}}], name="interop")
    server = serve(str(manifest))
    response = httpx.get(f"{server.url}/web/", timeout=10)
    assert response.status_code == 200 and response.headers["x-guest"] == "cgi-p2"


def test_oras_pulls_the_component_wasmlet_pushed(registry: Any, tmp_path: Path) -> None:
    push_module(CGI_P2, registry.ref("interop/frompush-component:v1"), title="cgi_p2.wasm")
    client = oras.client.OrasClient(hostname=registry.host, insecure=True)
    files = client.pull(target=f"{registry.host}/interop/frompush-component:v1", outdir=str(tmp_path / "out"))
    assert [Path(f).name for f in files] == ["cgi_p2.wasm"]
    assert Path(files[0]).read_bytes() == CGI_P2


def test_the_cli_pushes_and_pulls_a_component(registry: Any, tmp_path: Path) -> None:
    module = tmp_path / "cgi_p2.wasm"
    shutil.copyfile(CGI_P2_PATH, module)
    pushed = subprocess.run([sys.executable, "-m", "wasmlet", "push", str(module), registry.ref("cli/cgi:v1")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert pushed.returncode == 0, pushed.stderr
    assert f"module  sha256:{CGI_P2_HEX}" in pushed.stdout
    out = tmp_path / "pulled.wasm"
    pulled = subprocess.run([sys.executable, "-m", "wasmlet", "pull", registry.ref("cli/cgi:v1"), "-o", str(out),
                             "--cache-dir", str(tmp_path / "c2")], capture_output=True, text=True, timeout=120,
                            check=False)
    assert pulled.returncode == 0, pulled.stderr
    assert out.read_bytes() == CGI_P2


def test_an_image_index_with_a_wasip2_entry(registry: Any, isolated: Path) -> None:
    from wasmlet.registry._client import RegistryClient

    component = push_module(CGI_P2, registry.ref("multi/component:wasip2"))
    module = push_module((ROOT / "examples" / "hello" / "hello.wasm").read_bytes(), registry.ref("multi/component:p1"))
    manifest_type = "application/vnd.oci.image.manifest.v1+json"
    with RegistryClient(registry.host, hostname="127.0.0.1", where="test") as client:
        sizes = {d: len(client.get_manifest("multi/component", d)[0])
                 for d in (component.manifest_digest, module.manifest_digest)}
        index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                            "manifests": [{"mediaType": manifest_type, "digest": digest, "size": sizes[digest],
                                           "platform": {"os": os_name, "architecture": arch}}
                                          for digest, os_name, arch in (
                                              (module.manifest_digest, "linux", "amd64"),
                                              (component.manifest_digest, "wasip2", "wasm"))]}).encode()
        client.put_manifest("multi/component", "v1", "application/vnd.oci.image.index.v1+json", index,
                            "sha256:" + hashlib.sha256(index).hexdigest())
    pulled = pull_module(registry.ref("multi/component:v1"), BlobStore(isolated))
    assert pulled.data == CGI_P2 and pulled.manifest_digest == component.manifest_digest
