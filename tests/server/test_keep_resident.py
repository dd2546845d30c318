"""``wasmlet serve --pool-keep-resident``: how much of an instance's memory stays mapped for the next one.

Observed from outside, on a real ``wasmlet serve``: the worker's minor page faults per request
(``/proc/PID/stat``) for a guest that writes every page of 4 MiB. Released memory (the default
keeps 1 MiB) faults in again at every request; kept memory does not.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import wasmtime
from tests.conftest import Server, write_manifest
from tests.server.test_zygote import zygote_and_workers

from wasmlet import ConfigError
from wasmlet._cli._serve_command import engine_settings

Serve = Callable[..., Server]

# 64 pages (4 MiB), one word written in each, then a CGI answer on stdout.
TOUCH_4MIB = r"""
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 64)
  (data (i32.const 16) "Content-Type: text/plain\n\ntouched\n")
  (func (export "_start") (local $at i32)
    (local.set $at (i32.const 4096))
    (loop $pages
      (i32.store (local.get $at) (i32.const 1))
      (local.set $at (i32.add (local.get $at) (i32.const 4096)))
      (br_if $pages (i32.lt_u (local.get $at) (i32.const 4194304))))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 34))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""


def minor_faults(pid: int) -> int:
    # proc(5): minflt is the 10th field of /proc/PID/stat; after the ")" that ends comm, the 8th.
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[7])


def faults_per_request(server: Server, requests: int = 12) -> float:
    _, (worker,) = zygote_and_workers(server)
    for _ in range(3):  # warm: the module's slot, the worker's own allocations
        assert httpx.get(server.url + "/", timeout=10).text == "touched\n"
    before = minor_faults(worker)
    for _ in range(requests):
        assert httpx.get(server.url + "/", timeout=10).text == "touched\n"
    return (minor_faults(worker) - before) / requests


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    module = tmp_path / "touch.wasm"
    module.write_bytes(wasmtime.wat2wasm(TOUCH_4MIB))
    properties = {"moduleURL": str(module), "memoryLimit": "16Mi"}
    return write_manifest(tmp_path / "app.yaml", [{"name": "touch", "properties": properties}])


def test_kept_memory_is_not_faulted_in_again(serve: Serve, manifest: Path) -> None:
    released = faults_per_request(serve(str(manifest)))
    kept = faults_per_request(serve(str(manifest), "--pool-keep-resident", "8Mi"))
    # 3 of the 4 MiB are given back after each request by default: ~768 pages fault in again.
    assert released > 600, released
    assert kept < released / 4, (kept, released)


def test_engine_settings_from_the_flag() -> None:
    assert engine_settings("1Mi").pool_keep_resident == 1 << 20  # the default, as before
    assert engine_settings("16Mi").pool_keep_resident == 16 << 20
    assert engine_settings("0").pool_keep_resident == 0
    assert engine_settings("1Gi").pool_keep_resident == 1 << 30
    for bad, words in [("1Gi1", "expected a quantity"), ("-1", "expected a quantity"), ("lots", "expected a quantity"),
                       ("1025Mi", "expected 0 to 1024Mi"), ("1Pi", "expected 0 to 1024Mi"),
                       ("1000000000000000000000", "expected a quantity of at most")]:
        with pytest.raises(ConfigError, match=f"--pool-keep-resident: {words}"):
            engine_settings(bad)


def test_a_bad_value_is_refused_before_anything_is_deployed(manifest: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = subprocess.run(
        [sys.executable, "-m", "wasmlet", "serve", str(manifest), "--pool-keep-resident", "2Gi",
         "--listen", "127.0.0.1:0", "--admin-listen", "none", "--state-dir", str(state)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "--pool-keep-resident: expected 0 to 1024Mi (the pool's largest memory), got '2Gi'" in result.stderr
    assert not state.exists()  # refused before the state was opened: nothing deployed, nothing recorded
