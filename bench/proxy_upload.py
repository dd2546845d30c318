"""Time to first byte of a 1 MiB upload echoed by a wasi:http component: body streamed in vs buffered.

    .venv/bin/python bench/proxy_upload.py [--rounds 20]

A real ``wasmlet serve`` (one worker) with ``proxy_stream.wasm``'s ``/blocking``
(echoes each chunk as it reads it, 64 KiB reads). The client (a raw socket)
sends a 1 MiB body with a Content-Length, in 64 KiB writes: flat out over
loopback, and paced at one write per 10 ms (a ~6.5 MB/s client). It records the
time from its first byte sent to the first byte of the echo (TTFB) and to the
end of the response. Then what streaming costs a small body: sequential
keep-alive POSTs of 100 bytes to ``/count`` (httpx). Two servers at once, the rounds alternating between them:
one as shipped (the body streams in), one with
``ProxyHandler.streams_request = False`` patched into every process of that
server (``sitecustomize`` on ``PYTHONPATH``): the body read whole first, as
before (``docs/benchmarks.md``, "Streamed wasi:http request bodies").
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import httpx
from tests.conftest import GUESTS, Server, free_port, write_manifest

SIZE = 1 << 20
WRITE = 64 << 10
_BUFFERED = """import wasmlet.guest._proxy._handler as handler
handler.ProxyHandler.streams_request = False  # bench/proxy_upload.py: the body is read whole first
"""


def upload(port: int, pace: float) -> tuple[float, float]:
    """(TTFB, total) in seconds for one 1 MiB echo."""
    body = b"u" * SIZE
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send() -> None:
        for at in range(0, SIZE, WRITE):
            sock.sendall(body[at:at + WRITE])
            if pace:
                time.sleep(pace)

    try:
        started = time.perf_counter()
        sock.sendall(b"POST /blocking HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: %d\r\n\r\n" % SIZE)
        sender = threading.Thread(target=send)
        sender.start()
        received, first = b"", 0.0
        while not received.endswith(b"\r\n0\r\n\r\n"):
            data = sock.recv(1 << 20)
            assert data, "connection closed early"
            received += data
            if not first and b"\r\n\r\n" in received and len(received.partition(b"\r\n\r\n")[2]) > 8:
                first = time.perf_counter() - started  # a chunk's size line and its first bytes
        total = time.perf_counter() - started
        sender.join()
    finally:
        sock.close()
    assert received.startswith(b"HTTP/1.1 200"), received[:200]
    return first, total


def start(mode: str) -> Server:
    tmp = Path(tempfile.mkdtemp())
    manifest = write_manifest(tmp / "m.yaml", [
        {"name": "up", "properties": {"moduleURL": str(GUESTS / "components" / "proxy_stream.wasm"), "route": "/",
                                      "timeout": "30s", "maxBodySize": "2Mi", "maxResponseSize": "2Mi"}},
    ], name="b")
    env = dict(os.environ, WASMLET_TEST_LOG=str(tmp / "log"), WASMLET_CACHE_DIR=str(tmp / "cache"),
               WASMLET_RUNTIME_DIR=str(tmp / "run"))
    if mode == "buffered":
        (tmp / "patch").mkdir()
        (tmp / "patch" / "sitecustomize.py").write_text(_BUFFERED)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp / "patch"), env.get("PYTHONPATH", "")]))
    server = Server([str(manifest), "--workers", "1"], free_port(), env, tmp / "state")
    server.wait_ready()
    return server


def small_posts(server: Server, count: int) -> list[float]:
    times = []
    with httpx.Client() as client:
        for i in range(100 + count):
            started = time.perf_counter()
            reply = client.post(server.url + "/count", content=b"s" * 100)
            if i >= 100:  # after a warm-up
                times.append(time.perf_counter() - started)
            assert reply.text == "100 bytes, closed\n"
    return sorted(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    modes = ("streamed", "buffered")
    servers: dict[str, Server] = {}
    try:
        for mode in modes:
            servers[mode] = start(mode)
        # Both servers run at once and the rounds alternate, so the machine's load drifts over both alike.
        for pace in (0.0, 0.01):
            samples: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
            for round_ in range(3 + args.rounds):
                for mode in modes:
                    sample = upload(servers[mode].port, pace)
                    if round_ >= 3:  # after a warm-up
                        samples[mode].append(sample)
            label = "flat out" if not pace else f"paced {pace * 1e3:.0f} ms/64 KiB"
            for mode in modes:
                ttfb = sorted(s[0] for s in samples[mode])
                total = sorted(s[1] for s in samples[mode])
                print(f"{mode:9} {label:20} n={args.rounds} TTFB p50={statistics.median(ttfb) * 1e3:7.1f} ms "
                      f"min={ttfb[0] * 1e3:7.1f} ms   total p50={statistics.median(total) * 1e3:7.1f} ms "
                      f"min={total[0] * 1e3:7.1f} ms")
        for mode in modes:
            times = small_posts(servers[mode], 1000)
            print(f"{mode:9} {'POST 100 B':20} n={len(times)} p50={statistics.median(times) * 1e3:7.3f} ms "
                  f"p99={times[int(len(times) * 0.99)] * 1e3:7.3f} ms")
    finally:
        for server in servers.values():
            server.stop(timeout=10)


if __name__ == "__main__":
    main()
