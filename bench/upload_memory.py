"""A worker's RSS before, during and after 60 unfinished 10 MiB uploads (issue 14, "Slowloris and memory").

Each client sends the headers of a 10 MiB POST to the echo app and all of
its body but the last byte, then waits; once every upload is in, all clients
leave at once. Printed: the worker's RSS before, at its peak, while the
uploads are held, and 5 s and 30 s after the clients left, with how many
uploads were refused (503 body-memory) and abandoned (client-closed). One worker, so the figures are one
process's. Nothing is asserted (tests/security/test_http_attacks.py holds the
bound on a smaller run).

    .venv/bin/python bench/upload_memory.py [--clients 60] [--size-mib 10] [-- SERVE OPTIONS...]
"""

from __future__ import annotations

import argparse
import re
import socket
import threading
import time

from _common import (
    ECHO_WASM,
    OUT,
    WASMLET,
    free_port,
    http_get,
    machine,
    memory_kib,
    running,
    temp_cache,
    wasmlet_env,
)

MiB = 1024 * 1024


def upload(port: int, size: int, sockets: list[socket.socket], errors: list[str]) -> None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    sockets.append(sock)
    try:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\n\r\n" % size)
        left = size - 1
        chunk = b"x" * 65536
        while left:
            sent = min(left, len(chunk))
            sock.sendall(chunk[:sent])
            left -= sent
    except OSError as exc:  # a refused upload is closed under its sender
        errors.append(type(exc).__name__)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=60)
    parser.add_argument("--size-mib", type=int, default=10)
    parser.add_argument("serve_options", nargs="*", help="after --: more `wasmlet serve` options")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = OUT / "upload_memory.yaml"
    manifest.write_text(
        "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: m\nspec:\n  components:\n"
        f"    - name: echo\n      type: wasm\n      properties:\n        moduleURL: {ECHO_WASM}\n"
        "        route: /echo\n")
    port, admin = free_port(), free_port()
    with temp_cache() as cache, running([WASMLET, "serve", str(manifest), "--listen", f"127.0.0.1:{port}",
                                         "--admin-listen", f"127.0.0.1:{admin}", "--workers", "1",
                                         *args.serve_options], port, env=wasmlet_env(cache),
                                        log=OUT / "upload_memory.log") as server:
        workers = server.pids()[1:]
        assert len(workers) == 1, workers

        def rss() -> float:
            return memory_kib(workers)[0] / 1024

        time.sleep(1)
        before = rss()
        sockets: list[socket.socket] = []
        errors: list[str] = []
        threads = [threading.Thread(target=upload, args=(port, args.size_mib * MiB, sockets, errors))
                   for _ in range(args.clients)]
        peak = before
        started = time.monotonic()
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads) and time.monotonic() - started < 300:
            peak = max(peak, rss())
            time.sleep(0.02)
        time.sleep(1)
        held = rss()
        peak = max(peak, held)
        for sock in sockets:
            sock.close()
        time.sleep(5)
        after5 = rss()
        time.sleep(25)
        after30 = rss()
        metrics = http_get(admin, "/metrics")[1].decode()
        causes = dict(re.findall(r'^wasmlet_guest_failures_total\{app="m/echo",cause="([a-z-]+)"\} ([0-9.]+)$',
                                 metrics, re.M))
    print(machine())
    print(f"wasmlet serve --workers 1 {' '.join(args.serve_options)}".rstrip())
    print(f"{args.clients} unfinished {args.size_mib} MiB uploads; answers by cause: "
          f"{ {cause: int(float(n)) for cause, n in causes.items()} }; {len(errors)} cut under their sender")
    print(f"worker RSS (MiB): before {before:.0f}, peak {peak:.0f}, held {held:.0f}, "
          f"5 s after the clients left {after5:.0f}, 30 s after {after30:.0f}")


if __name__ == "__main__":
    main()
