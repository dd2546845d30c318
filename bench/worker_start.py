"""Worker start to first 200 (issue 13), with a warm cache: a worker alone, and ``wasmlet serve``.

Five figures, each over ``--reps`` fresh processes (median, min-max, ms):

1. ``import wasmlet.server._worker``: what a worker imports before it reads its plan;
2. a worker alone, spawned as the supervisor spawns it without a zygote (``python -m
   wasmlet.server._worker --fd N --plan FILE`` on a bound, listening socket it inherits):
   spawn -> first 200 on the app's route (the request waits in the socket's backlog until
   the worker accepts it);
3. a worker forked from the zygote (``wasmlet._prefork.Zygote``, started once here and ready):
   fork request -> first 200, on a socket bound as in 2;
4. ``wasmlet serve --workers 1 MANIFEST``: spawn -> first 200, i.e. the supervisor's start
   (imports, deploy from the manifest), then a worker's; with ``--admin-listen none`` (as
   ``first_response.py``) and with the admin API on (the default; here on a free port), each
   with the zygote (the default) and without (``WASMLET_ZYGOTE=0``);
5. the same with ``--admin-listen none``, entered through ``wasmlet.cli`` instead of the console
   script (``wasmlet._launch``): the zygote starts once the CLI has loaded, not before (the head
   start's worth; interleaved with the first series of 4).

6. with ``--base REV``: ``wasmlet serve --workers 1`` (the console script, admin API off and on)
   from a git worktree of REV and from this tree, alternated round by round (the sources of each
   compiled to bytecode first, as ``make venv`` does): what the changes since REV did to the start.
7. with ``--python VENV`` (a virtualenv of another interpreter with wasmlet's requirements installed):
   ``wasmlet serve --workers 1 --admin-listen none`` on this tree from VENV and from this virtualenv,
   alternated: what the interpreter's build does to the start (docs/benchmarks.md section 33).

The hello example's compiled artifact is in the cache before any run (warm cache).

    .venv/bin/python bench/worker_start.py [--reps 10] [--server uvicorn] [--base REV] [--python VENV]

To compare with another tree, run it with ``PYTHONPATH=OTHER/src`` (the workers inherit it).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    HELLO_WASM,
    ROOT,
    WASMLET,
    deploy_plan,
    free_port,
    http_get,
    interpreters,
    machine,
    other_venv,
    temp_cache,
    wasmlet_env,
    write_manifest,
)
from compare_revisions import checkout
from wasmlet._prefork import WorkerProcess, Zygote

PYTHON = sys.executable


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:7.1f} ({min(values) * 1e3:6.1f}-{max(values) * 1e3:6.1f})"


def import_time(env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([PYTHON, "-c", "import wasmlet.server._worker"], check=True, env=env)
    return time.perf_counter() - start


def lone_worker(plan_file: Path, env: dict[str, str], zygote: Zygote | None = None) -> float:
    """Spawn (or, with ``zygote``, fork request) -> first 200 for one worker on a socket bound here."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    args = ["--fd", str(sock.fileno()), "--plan", str(plan_file), "--log-level", "warning"]
    started = time.perf_counter()
    if zygote is None:
        proc: WorkerProcess = subprocess.Popen([PYTHON, "-m", "wasmlet.server._worker", *args],
                                               pass_fds=(sock.fileno(),), env=env)
    else:
        proc = zygote.fork(args, sock.fileno(), env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}")
            try:  # the socket listens already: a connection waits in the backlog until the worker accepts
                status, _ = http_get(port, "/", timeout=60)
            except OSError:
                time.sleep(0.002)
                continue
            if status == 200:
                return time.perf_counter() - started
            time.sleep(0.002)
        raise TimeoutError("no 200 within 60 s")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        sock.close()


# ``wasmlet`` without the console script's head start: the CLI entered directly.
WITHOUT_HEAD_START = [PYTHON, "-c", "import sys; sys.argv[0] = 'wasmlet'; from wasmlet.cli import main; main()"]


def serve(manifest: Path, env: dict[str, str], server: str, admin: bool, zygote: bool = True,
          head_start: bool = True, wasmlet: str = WASMLET) -> float:
    """Spawn ``wasmlet serve --workers 1`` -> first 200 on the app's route."""
    port = free_port()
    env = {**env, "WASMLET_STATE_DIR": tempfile.mkdtemp(prefix="wasmlet-bench-state-"),
           "WASMLET_ZYGOTE": "1" if zygote else "0"}
    command = [wasmlet] if head_start else WITHOUT_HEAD_START
    argv = [*command, "--log-level", "warning", "serve", str(manifest), "--listen", f"127.0.0.1:{port}",
            "--workers", "1", "--server", server]
    if admin:
        env.pop("WASMLET_ADMIN_LISTEN", None)
        argv += ["--admin-listen", "127.0.0.1:0"]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"wasmlet serve exited with {proc.returncode}")
            try:
                status, _ = http_get(port, "/", timeout=60)
            except OSError:
                time.sleep(0.002)
                continue
            if status == 200:
                return time.perf_counter() - started
            time.sleep(0.002)
        raise TimeoutError("no 200 within 60 s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def against(base: str, manifest: Path, env: dict[str, str], server: str,
            reps: int) -> dict[tuple[str, bool], list[float]]:
    """``serve`` from a worktree at ``base`` and from this tree, alternated; keyed (tree, admin API on)."""
    figures: dict[tuple[str, bool], list[float]] = {}
    with checkout(base) as other:
        trees = {f"at {base}": other / "src", "this tree": ROOT / "src"}
        for src in trees.values():  # as `make venv` does: no source compiled again in every process
            subprocess.run([PYTHON, "-m", "compileall", "-q", str(src)], check=True, env=env)
        for _ in range(reps):
            for admin in (False, True):
                for name, src in trees.items():
                    served = serve(manifest, {**env, "PYTHONPATH": str(src)}, server, admin=admin)
                    figures.setdefault((name, admin), []).append(served)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--server", default="uvicorn")
    parser.add_argument("--base", default=None, metavar="REV",
                        help="also measure serve's start at REV (a git worktree), alternated with this tree's")
    parser.add_argument("--python", default=None, metavar="VENV",
                        help="also measure serve's start from VENV (another interpreter's virtualenv with wasmlet's "
                             "requirements), alternated with this virtualenv's")
    args = parser.parse_args()
    print(machine())
    if args.python:
        print(interpreters(args.python))
    print("PYTHONPATH:", os.environ.get("PYTHONPATH", "(unset)"))
    print("load average at start (1, 5, 15 min):", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    with temp_cache() as cache, tempfile.TemporaryDirectory(prefix="wasmlet-bench-worker-") as tmp:
        work = Path(tmp)
        env = wasmlet_env(cache)
        manifest = write_manifest(work / "hello.yaml", "bench", [("app", HELLO_WASM, "/")])
        plan = deploy_plan([manifest], cache_dir=Path(cache))  # compiles: the cache is warm from here on
        plan_file = work / "plan.json"
        plan_file.write_text(plan.to_json(), encoding="utf-8")
        serve(manifest, env, args.server, admin=False)  # once, unmeasured
        imports = [import_time(env) for _ in range(args.reps)]
        lone = [lone_worker(plan_file, env) for _ in range(args.reps)]
        zygote = Zygote.start(env)
        if zygote is None or not zygote.ready(60):
            raise RuntimeError("no zygote on this machine (see the log); set WASMLET_ZYGOTE=1 on Linux")
        try:
            forked = [lone_worker(plan_file, env, zygote) for _ in range(args.reps)]
        finally:
            zygote.close()
        served, with_admin, served_popen, with_admin_popen, served_late = [], [], [], [], []
        for _ in range(args.reps):  # interleaved: both paths see the same load on a shared machine
            served.append(serve(manifest, env, args.server, admin=False))
            served_late.append(serve(manifest, env, args.server, admin=False, head_start=False))
            served_popen.append(serve(manifest, env, args.server, admin=False, zygote=False))
            with_admin.append(serve(manifest, env, args.server, admin=True))
            with_admin_popen.append(serve(manifest, env, args.server, admin=True, zygote=False))
        versus = against(args.base, manifest, env, args.server, args.reps) if args.base else {}
        if args.python:
            other, other_env = other_venv(args.python, env)
            subprocess.run([str(Path(args.python) / "bin" / "python"), "-m", "compileall", "-q", str(ROOT / "src")],
                           check=True, env=env)
            for _ in range(args.reps):
                for tree, wasmlet in ((f"from {args.python}", other), ("from this virtualenv", WASMLET)):
                    figure = serve(manifest, other_env, args.server, admin=False, wasmlet=wasmlet)
                    versus.setdefault((tree, False), []).append(figure)
    print("load average at end (1, 5, 15 min):", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"\nms, median (min-max) of {args.reps} fresh processes, warm cache, hello\n")
    print("| measurement | ms |")
    print("|---|---|")
    print(f"| python -c 'import wasmlet.server._worker' | {ms(imports)} |")
    print(f"| worker alone: spawn -> first 200 | {ms(lone)} |")
    print(f"| a worker forked from the zygote: request -> first 200 | {ms(forked)} |")
    print(f"| wasmlet serve --workers 1, --admin-listen none ({args.server}), zygote, entered through wasmlet.cli "
          f"(no head start): spawn -> first 200 | {ms(served_late)} |")
    for label, figures, popen in (("--admin-listen none", served, served_popen),
                                  ("admin API on", with_admin, with_admin_popen)):
        print(f"| wasmlet serve --workers 1, {label} ({args.server}), zygote: spawn -> first 200 | {ms(figures)} |")
        print(f"| wasmlet serve --workers 1, {label} ({args.server}), WASMLET_ZYGOTE=0: spawn -> first 200 "
              f"| {ms(popen)} |")
    for (tree, admin), figures in versus.items():
        label = "admin API on" if admin else "--admin-listen none"
        print(f"| wasmlet serve --workers 1, {label} ({args.server}), {tree}, alternated: spawn -> first 200 "
              f"| {ms(figures)} |")


if __name__ == "__main__":
    main()
