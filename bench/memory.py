"""Memory: RSS per idle deployed app, and RSS with 1,000 requests in flight.

*Per app*: serve a manifest of 1 app, then one of 50 apps (distinct copies of
``hello``: each has a custom section with its own payload, so 50 digests, 50
artifacts, 50 ``InstancePre``). Memory is summed over the supervisor and all
its worker processes (VmRSS from ``/proc/PID/status`` and Pss from
``/proc/PID/smaps_rollup``) once ready and idle, and again after one request
to each app. Per app = (50-app figure - 1-app figure) / 49.

*In flight*: serve ``tests/guests/slow.wasm`` (answers after ``?ms=N``), hold
1,000 connections open with ``wrk -c1000`` on ``/?ms=1000`` and sample memory
every 0.25 s; report the idle figure and the peak.

    .venv/bin/python bench/memory.py [--apps 50]
"""

from __future__ import annotations

import argparse
import subprocess
import threading
import time
from pathlib import Path

from _common import (
    HELLO_WASM,
    OUT,
    SLOW_WASM,
    WASMLET,
    Server,
    free_port,
    http_get,
    machine,
    memory_kib,
    run_wrk,
    running,
    temp_cache,
    wasmlet_env,
    with_custom_section,
    write_manifest,
)


def serve_argv(manifest: Path, port: int, server: str, workers: int, threads: int = 16) -> list[str]:
    return [WASMLET, "--log-level", "warning", "serve", str(manifest), "--listen", f"127.0.0.1:{port}",
            "--server", server, "--workers", str(workers), "--threads", str(threads)]


def settle(server: Server, seconds: float = 1.5) -> tuple[int, int]:
    """Memory once start-up garbage is gone: the smallest of a few samples."""
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append(memory_kib(server.pids()))
        time.sleep(0.25)
    return min(s[0] for s in samples), min(s[1] for s in samples)


def apps_manifest(work: Path, count: int) -> Path:
    base = HELLO_WASM.read_bytes()
    apps = []
    for i in range(count):
        module = work / f"hello-{i}.wasm"
        module.write_bytes(with_custom_section(base, "wasmlet-bench", f"copy {i}".encode() * 8))
        apps.append((f"app{i}", module, f"/a{i}"))
    return write_manifest(work / f"apps-{count}.yaml", "bench", apps)


def per_app(cache: str, work: Path, count: int, server: str, workers: int) -> dict[str, tuple[int, int]]:
    figures = {}
    for n in (1, count):
        manifest = apps_manifest(work, n)
        port = free_port()
        with running(serve_argv(manifest, port, server, workers), port, env=wasmlet_env(cache),
                     log=OUT / f"memory-{server}-{n}.log", ready_path="/.well-known/wasmlet/ready") as srv:
            time.sleep(0.5 * workers)  # every worker, not just the first, has loaded its apps
            figures[f"idle {n}"] = settle(srv)
            for i in range(n):
                for _ in range(workers * 4):  # reach every worker (the kernel picks which accepts)
                    assert http_get(port, f"/a{i}")[0] == 200
            figures[f"used {n}"] = settle(srv)
            figures[f"pids {n}"] = (len(srv.pids()), 0)
    return figures


def in_flight(cache: str, work: Path, server: str, workers: int, threads: int, connections: int) -> dict[str, float]:
    manifest = write_manifest(work / "slow.yaml", "bench", [("slow", SLOW_WASM, "/")], queue=2 * connections)
    port = free_port()
    with running(serve_argv(manifest, port, server, workers, threads), port, env=wasmlet_env(cache),
                 log=OUT / f"memory-inflight-{server}.log") as srv:
        time.sleep(0.5 * workers)
        idle = settle(srv)
        peak = [0, 0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.25):
                rss, pss = memory_kib(srv.pids())
                peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            result = run_wrk(f"http://127.0.0.1:{port}/?ms=1000", seconds=8, connections=connections, timeout="30s")
        except subprocess.CalledProcessError as exc:
            result = {"rps": float("nan"), "error": float(exc.returncode)}
        finally:
            stop.set()
            sampler.join()
    return {"idle_rss": idle[0], "idle_pss": idle[1], "peak_rss": peak[0], "peak_pss": peak[1], **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", type=int, default=50)
    parser.add_argument("--connections", type=int, default=1000)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    print(machine())
    n = args.apps
    with temp_cache() as cache:
        work = Path(cache) / "work"
        work.mkdir()
        print(f"\nper idle app: (memory with {n} apps - with 1 app) / {n - 1}; sums over supervisor + workers, KiB\n")
        print(f"| server | workers | procs | RSS 1 app | RSS {n} apps | RSS/app idle | Pss/app idle | "
              "RSS/app after 1 req each | Pss/app after 1 req each |")
        print("|---|---|---|---|---|---|---|---|---|")
        for server, workers in (("uvicorn", 1), ("uvicorn", 2), ("granian", 1)):
            f = per_app(cache, work, n, server, workers)

            def each(kind: str, col: int, figures: dict[str, tuple[int, int]] = f) -> float:
                return (figures[f"{kind} {n}"][col] - figures[f"{kind} 1"][col]) / (n - 1)

            print(f"| {server} | {workers} | {f[f'pids {n}'][0]} | {f['idle 1'][0]} | {f[f'idle {n}'][0]} | "
                  f"{each('idle', 0):.0f} | {each('idle', 1):.0f} | {each('used', 0):.0f} | {each('used', 1):.0f} |",
                  flush=True)
        print(f"\n{args.connections} connections in flight on slow.wasm ?ms=1000 (wrk -c{args.connections} -d8s); "
              "sums over supervisor + workers, MiB\n")
        print("| server | workers | threads | idle RSS | peak RSS | idle Pss | peak Pss | req/s | p50 ms | errors |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for server, workers, threads in (("uvicorn", 2, 16), ("uvicorn", 2, 256), ("granian", 2, 16),
                                         ("granian", 2, 256)):
            r = in_flight(cache, work, server, workers, threads, args.connections)
            errors = int(r.get("errors", 0) + r.get("non2xx", 0))
            print(f"| {server} | {workers} | {threads} | {r['idle_rss'] / 1024:.1f} | {r['peak_rss'] / 1024:.1f} | "
                  f"{r['idle_pss'] / 1024:.1f} | {r['peak_pss'] / 1024:.1f} | {r['rps']:.0f} | "
                  f"{r.get('p50', float('nan')):.0f} | {errors} |", flush=True)


if __name__ == "__main__":
    main()
