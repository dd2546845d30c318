"""The file policy (``control/_grants.py``), rule by rule: who may mount or read which host path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wasmlet import FileGrantError
from wasmlet.control import FilePolicy
from wasmlet.plan import ComponentSpec, assign_routes, parse_manifest


def spec(base: Path, module: str = "m.wasm", mounts: tuple[str, ...] = ()) -> list[ComponentSpec]:
    manifest = {"apiVersion": "core.oam.dev/v1beta1", "kind": "Application", "metadata": {"name": "a"},
                "spec": {"components": [{"name": "c", "type": "wasm", "properties": {
                    "moduleURL": module, "capabilities": {"files": [
                        {"source": m, "destination": f"/m{i}"} for i, m in enumerate(mounts)]}}}]}}
    return assign_routes(parse_manifest(json.dumps(manifest), source=str(base / "app.yaml"), base_dir=str(base)))


@pytest.fixture
def host(tmp_path: Path) -> dict[str, Path]:
    folders = {name: tmp_path / name for name in ("state", "cache", "trust", "allowed", "own", "other")}
    for folder in folders.values():
        folder.mkdir()
    (folders["allowed"] / "data").mkdir()
    return folders


def policy(host: dict[str, Path], allowed: bool = True) -> FilePolicy:
    return FilePolicy.of([host["state"], host["cache"], host["trust"]], [host["allowed"]] if allowed else [])


@pytest.mark.parametrize("operator", [True, False])
@pytest.mark.parametrize("where", ["state", "cache", "trust"])
def test_the_hosts_folders_are_never_granted(host: dict[str, Path], operator: bool, where: str) -> None:
    for mounts, module in (((str(host[where]),), "x.wasm"), ((str(host[where] / ".."),), "x.wasm"),
                           ((), str(host[where] / "state.db"))):
        with pytest.raises(FileGrantError, match="never granted"):
            policy(host).check(spec(host["own"], module, mounts), operator)


@pytest.mark.parametrize("path", ["/", "/proc", "/proc/self", "/sys/kernel", "/dev", "/dev/shm"])
def test_pseudo_file_systems_are_never_mounted(host: dict[str, Path], path: str) -> None:
    with pytest.raises(FileGrantError, match="never granted"):
        FilePolicy().check(spec(host["own"], "x.wasm", (path,)), operator=True)


@pytest.mark.parametrize("module", ["/dev/zero", "/proc/self/environ", "file:///proc/self/environ"])
def test_pseudo_files_are_never_read_as_modules(host: dict[str, Path], module: str) -> None:
    with pytest.raises(FileGrantError, match="never granted"):
        FilePolicy().check(spec(host["own"], module), operator=True)


def test_the_admin_api_gets_allowed_folders_only(host: dict[str, Path]) -> None:
    policy(host).check(spec(host["own"], str(host["allowed"] / "m.wasm"), (str(host["allowed"] / "data"),)),
                       operator=False)
    with pytest.raises(FileGrantError, match="outside the folders"):
        policy(host).check(spec(host["own"], "m.wasm"), operator=False)  # its "own folder" is a claim
    with pytest.raises(FileGrantError, match="none is allowed"):
        policy(host, allowed=False).check(spec(host["own"], str(host["allowed"] / "m.wasm")), operator=False)


def test_the_operator_keeps_its_own_folder(host: dict[str, Path]) -> None:
    policy(host).check(spec(host["own"], "m.wasm"), operator=True)
    with pytest.raises(FileGrantError, match="outside the folders"):
        policy(host).check(spec(host["own"], str(host["other"] / "m.wasm")), operator=True)
    policy(host, allowed=False).check(spec(host["own"], str(host["other"] / "m.wasm")), operator=True)


def test_symlinks_are_judged_by_their_target(host: dict[str, Path]) -> None:
    (host["allowed"] / "to-state").symlink_to(host["state"])
    (host["allowed"] / "to-other.wasm").symlink_to(host["other"] / "m.wasm")
    with pytest.raises(FileGrantError, match="never granted"):
        policy(host).check(spec(host["own"], "x.wasm", (str(host["allowed"] / "to-state"),)), operator=False)
    with pytest.raises(FileGrantError, match="outside the folders"):
        policy(host).check(spec(host["own"], str(host["allowed"] / "to-other.wasm")), operator=False)


def test_a_mount_must_be_a_directory(host: dict[str, Path]) -> None:
    with pytest.raises(FileGrantError, match=r"capabilities\.files\[0\]\.source .* is not a directory"):
        policy(host).check(spec(host["own"], "m.wasm", (str(host["own"] / "missing"),)), operator=True)
