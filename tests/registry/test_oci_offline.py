"""Deploying while the registry is down: what was pulled still deploys; what was not fails clearly."""

from __future__ import annotations

import hashlib
import logging
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


def _manifest(path: Path, module_url: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "core.oam.dev/v1beta1", "kind": "Application", "metadata": {"name": "edge"},
        "spec": {"components": [{"name": "hello", "type": "wasm",
                                 "properties": {"moduleURL": module_url, "memoryLimit": "16Mi"}}]},
    }))
    return path


def test_pulled_module_deploys_with_the_registry_down(
        fresh_registry: Any, tmp_path: Path, isolated: Path, caplog: pytest.LogCaptureFixture,
        serve_once: Callable[..., bytes], store_files: Callable[[Path], list[str]]) -> None:
    pushed = push_module(HELLO, fresh_registry.ref("edge/hello:v1"))
    push_module(HELLO, fresh_registry.ref("edge/never:v1"))
    manifest = _manifest(tmp_path / "app.yaml", fresh_registry.ref("edge/hello:v1"))
    online = deploy_plan([manifest], cache_dir=isolated)
    assert online.components[0].digest == HELLO_HEX

    fresh_registry.stop()
    before = store_files(isolated)
    with caplog.at_level(logging.WARNING):
        offline = deploy_plan([manifest], cache_dir=isolated)
    assert offline.components[0].digest == HELLO_HEX
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("registry is unreachable" in w and pushed.manifest_digest in w for w in warnings), warnings
    assert serve_once(offline, "edge/hello") == b"Hello, world!\n"

    # Pinned by digest: answered from the store without asking the registry, and without a warning.
    caplog.clear()
    pinned = _manifest(tmp_path / "pinned.yaml", f"{fresh_registry.ref('edge/hello')}@{pushed.manifest_digest}")
    with caplog.at_level(logging.WARNING):
        assert deploy_plan([pinned], cache_dir=isolated).components[0].digest == HELLO_HEX
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    # A tag that was pushed but never pulled here has no local copy.
    never = _manifest(tmp_path / "never.yaml", fresh_registry.ref("edge/never:v1"))
    with pytest.raises(RegistryError) as info:
        deploy_plan([never], cache_dir=isolated)
    message = str(info.value)
    assert fresh_registry.ref("edge/never:v1") in message
    assert "cannot connect" in message and "never pulled" in message
    assert "component edge/hello" in message
    # The failed deploys wrote nothing (the compiled-module cache aside, which the first deploy filled).
    assert store_files(isolated) == before


def test_offline_with_a_damaged_local_copy_fails_clearly(fresh_registry: Any, isolated: Path) -> None:
    pushed = push_module(HELLO, fresh_registry.ref("edge/damaged:v1"))
    blobs = BlobStore(isolated)
    pull_module(fresh_registry.ref("edge/damaged:v1"), blobs)
    fresh_registry.stop()
    blobs.path(HELLO_HEX).write_bytes(b"\0asm-not-the-module")
    with pytest.raises(RegistryError, match=r"local copy .* is unusable") as info:
        pull_module(fresh_registry.ref("edge/damaged:v1"), blobs)
    assert pushed.manifest_digest in str(info.value)
    assert not blobs.has(HELLO_HEX)  # the corrupt blob was removed, not served
