"""Throughput and tail latency of ``hello`` over HTTP with wrk, every contender in one run.

Contenders, each started, warmed up (2 s of wrk) and measured in turn:

* ``wasmlet serve`` under ``--server uvicorn`` and ``--server granian``, ``--workers 1`` and ``2``;
* ``wasmlet serve --server uvicorn --workers 2`` with several ``--threads``;
* ``node:wasi``, a fresh WASI + ``WebAssembly.Instance`` per request (``bench/node_wasi_server.mjs``);
* native CGI: ``hello.c`` built with gcc, fork+exec per request (``bench/native_cgi_server.mjs``).

wrk runs on the same 2 cores as the server (loopback only), so every figure
includes the client's CPU; compare the rows, not the absolute numbers.

    .venv/bin/python bench/throughput.py [--duration 10] [--connections 64] [--quick]
    .venv/bin/python bench/throughput.py --ab 3   # uvicorn vs granian only, alternated, 3 rounds
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass

from _common import BENCH, HELLO_WASM, OUT, ROOT, WASMLET, free_port, machine, run_wrk, running, temp_cache, wasmlet_env

NODE_FLAGS = ["--no-warnings", "--single-threaded-gc"]  # see docs/benchmarks.md: node 20 crashes without it


@dataclass
class Contender:
    label: str
    argv: list[str]  # "{port}" is replaced by the port


def wasmlet(server: str, workers: int, threads: int = 16) -> Contender:
    manifest = str(ROOT / "examples" / "hello" / "app.yaml")
    return Contender(f"wasmlet {server} w{workers} t{threads}",
                     [WASMLET, "--log-level", "warning", "serve", manifest, "--listen", "127.0.0.1:{port}",
                      "--server", server, "--workers", str(workers), "--threads", str(threads)])


def contenders(quick: bool) -> list[Contender]:
    native = OUT / "hello-native"
    subprocess.run(["gcc", "-O2", str(ROOT / "examples" / "hello" / "hello.c"), "-o", str(native)], check=True)
    node = shutil.which("node") or "node"
    rows = [wasmlet("uvicorn", 1), wasmlet("granian", 1), wasmlet("uvicorn", 2), wasmlet("granian", 2)]
    if not quick:
        rows += [wasmlet("uvicorn", 2, threads) for threads in (1, 4, 64)]
        rows += [wasmlet("granian", 2, threads) for threads in (1, 4)]
    rows += [
        Contender("node:wasi w1", [node, *NODE_FLAGS, str(BENCH / "node_wasi_server.mjs"), str(HELLO_WASM),
                                   "{port}", "1"]),
        Contender("node:wasi w2", [node, *NODE_FLAGS, str(BENCH / "node_wasi_server.mjs"), str(HELLO_WASM),
                                   "{port}", "2"]),
        Contender("native CGI (gcc, fork+exec) w2", [node, str(BENCH / "native_cgi_server.mjs"), str(native),
                                                     "{port}", "2"]),
    ]
    return rows


def measure(contender: Contender, cache: str, seconds: int, connections: int) -> dict[str, float]:
    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in contender.argv]
    log = OUT / f"throughput-{contender.label.replace(' ', '_').replace('/', '')}.log"
    with running(argv, port, env=wasmlet_env(cache), log=log):
        url = f"http://127.0.0.1:{port}/"
        run_wrk(url, seconds=2, connections=connections)  # warm-up
        result = run_wrk(url, seconds=seconds, connections=connections)
    time.sleep(0.5)  # let the ports and CPU settle
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="skip the --threads variations")
    parser.add_argument("--ab", type=int, default=0, metavar="ROUNDS",
                        help="only uvicorn vs granian (workers 2; threads 16 and 1), alternated ROUNDS times")
    args = parser.parse_args()
    if args.ab:
        ab(args.ab, args.duration, args.connections)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    print(machine())
    print(f"\nwrk -t2 -c{args.connections} -d{args.duration}s --latency -s bench/wrk_percentiles.lua URL "
          "(after a 2 s warm-up); latencies in ms\n")
    header = f"| {'server':34s} | {'req/s':>8s} | {'p50':>7s} | {'p99':>7s} | {'p99.99':>7s} | {'errors':>6s} |"
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    results: dict[str, dict[str, float]] = {}
    with temp_cache() as cache:
        for contender in contenders(args.quick):
            try:
                r = measure(contender, cache, args.duration, args.connections)
            except (RuntimeError, TimeoutError, subprocess.SubprocessError) as exc:
                print(f"| {contender.label:34s} | failed: {exc}")
                continue
            results[contender.label] = r
            errors = int(r.get("errors", 0) + r.get("non2xx", 0))
            print(f"| {contender.label:34s} | {r['rps']:8.0f} | {r['p50']:7.2f} | {r['p99']:7.2f} | "
                  f"{r['p99.99']:7.2f} | {errors:6d} |", flush=True)
    (OUT / "throughput.json").write_text(json.dumps(results, indent=2))
    for workers in (1, 2):
        uv, gr = results.get(f"wasmlet uvicorn w{workers} t16"), results.get(f"wasmlet granian w{workers} t16")
        if uv and gr:
            winner, loser = ("granian", "uvicorn") if gr["rps"] > uv["rps"] else ("uvicorn", "granian")
            ratio = max(gr["rps"], uv["rps"]) / min(gr["rps"], uv["rps"])
            print(f"workers={workers}: {winner} is faster than {loser} by {ratio:.2f}x in req/s")
    best = max((r["rps"] for label, r in results.items() if label.startswith("wasmlet")), default=0.0)
    print(f"best wasmlet: {best:.0f} req/s -> {'MEETS' if best >= 5000 else 'MISSES'} the 5,000 req/s target")


def ab(rounds: int, seconds: int, connections: int) -> None:
    """uvicorn and granian alternated, so that drift on a noisy machine hits both alike."""
    print(machine())
    pairs = [(wasmlet("uvicorn", 2, t), wasmlet("granian", 2, t)) for t in (16, 1)]
    rps: dict[str, list[float]] = {}
    with temp_cache() as cache:
        for _ in range(rounds):
            for pair in pairs:
                for contender in pair:
                    rps.setdefault(contender.label, []).append(
                        measure(contender, cache, seconds, connections)["rps"])
    print(f"\nreq/s, wrk -t2 -c{connections} -d{seconds}s, {rounds} alternated rounds\n")
    print("| server | rounds | median |\n|---|---|---|")
    for label, values in rps.items():
        print(f"| {label} | {', '.join(f'{v:.0f}' for v in values)} | {statistics.median(values):.0f} |")
    for uv, gr in pairs:
        a, b = statistics.median(rps[uv.label]), statistics.median(rps[gr.label])
        print(f"{gr.label} / {uv.label} = {b / a:.2f}")


if __name__ == "__main__":
    main()
