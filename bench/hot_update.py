"""Hot updates: how long `wasmlet deploy` takes, and from its return to the first response of the new version.

For a small module (~100 bytes of WAT) and a module of several MB (generated
WAT), with a cold cache (the new version must be compiled) and a warm one
(the same module bytes were compiled before: a redeploy with another
environment). The deploy call returns only after every worker serves the
new version, so the first response after it is always the new one; the
second figure measures that request.

    .venv/bin/python bench/hot_update.py [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import wasmtime
import yaml

from _common import ROOT, free_port, machine, running, wasmlet_env


def module(label: str, functions: int = 0) -> bytes:
    body = f"Content-Type: text/plain\n\n{label}\n"
    escaped = "".join(f"\\{b:02x}" for b in body.encode())
    filler = "\n".join(
        f'(func $f{i} (param i32) (result i32) '
        + " ".join(f"(local.set 0 (i32.add (i32.mul (local.get 0) (i32.const {j + 3})) (i32.const {i})))"
                   for j in range(20))
        + " (local.get 0))" for i in range(functions))
    wat = f"""(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 64) "{escaped}")
      (data (i32.const 0) "\\40\\00\\00\\00\\{len(body):02x}\\00\\00\\00")
      {filler}
      (func (export "_start") (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))"""
    return wasmtime.wat2wasm(wat)


def manifest(path: Path, wasm: Path, env_value: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "core.oam.dev/v1beta1", "kind": "Application", "metadata": {"name": "bench"},
        "spec": {"components": [{"name": "web", "type": "wasm", "properties": {
            "moduleURL": str(wasm), "route": "/", "environment": [{"name": "V", "value": env_value}]}}]}}))
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    print(machine())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port, admin = free_port(), free_port()
        env = wasmlet_env(work / "cache")
        env["WASMLET_STATE_DIR"] = str(work / "state")
        first = work / "v0.wasm"
        first.write_bytes(module("v0"))
        argv = [str(ROOT / ".venv" / "bin" / "wasmlet"), "--log-level", "warning", "serve",
                str(manifest(work / "v0.yaml", first, "0")), "--listen", f"127.0.0.1:{port}",
                "--admin-listen", f"127.0.0.1:{admin}", "--workers", "2",
                "--allow-files", str(work)]  # the modules deployed through the admin API
        with running(argv, port, env=env):
            token = (work / "state" / "admin-token").read_text().strip()
            client = httpx.Client(base_url=f"http://127.0.0.1:{admin}", timeout=300,
                                  headers={"Authorization": f"Bearer {token}"})
            public = httpx.Client(base_url=f"http://127.0.0.1:{port}")  # made once: a new client costs ~30 ms
            public.get("/")
            counter = 0
            for size_name, functions in (("small", 0), ("several MB", 7000)):
                for _ in range(args.reps):
                    counter += 1
                    label = f"v{counter}"
                    wasm = work / f"{label}.wasm"
                    wasm.write_bytes(module(label, functions))
                    size = wasm.stat().st_size
                    for cache_state, env_value in (("cold", "a"), ("warm", "b")):
                        path = manifest(work / f"{label}-{cache_state}.yaml", wasm, env_value)
                        started = time.perf_counter()
                        reply = client.post("/v1/deploy", params={"source": str(path)}, content=path.read_text())
                        returned = time.perf_counter()
                        reply.raise_for_status()
                        answer = public.get("/").text.strip()
                        first_response = time.perf_counter()
                        assert answer == label, (answer, label)
                        rows.append((size_name, size, cache_state, returned - started, first_response - returned))
    print("\n| module | bytes | cache | deploy call (ms) | deploy return -> first response of new version (ms) |")
    print("|---|---:|---|---:|---:|")
    for key in sorted({(r[0], r[2]) for r in rows}):
        chosen = [r for r in rows if (r[0], r[2]) == key]
        print(f"| {key[0]} | {chosen[0][1]} | {key[1]} | {statistics.median(r[3] for r in chosen) * 1000:.1f} | "
              f"{statistics.median(r[4] for r in chosen) * 1000:.2f} |")


if __name__ == "__main__":
    main()
