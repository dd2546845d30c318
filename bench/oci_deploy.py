"""OCI distribution: deploy-to-first-response and blob throughput against a local registry.

Starts Debian's ``docker-registry`` on 127.0.0.1 (storage in a temporary
directory), then measures, in this process:

* deploy-to-first-response for a module whose ``moduleURL`` is ``oci://``:
  ``deploy_plan`` (resolve the tag, pull, verify, compile) + ``Host`` + the
  first request through the WAGI handler. *cold*: an empty cache (nothing
  pulled, nothing compiled); *warm*: the same cache again (blobs and compiled
  artifact present; the tag is still resolved with one manifest GET);
  *offline*: warm, with the registry stopped (the tag index answers);
  *file*: the same module from a local path with a warm cache, the baseline.
* push and pull throughput of a 20 MB module (a valid module whose data
  segment holds 20 MB; it answers requests too), each on fresh content so no
  blob is skipped as already present.

    .venv/bin/python bench/oci_deploy.py [--repeat 5] [--size-mb 20]

Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import wasmtime

from _common import HELLO_WASM, deploy_plan, free_port, machine
from wasmlet.engine import BlobStore
from wasmlet.guest import CgiRequest
from wasmlet.plan import Plan
from wasmlet.registry import pull_module, push_module
from wasmlet.server import Host

REQUEST = CgiRequest(method="GET", path="/", raw_path="/", query="", headers=(("host", "bench"),), body=b"")
RESPONSE = "Content-Type: text/plain\\n\\nbig\\n"  # 30 bytes once unescaped


def big_module(size: int, seed: int) -> bytes:
    """A WASI module with a ``size``-byte data segment that prints a small CGI response."""
    # base64 text needs no escaping inside a WAT string and does not compress.
    payload = base64.b64encode(os.urandom(size * 3 // 4 + 3))[:size].decode()
    pages = (size + (1 << 20)) // 65536 + 2
    wat = f"""(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") {pages})
  (data (i32.const 16) "{RESPONSE}")
  (data (i32.const 1048576) "seed{seed:08d}{payload}")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 30))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""
    return bytes(wasmtime.wat2wasm(wat))


class Registry:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = {"version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
                  "storage": {"filesystem": {"rootdirectory": str(workdir / "storage")}},
                  "http": {"addr": self.host, "secret": "bench"}}
        (workdir / "config.yml").write_text(json.dumps(config))
        self.proc = subprocess.Popen(["docker-registry", "serve", str(workdir / "config.yml")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://{self.host}/v2/", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def manifest(path: Path, url: str, memory: str) -> Path:
    path.write_text(
        "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: bench\nspec:\n  components:\n"
        f"    - name: app\n      type: wasm\n      properties:\n        moduleURL: {url}\n"
        f'        memoryLimit: "{memory}"\n'
    )
    return path


def deploy_to_first_response(app: Path, cache: Path) -> tuple[float, bytes]:
    start = time.perf_counter()
    plan: Plan = deploy_plan([app], cache_dir=cache)
    host = Host(plan)
    host.start()
    try:
        body = host.apps["bench/app"].handler.handle(REQUEST).response.body
    finally:
        host.close()
    return time.perf_counter() - start, body


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:8.1f} ms (min {min(samples) * 1000:.1f}, n={len(samples)})"


def deploy_figures(reg: Registry, work: Path, label: str, module: bytes, memory: str, repeat: int) -> None:
    push_module(module, f"oci://{reg.host}/bench/{label}:v1")
    app = manifest(work / f"{label}.yaml", f"oci://{reg.host}/bench/{label}:v1", memory)
    cold, warm = [], []
    for n in range(repeat):
        cache = work / f"cache-{label}-{n}"
        seconds, body = deploy_to_first_response(app, cache)
        cold.append(seconds)
        assert body, "no response body"
        warm.append(deploy_to_first_response(app, cache)[0])
        if n < repeat - 1:
            shutil.rmtree(cache)
    # Baseline: the same module from a local file, warm cache; the difference is the registry round trip.
    local = work / f"{label}.wasm"
    local.write_bytes(module)
    app_file = manifest(work / f"{label}-file.yaml", str(local), memory)
    deploy_to_first_response(app_file, work / f"cache-{label}-file")
    baseline = [deploy_to_first_response(app_file, work / f"cache-{label}-file")[0] for _ in range(repeat)]
    print(f"deploy->first response  {label:5} cold  {median_ms(cold)}")
    print(f"deploy->first response  {label:5} warm  {median_ms(warm)}")
    print(f"deploy->first response  {label:5} file  {median_ms(baseline)}  (local path, warm: no registry)")


def throughput(reg: Registry, work: Path, size: int, repeat: int) -> None:
    push_s, pull_s = [], []
    for n in range(repeat):
        module = big_module(size, n)
        ref = f"oci://{reg.host}/bench/big{n}:v1"
        start = time.perf_counter()
        push_module(module, ref)
        push_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        pulled = pull_module(ref, BlobStore(work / f"pull-{n}"))
        pull_s.append(time.perf_counter() - start)
        assert pulled.data == module
    mb = size / 1e6

    def rate(samples: list[float]) -> str:
        return f"{mb / statistics.median(samples):7.1f} MB/s (median {statistics.median(samples) * 1000:.0f} ms)"

    print(f"push {mb:.0f} MB module  {rate(push_s)}  (HEAD + POST + PUT of the layer, config, manifest)")
    print(f"pull {mb:.0f} MB module  {rate(pull_s)}  (manifest, config, layer; sha256-verified, stored)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--size-mb", type=int, default=20)
    args = parser.parse_args()
    if shutil.which("docker-registry") is None:
        raise SystemExit("docker-registry is not installed (apt-get install -y docker-registry)")
    size = args.size_mb * 1_000_000

    print(machine())
    with tempfile.TemporaryDirectory(prefix="wasmlet-oci-bench-") as tmp:
        work = Path(tmp)
        reg = Registry(work)
        try:
            big = big_module(size, 999)
            print(f"modules: hello.wasm {HELLO_WASM.stat().st_size} bytes; big {len(big)} bytes")
            deploy_figures(reg, work, "hello", HELLO_WASM.read_bytes(), "16Mi", args.repeat)
            deploy_figures(reg, work, "big", big, "64Mi", max(2, args.repeat // 2))
            throughput(reg, work, size, args.repeat)
            # Offline: the last warm caches again, with the registry gone.
            reg.stop()
            for label in ("hello", "big"):
                app, cache = work / f"{label}.yaml", sorted(work.glob(f"cache-{label}-[0-9]*"))[-1]
                samples = [deploy_to_first_response(app, cache)[0] for _ in range(3)]
                print(f"deploy->first response  {label:5} offline {median_ms(samples)}  (registry stopped)")
        finally:
            reg.stop()


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.ERROR)  # the offline runs warn on purpose
    main()
