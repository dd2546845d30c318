"""`wasmlet validate` checks what it can offline, and a file that is not WebAssembly is named as such (issue 10, 5).

Every test drives the CLI as a subprocess, as a user types it, with its own
state and cache folders (conftest), and asserts on what is printed: the path,
the field, the fix.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.conftest import EXAMPLES, GUESTS, Server, write_manifest

HELLO = EXAMPLES / "hello" / "hello.wasm"
COMPONENT = GUESTS / "components" / "cgi_p2.wasm"
FIELD = "spec.components[0].properties"
NOT_WAT = "expected '('"  # what wasmtime's text parser said when it was handed a text file


def wasmlet(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wasmlet", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def one(tmp_path: Path, name: str = "web", **properties: object) -> Path:
    return write_manifest(tmp_path / f"{name}.yaml", [{"name": name, "properties": properties}], name="shop")


def test_a_good_manifest_lists_each_module_it_checked(tmp_path: Path) -> None:
    (tmp_path / "static").mkdir()
    manifest = write_manifest(tmp_path / "app.yaml", [
        {"name": "hello", "properties": {"moduleURL": str(HELLO), "route": "/",
                                         "moduleDigest": "sha256:" + hashlib.sha256(HELLO.read_bytes()).hexdigest(),
                                         "capabilities": {"files": [{"source": "static", "destination": "/s"}]}}},
        {"name": "cgi", "properties": {"moduleURL": f"file://{COMPONENT}", "route": "/cgi"}},
    ], name="shop")
    result = wasmlet("validate", str(manifest))
    assert result.returncode == 0, result.stderr
    assert f"ok  shop/hello  route=/  module={HELLO}  (module, {HELLO.stat().st_size} bytes, sha256:" in result.stdout
    assert f"ok  shop/cgi  route=/cgi  module=file://{COMPONENT}  (component, " in result.stdout
    assert result.stderr == ""


def test_a_missing_module_names_the_path_it_looked_at(tmp_path: Path) -> None:
    manifest = one(tmp_path, moduleURL="build/web.wasm")
    result = wasmlet("validate", str(manifest))
    assert result.returncode == 1
    assert f"{FIELD}.moduleURL: component shop/web: {tmp_path / 'build' / 'web.wasm'} does not exist " \
           f"(relative to the manifest's folder {tmp_path})" in result.stderr
    assert result.stdout == ""


def test_a_wrong_digest_names_both_digests_and_the_fix(tmp_path: Path) -> None:
    actual = hashlib.sha256(HELLO.read_bytes()).hexdigest()
    pinned = "sha256:" + "0" * 64
    result = wasmlet("validate", str(one(tmp_path, moduleURL=str(HELLO), moduleDigest=pinned)))
    assert result.returncode == 1
    assert f"{FIELD}.moduleDigest: component shop/web: {HELLO} has sha256:{actual}, " \
           f"but moduleDigest pins {pinned}" in result.stderr
    assert f"set moduleDigest: sha256:{actual}" in result.stderr


@pytest.mark.parametrize(("content", "said"), [
    (b"Hello, this is my README\n", "it is a text file (it begins 'Hello, this is my README')"),
    (b";; my module\n(module (func (export \"_start\")))\n", "it is WebAssembly text (WAT)"),
    (b"", "the file is empty"),
    (b"\x7fELF\x02\x01\x01" + bytes(64), "it is an ELF executable (a native build"),
    (b"\x1f\x8b\x08\x00" + bytes(32), "it is a gzip archive"),
    (b"\0asm\x02\0\0\0", "it is a WebAssembly binary of an unknown version (bytes 4-7: 02 00 00 00"),
    (bytes(range(200, 256)), "it begins with the bytes c8 c9 ca cb"),
])
def test_a_file_that_is_not_webassembly_is_named_as_such(tmp_path: Path, content: bytes, said: str) -> None:
    module = tmp_path / "web.wasm"
    module.write_bytes(content)
    result = wasmlet("validate", str(one(tmp_path, moduleURL="web.wasm")))
    assert result.returncode == 1
    assert f"{FIELD}.moduleURL: component shop/web: {module} is not WebAssembly: {said}" in result.stderr
    assert NOT_WAT not in result.stderr


def test_the_wat_refusal_says_how_to_convert(tmp_path: Path) -> None:
    (tmp_path / "web.wat").write_text("(module)\n")
    result = wasmlet("validate", str(one(tmp_path, moduleURL="web.wat")))
    assert result.returncode == 1
    assert "convert it first (wasm-tools parse FILE.wat -o FILE.wasm, or wat2wasm)" in result.stderr


def test_a_directory_or_a_fifo_is_not_a_module_and_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "dir.wasm").mkdir()
    os.mkfifo(tmp_path / "fifo.wasm")  # opening it to read would wait forever for a writer
    manifest = write_manifest(tmp_path / "app.yaml", [
        {"name": "dir", "properties": {"moduleURL": "dir.wasm", "route": "/d"}},
        {"name": "fifo", "properties": {"moduleURL": "fifo.wasm", "route": "/f"}},
    ], name="shop")
    started = time.monotonic()
    result = wasmlet("validate", str(manifest), timeout=30)
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    assert f"spec.components[0].properties.moduleURL: component shop/dir: {tmp_path / 'dir.wasm'} is a directory; " \
           "expected a .wasm file" in result.stderr
    assert f"spec.components[1].properties.moduleURL: component shop/fifo: {tmp_path / 'fifo.wasm'} is not a " \
           "regular file" in result.stderr


def test_a_missing_files_source_names_the_mount(tmp_path: Path) -> None:
    (tmp_path / "assets.txt").write_text("a file, not a folder")
    manifest = one(tmp_path, moduleURL=str(HELLO), capabilities={"files": [
        {"source": "static", "destination": "/static"}, {"source": "assets.txt", "destination": "/assets"}]})
    result = wasmlet("validate", str(manifest))
    assert result.returncode == 1
    assert f"{FIELD}.capabilities.files[0].source: component shop/web: {tmp_path / 'static'} does not exist; " \
           "expected a directory to mount at /static" in result.stderr
    assert f"{FIELD}.capabilities.files[1].source: component shop/web: {tmp_path / 'assets.txt'} is not a " \
           "directory" in result.stderr


def test_remote_modules_are_named_as_not_checked_offline(tmp_path: Path) -> None:
    pin = "sha256:" + "a" * 64
    manifest = write_manifest(tmp_path / "app.yaml", [
        {"name": "oci", "properties": {"moduleURL": "oci://registry.example.com/wasm/web:v1", "route": "/o"}},
        {"name": "web", "properties": {"moduleURL": "https://modules.example.com/web.wasm", "moduleDigest": pin,
                                       "route": "/w"}},
    ], name="shop")
    result = wasmlet("validate", str(manifest))
    assert result.returncode == 0, result.stderr
    assert "ok  shop/oci  route=/o  module=oci://registry.example.com/wasm/web:v1  " \
           "(not checked offline: pulled from registry.example.com at deploy)" in result.stdout
    assert "(not checked offline: downloaded from modules.example.com at deploy)" in result.stdout


def test_remote_modules_are_checked_for_what_needs_no_network(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "app.yaml", [
        {"name": "oci", "properties": {"moduleURL": "oci://registry.example.com/Wasm/Web:v1", "route": "/o"}},
        {"name": "web", "properties": {"moduleURL": "https://modules.example.com/web.wasm", "route": "/w"}},
        {"name": "plain", "properties": {"moduleURL": "http://modules.example.com/web.wasm",
                                         "moduleDigest": "sha256:" + "a" * 64, "route": "/p"}},
        {"name": "ftp", "properties": {"moduleURL": "ftp://modules.example.com/web.wasm", "route": "/f"}},
    ], name="shop")
    result = wasmlet("validate", str(manifest))
    assert result.returncode == 1
    assert "spec.components[0].properties.moduleURL: component shop/oci:" in result.stderr
    assert "'Wasm/Web' is not a valid repository name" in result.stderr
    assert "spec.components[1].properties.moduleDigest: component shop/web: a module fetched over https must " \
           "be pinned: add moduleDigest: sha256:<hex>" in result.stderr
    assert "spec.components[2].properties.moduleURL: component shop/plain: plain http is allowed only to a " \
           "loopback host; use https" in result.stderr
    assert "spec.components[3].properties.moduleURL: component shop/ftp: unsupported scheme 'ftp'" in result.stderr


def test_every_manifest_is_reported_not_only_the_first(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = one(tmp_path / "a", moduleURL="gone.wasm")
    second = write_manifest(tmp_path / "b" / "bad.yaml", [{"name": "x", "properties": {"moduleURL": "x.wasm",
                                                                                         "memoryLimit": "lots"}}])
    result = wasmlet("validate", str(first), str(second))
    assert result.returncode == 1
    assert f"{tmp_path / 'a' / 'gone.wasm'} does not exist" in result.stderr
    assert f"{second}: invalid manifest" in result.stderr and "memoryLimit" in result.stderr


def test_the_readmes_seed_manifest_validates() -> None:
    result = wasmlet("validate", str(EXAMPLES / "seed" / "app.yaml"))
    assert result.returncode == 0, result.stderr
    assert "ok  image-processor/resizer  route=/" in result.stdout
    assert "not checked offline: pulled from registry.acme.com at deploy" in result.stdout


# -- a file that is not WebAssembly, deployed --------------------------------------------------------------


def text_module(tmp_path: Path) -> tuple[Path, Path]:
    notes = tmp_path / "notes.txt"
    notes.write_text("remember to build the module first\n")
    return notes, one(tmp_path, moduleURL="notes.txt")


def test_serve_names_a_text_file_and_records_nothing(tmp_path: Path) -> None:
    notes, manifest = text_module(tmp_path)
    state = tmp_path / "state"
    result = wasmlet("serve", str(manifest), "--listen", "127.0.0.1:0", "--admin-listen", "none",
                     "--state-dir", str(state))
    assert result.returncode == 1
    assert f"component shop/web: moduleURL 'notes.txt': {notes} is not WebAssembly: it is a text file " \
           "(it begins 'remember to build the module first')" in result.stderr
    assert NOT_WAT not in result.stderr
    db = sqlite3.connect(state / "state.db")
    try:
        assert db.execute("SELECT COUNT(*) FROM versions").fetchone()[0] == 0
    finally:
        db.close()


def test_compile_and_run_name_a_text_file(tmp_path: Path) -> None:
    notes, _ = text_module(tmp_path)
    for command in ("compile", "run"):
        result = wasmlet(command, str(notes))
        assert result.returncode == 1, command
        assert str(notes) in result.stderr and "not WebAssembly: it is a text file" in result.stderr, result.stderr
        assert NOT_WAT not in result.stderr


def test_deploy_to_a_running_host_names_a_text_file(serve: Callable[..., Server], tmp_path: Path) -> None:
    good = one(tmp_path, name="hello", moduleURL=str(HELLO), route="/")
    server = serve(str(good), "--allow-files", str(tmp_path), "--allow-files", str(HELLO.parent))
    notes, manifest = text_module(tmp_path)
    env = {**os.environ, "WASMLET_ADMIN": server.admin_url, "WASMLET_STATE_DIR": str(server.state_dir)}
    result = subprocess.run([sys.executable, "-m", "wasmlet", "deploy", str(manifest)], capture_output=True,
                            text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert f"{notes} is not WebAssembly: it is a text file" in result.stderr
    assert NOT_WAT not in result.stderr
    apps = server.admin("GET", "/v1/apps").json()
    assert [app["name"] for app in (apps["apps"] if isinstance(apps, dict) else apps)] == ["shop/hello"]
