"""Component artifacts that lie, and registries that stall: each a clear error naming the reference,
nothing written, and every wait bounded."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import write_manifest
from tests.registry.conftest import TrickleRegistry

from wasmlet import RegistryError
from wasmlet.engine import BlobStore
from wasmlet.registry import pull_module, push_module
from wasmlet.registry._client import RegistryClient
from wasmlet.registry._component import component_interfaces

ROOT = Path(__file__).resolve().parents[2]
CGI_P2 = (ROOT / "tests" / "guests" / "components" / "cgi_p2.wasm").read_bytes()
HELLO = (ROOT / "examples" / "hello" / "hello.wasm").read_bytes()
V0 = "application/vnd.wasm.config.v0+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def component_config(data: bytes = CGI_P2, **changes: Any) -> dict[str, Any]:
    names = component_interfaces(data)
    config: dict[str, Any] = {
        "created": "2025-11-26T00:00:00Z", "architecture": "wasm", "os": "wasip2", "layerDigests": [digest(data)],
        "component": {"exports": list(names.exports), "imports": list(names.imports), "target": None},
    }
    config.update(changes)
    return config


def artifact(layer: bytes, config: dict[str, Any] | bytes, *, declared_config_size: int | None = None) -> tuple[
        bytes, dict[str, bytes]]:
    """(manifest, blobs by digest) of a one-layer Wasm artifact with this config."""
    config_bytes = config if isinstance(config, bytes) else json.dumps(config).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": V0, "digest": digest(config_bytes),
                   "size": declared_config_size if declared_config_size is not None else len(config_bytes)},
        "layers": [{"mediaType": "application/wasm", "digest": digest(layer), "size": len(layer)}],
    }).encode()
    return manifest, {digest(layer): layer, digest(config_bytes): config_bytes}


def upload(registry: Any, name: str, layer: bytes, config: dict[str, Any] | bytes) -> str:
    repository, tag = name.split(":")
    manifest, blobs = artifact(layer, config)
    with RegistryClient(registry.host, hostname="127.0.0.1", where="test") as client:
        for blob_digest, data in blobs.items():
            client.put_blob(repository, blob_digest, data, "blob")
        client.put_manifest(repository, tag, OCI_MANIFEST, manifest, digest(manifest))
    return str(registry.ref(name))


def nothing_written(cache: Path, store_files: Callable[[Path], list[str]]) -> None:
    files = store_files(cache)
    assert not [f for f in files if f.startswith("blobs/")], files
    assert "oci/tags.json" not in files


NAMES = component_interfaces(CGI_P2)
LIES = {
    # a component under a core module's os
    "wasip1-component": (CGI_P2, {**component_config(), "os": "wasip1", "component": None},
                         r"says os wasip1 \(a core module\), but the layer is a component"),
    "wasip1-with-component-object": (CGI_P2, component_config(os="wasip1"),
                                     "describes a component but says os wasip1"),
    # a core module dressed as a component
    "module-as-component": (HELLO, component_config(layerDigests=[digest(HELLO)]),
                            r"says os wasip2 \(a component\), but the layer is not a component "
                            r"\(it is a core module\)"),
    "module-with-component-object": (HELLO, {**component_config(layerDigests=[digest(HELLO)]), "os": None},
                                     "describes a component, but the layer is not one"),
    # layerDigests that are not the manifest's layers
    "layer-digests-other": (CGI_P2, component_config(layerDigests=[digest(HELLO)]),
                            "layerDigests .* do not match the manifest's layers"),
    "layer-digests-twice": (CGI_P2, component_config(layerDigests=[digest(CGI_P2)] * 2),
                            "layerDigests .* do not match"),
    "layer-digests-empty": (CGI_P2, component_config(layerDigests=[]), r"layerDigests \(none\) do not match"),
    "layer-digests-not-a-list": (CGI_P2, component_config(layerDigests=digest(CGI_P2)), "not a list of names"),
    # imports and exports the binary does not have: a policy reading the config would be fooled
    "hidden-import": (CGI_P2, component_config(component={
        "imports": [n for n in NAMES.imports if n != "wasi:cli/environment@0.2.0"], "exports": list(NAMES.exports)}),
        "it imports wasi:cli/environment@0.2.0, which the config leaves out"),
    "invented-export": (CGI_P2, component_config(component={
        "imports": list(NAMES.imports), "exports": [*NAMES.exports, "wasi:http/incoming-handler@0.2.0"]}),
        "the config lists wasi:http/incoming-handler@0.2.0, which it does not export"),
    "component-not-an-object": (CGI_P2, component_config(component=["wasi:cli/run@0.2.0"]), "expected an object"),
    "imports-not-names": (CGI_P2, component_config(component={"imports": [1, 2], "exports": []}),
                          r"component\.imports is not a list of names"),
    "other-os": (CGI_P2, component_config(os="linux"), "for os 'linux'"),
}


@pytest.mark.parametrize("case", sorted(LIES))
def test_a_config_that_lies_is_refused(case: str, registry: Any, isolated: Path,
                                       store_files: Callable[[Path], list[str]]) -> None:
    layer, config, message = LIES[case]
    ref = upload(registry, f"lies/{case}:v1", layer, config)
    with pytest.raises(RegistryError, match=message) as info:
        pull_module(ref, BlobStore(isolated))
    assert str(info.value).startswith(ref) and len(str(info.value)) < 1000
    nothing_written(isolated, store_files)


def test_a_lying_component_artifact_is_refused_at_deploy(registry: Any, tmp_path: Path, isolated: Path,
                                                         store_files: Callable[[Path], list[str]]) -> None:
    from tests.conftest import deploy_plan

    ref = upload(registry, "lies/deploy:v1", HELLO, component_config(layerDigests=[digest(HELLO)]))
    manifest = write_manifest(tmp_path / "app.yaml", [{"name": "web", "properties": {"moduleURL": ref}}],
                              name="shop")
    with pytest.raises(RegistryError, match="the layer is not a component") as info:
        deploy_plan([manifest], cache_dir=isolated)
    assert str(info.value).startswith(f"{manifest}: component shop/web: {ref}:")
    nothing_written(isolated, store_files)


def test_a_huge_config_is_refused_before_it_is_read(registry: Any, isolated: Path,
                                                    store_files: Callable[[Path], list[str]]) -> None:
    # A genuine 5 MiB config (the component object padded with whitespace), served by the registry.
    config = json.dumps(component_config()).encode()
    huge = config[:-1] + b" " * (5 * 1024 * 1024 - len(config)) + b"}"
    ref = upload(registry, "lies/hugeconfig:v1", CGI_P2, huge)
    with pytest.raises(RegistryError, match=f"the Wasm config is {len(huge)} bytes, more than the 4194304 allowed"):
        pull_module(ref, BlobStore(isolated))
    nothing_written(isolated, store_files)


def test_a_config_larger_than_its_descriptor_is_cut_off(registry: Any, isolated: Path,
                                                       store_files: Callable[[Path], list[str]]) -> None:
    config = json.dumps(component_config()).encode() + b" " * 100_000
    repository, tag = "lies/longconfig", "v1"
    manifest, blobs = artifact(CGI_P2, config, declared_config_size=200)
    with RegistryClient(registry.host, hostname="127.0.0.1", where="test") as client:
        for blob_digest, data in blobs.items():
            client.put_blob(repository, blob_digest, data, "blob")
        client.put_manifest(repository, tag, OCI_MANIFEST, manifest, digest(manifest))
    with pytest.raises(RegistryError, match="larger than the 200 bytes expected"):
        pull_module(registry.ref(f"{repository}:{tag}"), BlobStore(isolated))
    nothing_written(isolated, store_files)


def test_a_registry_sending_a_component_byte_by_byte_is_given_up_on(
        isolated: Path, monkeypatch: pytest.MonkeyPatch, store_files: Callable[[Path], list[str]]) -> None:
    """One byte every 10 ms never trips a read timeout: the 8.6 KB component would take 86 s.
    With a 0.5 s timeout the transfer may take 0.5 s + its size at 256 KiB/s, then the pull stops."""
    monkeypatch.setenv("WASMLET_REGISTRY_TIMEOUT", "0.5")
    manifest, blobs = artifact(CGI_P2, component_config())
    registry = TrickleRegistry(blobs, manifest, slow={digest(CGI_P2)})
    try:
        ref = f"oci://{registry.host}/slow/component:v1"
        started = time.monotonic()
        slow = r"sent \d+ of 8593 bytes in 0\.53\d* s \(slower than 256 KiB/s\)"
        with pytest.raises(RegistryError, match=slow) as info:
            pull_module(ref, BlobStore(isolated))
        assert time.monotonic() - started < 10
        assert str(info.value).startswith(ref)
        assert registry.bytes_sent < len(CGI_P2)
    finally:
        registry.close()
    nothing_written(isolated, store_files)


def test_a_registry_that_never_answers_a_component_push_or_pull(
        hanging_registry: str, isolated: Path, monkeypatch: pytest.MonkeyPatch,
        store_files: Callable[[Path], list[str]]) -> None:
    monkeypatch.setenv("WASMLET_REGISTRY_TIMEOUT", "0.5")
    ref = f"oci://{hanging_registry}/slow/component:v1"
    started = time.monotonic()
    with pytest.raises(RegistryError, match=r"did not answer within 0\.5 s"):
        push_module(CGI_P2, ref)
    with pytest.raises(RegistryError, match=r"did not answer within 0\.5 s"):
        pull_module(ref, BlobStore(isolated))
    assert time.monotonic() - started < 10
    nothing_written(isolated, store_files)

