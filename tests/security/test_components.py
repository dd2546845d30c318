"""Issue 14, Low: `wasi:cli` components get WAGI's sandbox; a swapped preamble breaks a signature.

Against a real `wasmlet serve`. Components used to skip the import check and
have their `files` grants silently ignored; now a component that imports
file-system functions it was not granted is refused at deploy, a `files`
grant is the directory it sees, and one that could sleep past its deadline
(WASI 0.2 waits in native code no deadline reaches) is refused. And the
signed hash did not cover the module's 8-byte preamble.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from tests.conftest import GUESTS, Server, write_manifest

Serve = Callable[..., Server]
SECURITY = GUESTS / "security"
COMPONENT_PREAMBLE = b"\0asm\x0d\x00\x01\x00"
MODULE_PREAMBLE = b"\0asm\x01\x00\x00\x00"


def wasmlet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wasmlet", *args], capture_output=True, text=True, timeout=60)


def refused(manifest: Path) -> str:
    result = wasmlet("serve", str(manifest), "--listen", "127.0.0.1:0", "--admin-listen", "none")
    assert result.returncode == 1, result.stderr
    return result.stderr


def test_a_components_files_grant_is_what_it_sees(serve: Serve, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "hello.txt").write_text("granted to the component\n")
    (tmp_path / "secret.txt").write_text("host secret\n")
    manifest = write_manifest(tmp_path / "files.yaml", [{"name": "reader", "properties": {
        "moduleURL": str(SECURITY / "files_component.wasm"),
        "capabilities": {"files": [{"source": str(data), "destination": "/data"}]}}}], name="c")
    server = serve(str(manifest))
    body = httpx.get(server.url + "/", timeout=10).text
    assert body == "preopen /data\ncontent: granted to the component\n"  # the grant, and nothing else


def test_a_component_importing_files_without_a_grant_is_refused(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "nofiles.yaml", [{"name": "reader", "properties": {
        "moduleURL": str(SECURITY / "files_component.wasm")}}], name="c")
    stderr = refused(manifest)
    assert "capabilities do not grant" in stderr
    assert "wasi:filesystem/types::[method]descriptor.open-at" in stderr


def test_a_component_that_could_sleep_is_refused(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "sleep.yaml", [{"name": "sleeper", "properties": {
        "moduleURL": str(SECURITY / "sleep_component.wasm"), "timeout": "2s"}}], name="c")
    stderr = refused(manifest)
    assert "wasi:clocks/monotonic-clock::subscribe-duration" in stderr and "cannot sleep" in stderr


def test_a_signed_components_preamble_cannot_be_swapped(tmp_path: Path) -> None:
    keys, trust = tmp_path / "keys", tmp_path / "trust"
    assert wasmlet("keygen", str(keys), "--name", "root").returncode == 0
    assert wasmlet("keygen", str(keys), "--name", "publisher").returncode == 0
    (trust / "roots").mkdir(parents=True)
    shutil.copy(keys / "root.pub", trust / "roots" / "root.pub")
    cert = tmp_path / "publisher.cert"
    assert wasmlet("certify", "--root-key", str(keys / "root.key"), "--publisher", str(keys / "publisher.pub"),
                   "--scope", "c/*", "--not-after", "30d", "-o", str(cert)).returncode == 0
    signed = tmp_path / "component.wasm"
    shutil.copy(GUESTS / "components" / "cgi_p2.wasm", signed)
    assert wasmlet("sign", str(signed), "--key", str(keys / "publisher.key"), "--cert", str(cert)).returncode == 0
    assert wasmlet("verify", str(signed), "--trust", str(trust), "--subject", "c/app").returncode == 0
    data = signed.read_bytes()
    assert data.startswith(COMPONENT_PREAMBLE)
    swapped = tmp_path / "swapped.wasm"
    swapped.write_bytes(MODULE_PREAMBLE + data[8:])  # same signed bytes, read as a core module
    verified = wasmlet("verify", str(swapped), "--trust", str(trust), "--subject", "c/app")
    assert verified.returncode != 0 and "does not match the hash signed" in verified.stderr, verified.stderr
    manifest = write_manifest(tmp_path / "signed.yaml", [{"name": "app", "properties": {
        "moduleURL": str(swapped)}}], name="c")
    result = wasmlet("serve", str(manifest), "--trust", str(trust), "--listen", "127.0.0.1:0",
                     "--admin-listen", "none")
    assert result.returncode == 1 and "tampered" in result.stderr, result.stderr
