"""Deploy to first response, for ``hello`` and ``echo``, with a warm and a cold cache.

*warm*: the module's compiled artifact is already in ``WASMLET_CACHE_DIR``.
*cold*: a module never seen before (the example plus a custom section with a
fresh payload, so its digest is new), compiled on deploy.

Two measurements, each repeated ``--reps`` times, each in a fresh process:

1. in-process (``--child``): after ``import wasmlet``, the time of
   ``deploy_plan`` (validate, fetch, hash, compile or check the cache, link),
   ``Host(plan)`` (engine, artifact load, ``InstancePre``: what a worker does)
   and the first ``handle()``;
2. over HTTP: spawn ``wasmlet serve --workers 1``, poll the app's route every
   ~2 ms and stop the clock at the first 200; the time the supervisor prints
   ``wasmlet: serving`` is recorded too. This includes two Python start-ups
   (supervisor, then worker) and their imports, so it is reported beside the
   bare interpreter start-up and the import time.

    .venv/bin/python bench/first_response.py [--reps 5] [--servers uvicorn,granian]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from _common import (
    ECHO_WASM,
    HELLO_WASM,
    OUT,
    WASMLET,
    Server,
    free_port,
    http_get,
    machine,
    temp_cache,
    wasmlet_env,
    with_custom_section,
    write_manifest,
)

PYTHON = sys.executable
MODULES = {"hello": HELLO_WASM, "echo": ECHO_WASM}


def child(module: str, cache: str) -> None:
    """One deploy in this fresh process; print the phase times as JSON."""
    t0 = time.perf_counter()
    from _common import deploy_plan
    from wasmlet.guest import CgiRequest
    from wasmlet.server import Host

    t1 = time.perf_counter()
    manifest = write_manifest(Path(module).with_suffix(".yaml"), "bench", [("app", Path(module), "/")])
    plan = deploy_plan([manifest], cache_dir=cache)
    t2 = time.perf_counter()
    host = Host(plan)
    host.start()
    t3 = time.perf_counter()
    request = CgiRequest(method="GET", path="/", raw_path="/", query="", headers=(("host", "localhost"),), body=b"")
    status = host.apps["bench/app"].handler.handle(request).response.status
    t4 = time.perf_counter()
    host.close()
    assert status == 200, status
    print(json.dumps({"import": t1 - t0, "build_plan": t2 - t1, "host": t3 - t2, "first_handle": t4 - t3}))


def variant(name: str, workdir: Path, fresh: bool) -> Path:
    """The example module (``fresh=False``) or a never-seen copy of it, in ``workdir``."""
    data = MODULES[name].read_bytes()
    if fresh:
        data = with_custom_section(data, "wasmlet-bench", uuid.uuid4().bytes)
    path = workdir / f"{name}-{uuid.uuid4().hex[:8]}.wasm"
    path.write_bytes(data)
    return path


def run_child(module: Path, cache: str) -> dict[str, float]:
    out = subprocess.run([PYTHON, __file__, "--child", str(module), cache], capture_output=True, text=True,
                         check=True, env=wasmlet_env(cache)).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def over_http(module: Path, cache: str, server: str) -> tuple[float, float]:
    """(seconds to 'wasmlet: serving', seconds to the first 200 on the app's route) from the spawn."""
    manifest = write_manifest(module.with_suffix(".yaml"), "bench", [("app", module, "/")])
    port = free_port()
    argv = [WASMLET, "--log-level", "warning", "serve", str(manifest), "--listen", f"127.0.0.1:{port}",
            "--workers", "1", "--server", server]
    announced = [float("nan")]
    log = OUT / f"first_response-{server}.log"
    errors = open(log, "ab")  # noqa: SIM115 - closed by Server.stop
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=wasmlet_env(cache), stdout=subprocess.PIPE, stderr=errors,
                            start_new_session=True)
    server_handle = Server.__new__(Server)  # reuse Server.stop for the SIGTERM/SIGKILL dance
    server_handle.proc, server_handle._out, server_handle.argv, server_handle.log = proc, errors, argv, log

    def watch() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(b"wasmlet: serving") and announced[0] != announced[0]:
                announced[0] = time.perf_counter() - started

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"wasmlet serve exited with {proc.returncode}; see {log}")
            try:
                status, _ = http_get(port, "/", timeout=60)
            except OSError:
                time.sleep(0.002)
                continue
            if status == 200:
                return announced[0], time.perf_counter() - started
            time.sleep(0.002)
        raise TimeoutError("no 200 within 60 s")
    finally:
        server_handle.stop()


def startup_floor(cache: str) -> dict[str, float]:
    """Interpreter start-up and the imports a worker pays, each in a fresh process (median of 5)."""
    def clock(code: str) -> float:
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            subprocess.run([PYTHON, "-c", code], check=True, env=wasmlet_env(cache))
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    return {"python -c pass": clock("pass"),
            "python -c 'import wasmlet.cli'": clock("import wasmlet.cli"),
            "python -c 'import wasmlet.server._worker'": clock("import wasmlet.server._worker")}


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:7.1f} ({min(values) * 1e3:6.1f}-{max(values) * 1e3:6.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=2, metavar=("MODULE", "CACHE"), help=argparse.SUPPRESS)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--servers", default="uvicorn,granian")
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    print(machine())
    OUT.mkdir(parents=True, exist_ok=True)
    # The modules live outside the cache: wasmlet refuses a moduleURL inside its own folders.
    with temp_cache() as cache, tempfile.TemporaryDirectory(prefix="wasmlet-bench-modules-") as modules:
        work = Path(modules)
        for name in MODULES:  # warm the cache with the examples themselves
            run_child(variant(name, work, fresh=False), cache)
        print("\nin-process, fresh process per run; ms, median (min-max) of", args.reps, "runs\n")
        print("| module | cache | build_plan | Host(plan) | first handle | Host+first handle | total deploy |")
        print("|---|---|---|---|---|---|---|")
        imports = []
        for name in MODULES:
            for state in ("warm", "cold"):
                runs = [run_child(variant(name, work, fresh=state == "cold"), cache) for _ in range(args.reps)]
                imports += [r["import"] for r in runs]
                col = {k: [r[k] for r in runs] for k in runs[0]}
                worker = [r["host"] + r["first_handle"] for r in runs]
                total = [r["build_plan"] + r["host"] + r["first_handle"] for r in runs]
                print(f"| {name} | {state} | {ms(col['build_plan'])} | {ms(col['host'])} | "
                      f"{ms(col['first_handle'])} | {ms(worker)} | {ms(total)} |", flush=True)
        print(f"\n`import wasmlet` (deploy + server modules) in those runs: {ms(imports)} ms")
        print("\nover HTTP: spawn `wasmlet serve --workers 1` -> first 200 on the app route; ms, median (min-max)\n")
        print("| server | module | cache | 'serving' printed | first 200 |")
        print("|---|---|---|---|---|")
        for server in args.servers.split(","):
            for name in MODULES:
                for state in ("warm", "cold"):
                    runs = [over_http(variant(name, work, fresh=state == "cold"), cache, server)
                            for _ in range(args.reps)]
                    print(f"| {server} | {name} | {state} | {ms([r[0] for r in runs])} | {ms([r[1] for r in runs])} |",
                          flush=True)
        print("\nstart-up floor (fresh process each, median of 5):\n")
        for label, seconds in startup_floor(cache).items():
            print(f"  {label:45s} {seconds * 1e3:7.1f} ms")
    os.sync()


if __name__ == "__main__":
    main()
