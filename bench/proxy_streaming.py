"""What streaming a wasi:http component's response costs: sequential keep-alive GETs over loopback.

    .venv/bin/python bench/proxy_streaming.py

A real ``wasmlet serve`` (one worker) with ``proxy_hello.wasm`` (one 6-byte write) and
``proxy_guest.wasm``'s ``/stream?300`` (300 writes of ~10 bytes, each flushed). To compare
with the buffered path, run it again with ``ProxyHandler.streams_response = False``
(``docs/benchmarks.md``, "Streamed wasi:http responses").
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import GUESTS, Server, free_port, write_manifest

CASES = (("/", 3000), ("/g/stream?300", 500))


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    manifest = write_manifest(tmp / "m.yaml", [
        {"name": "hello", "properties": {"moduleURL": str(GUESTS / "components" / "proxy_hello.wasm"), "route": "/"}},
        {"name": "guest", "properties": {"moduleURL": str(GUESTS / "components" / "proxy_guest.wasm"),
                                         "route": "/g"}},
    ], name="b")
    env = dict(os.environ, WASMLET_TEST_LOG=str(tmp / "log"), WASMLET_CACHE_DIR=str(tmp / "cache"),
               WASMLET_RUNTIME_DIR=str(tmp / "run"))
    server = Server([str(manifest), "--workers", "1"], free_port(), env, tmp / "state")
    try:
        server.wait_ready()
        with httpx.Client() as client:
            for path, count in CASES:
                for _ in range(100):  # warm-up
                    client.get(server.url + path)
                times = []
                for _ in range(count):
                    started = time.perf_counter()
                    reply = client.get(server.url + path)
                    times.append(time.perf_counter() - started)
                    assert reply.status_code == 200
                times.sort()
                print(f"{path:16} n={count} p50={times[len(times) // 2] * 1e3:.3f} ms "
                      f"p99={times[int(len(times) * 0.99)] * 1e3:.3f} ms mean={statistics.mean(times) * 1e3:.3f} ms")
    finally:
        server.stop(timeout=10)


if __name__ == "__main__":
    main()
