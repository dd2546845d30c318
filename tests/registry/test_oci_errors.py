"""Bad registries and bad content: each a clear error naming the reference, and nothing half-written."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import deploy_plan

from wasmlet import ModuleError, ModuleSourceError, RegistryError
from wasmlet.engine import BlobStore
from wasmlet.registry import pull_module, push_module
from wasmlet.registry._client import RegistryClient

ROOT = Path(__file__).resolve().parents[2]
HELLO = (ROOT / "examples" / "hello" / "hello.wasm").read_bytes()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _variant(name: str) -> bytes:
    """hello.wasm plus a custom section: a valid module with a blob of its own in the registry's global store."""
    payload = bytes([len(name)]) + name.encode() + b"wasmlet test"
    assert len(payload) < 128  # a one-byte LEB128 size
    return HELLO + b"\x00" + bytes([len(payload)]) + payload


def _nothing_written(cache: Path, store_files: Callable[[Path], list[str]]) -> None:
    files = store_files(cache)
    assert not [f for f in files if f.startswith("blobs/")], files
    assert "oci/tags.json" not in files


def test_a_blob_with_the_wrong_content(registry: Any, isolated: Path, store_files: Callable[..., Any]) -> None:
    ref = registry.ref("bad/wrongdigest:v1")
    module = _variant("wrongdigest")
    push_module(module, ref)
    # Same length, other bytes: the registry serves them as the module's blob.
    registry.blob_file(_digest(module)).write_bytes(bytes(reversed(module)))
    with pytest.raises(RegistryError, match="failed verification") as info:
        pull_module(ref, BlobStore(isolated))
    assert ref in str(info.value) and _digest(module) in str(info.value)
    _nothing_written(isolated, store_files)


def test_a_truncated_blob(registry: Any, isolated: Path, store_files: Callable[..., Any]) -> None:
    module = _variant("truncated")
    ref = registry.ref("bad/truncated:v1")
    push_module(module, ref)
    registry.blob_file(_digest(module)).write_bytes(module[:1000])
    with pytest.raises(RegistryError, match="truncated") as info:
        pull_module(ref, BlobStore(isolated))
    assert ref in str(info.value) and f"1000 of {len(module)}" in str(info.value)
    _nothing_written(isolated, store_files)


def test_a_manifest_that_does_not_match_its_digest(registry: Any, isolated: Path,
                                                   store_files: Callable[..., Any]) -> None:
    first = push_module(_variant("manifest"), registry.ref("bad/manifest:one"))
    import wasmtime

    second = push_module(bytes(wasmtime.wat2wasm("(module)")), registry.ref("bad/manifest:two"))
    target = registry.blob_file(first.manifest_digest)
    original = target.read_bytes()
    shutil.copyfile(registry.blob_file(second.manifest_digest), target)
    try:
        with pytest.raises(RegistryError, match="served a manifest with digest") as info:
            pull_module(f"{registry.ref('bad/manifest')}@{first.manifest_digest}", BlobStore(isolated))
        assert first.manifest_digest in str(info.value) and second.manifest_digest in str(info.value)
        _nothing_written(isolated, store_files)
    finally:
        target.write_bytes(original)


def test_an_ordinary_container_image_is_refused(registry: Any, isolated: Path,
                                                store_files: Callable[..., Any]) -> None:
    # A minimal but genuine OCI container image: an image config and one tar+gzip layer.
    layer = gzip.compress(b"\0" * 1024)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [_digest(b"\0" * 1024)]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": _digest(layer),
                    "size": len(layer)}],
    }).encode()
    with RegistryClient(registry.host, hostname="127.0.0.1", where="test") as client:
        client.put_blob("bad/container", _digest(layer), layer, "layer")
        client.put_blob("bad/container", _digest(config), config, "config")
        client.put_manifest("bad/container", "latest", "application/vnd.oci.image.manifest.v1+json", manifest,
                            _digest(manifest))
    ref = registry.ref("bad/container:latest")
    with pytest.raises(RegistryError, match="not a Wasm artifact") as info:
        pull_module(ref, BlobStore(isolated))
    message = str(info.value)
    assert ref in message
    assert "application/vnd.oci.image.layer.v1.tar+gzip" in message and "ordinary container image" in message
    _nothing_written(isolated, store_files)


def test_not_found(registry: Any, isolated: Path, tmp_path: Path, store_files: Callable[..., Any]) -> None:
    push_module(HELLO, registry.ref("bad/present:v1"))
    for name in ("bad/present:v2", "bad/absent:v1"):
        with pytest.raises(RegistryError, match="HTTP 404") as info:
            pull_module(registry.ref(name), BlobStore(isolated))
        assert registry.ref(name) in str(info.value)
        assert "MANIFEST_UNKNOWN" in str(info.value) or "NAME_UNKNOWN" in str(info.value)
    # Through a deploy the message also names the manifest file and the component.
    app = tmp_path / "app.yaml"
    app.write_text(yaml.safe_dump({
        "apiVersion": "core.oam.dev/v1beta1", "kind": "Application", "metadata": {"name": "shop"},
        "spec": {"components": [{"name": "cart", "type": "wasm",
                                 "properties": {"moduleURL": registry.ref("bad/absent:v1")}}]},
    }))
    with pytest.raises(RegistryError) as info:
        deploy_plan([app], cache_dir=isolated)
    assert str(info.value).startswith(f"{app}: component shop/cart: {registry.ref('bad/absent:v1')}:")
    _nothing_written(isolated, store_files)


def test_a_registry_that_hangs_times_out(hanging_registry: str, isolated: Path, monkeypatch: pytest.MonkeyPatch,
                                         store_files: Callable[..., Any]) -> None:
    monkeypatch.setenv("WASMLET_REGISTRY_TIMEOUT", "0.5")
    ref = f"oci://{hanging_registry}/slow/app:v1"
    started = time.monotonic()
    with pytest.raises(RegistryError, match=r"did not answer within 0\.5 s") as info:
        pull_module(ref, BlobStore(isolated))
    assert time.monotonic() - started < 10
    assert ref in str(info.value) and "never pulled" in str(info.value)
    with pytest.raises(RegistryError, match="did not answer"):
        push_module(HELLO, ref)
    _nothing_written(isolated, store_files)


def test_bad_references_and_inputs(registry: Any, isolated: Path) -> None:
    for text, pattern in [("oci://nohost", "not an OCI reference"),
                          ("oci://127.0.0.1:5000/Upper/Case:v1", "not a valid repository name"),
                          ("oci://127.0.0.1:5000/app@sha256:abc", "not a digest"),
                          ("oci://127.0.0.1:5000/app:bad tag", "not a valid tag")]:
        with pytest.raises(ModuleSourceError, match=pattern):
            pull_module(text, BlobStore(isolated))
    with pytest.raises(ModuleSourceError, match="push takes a tag, not a digest"):
        push_module(HELLO, f"{registry.ref('bad/app')}@sha256:{'0' * 64}")
    with pytest.raises(ModuleError, match="not a WebAssembly binary"):
        push_module(b"#!/bin/sh\n", registry.ref("bad/script:v1"))
    with pytest.raises(ModuleError, match="unknown version"):
        push_module(b"\0asm\x02\x00\x00\x00", registry.ref("bad/version:v1"))
    # A component whose import section runs past the binary: its interfaces cannot be listed, so no push.
    with pytest.raises(ModuleError, match=r"the component cannot be read: .*runs past its end"):
        push_module(b"\0asm\x0d\x00\x01\x00\x0a\x40\x01", registry.ref("bad/component:v1"))
