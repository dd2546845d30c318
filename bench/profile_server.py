"""Profile a serving worker under load with py-spy: where a request's CPU goes.

Starts ``wasmlet serve examples/hello/app.yaml --workers 1`` (or ``--manifest``), drives it with
wrk, and records the worker with py-spy (all threads, idle frames dropped):

* collapsed stacks -> ``bench/out/profile-<server>.txt``, summarised here as
  the top functions by own samples and by inclusive samples;
* a flame graph -> ``bench/out/profile-<server>.svg``.

``--native`` adds C/Rust frames (wasmtime, CPython) to the stacks; it pauses the
worker at each sample, so the load figure drops while profiling.

    .venv/bin/python bench/profile_server.py [--server uvicorn] [--seconds 8] [--native]
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import threading
from pathlib import Path

from _common import OUT, ROOT, VENV_BIN, WASMLET, free_port, run_wrk, running, temp_cache, wasmlet_env

PY_SPY = str(VENV_BIN / "py-spy")
# Leaves where a thread waits inside a C call py-spy cannot tell from work (without --native):
# pool threads blocked on the executor's queue, the epoch ticker's Event.wait.
IDLE_LEAVES = {"_worker (thread.py)", "Condition.wait (threading.py)", "Event.wait (threading.py)"}


def record(pid: int, seconds: int, fmt: str, output: str, native: bool) -> None:
    command = [PY_SPY, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "1000",
               "--format", fmt, "--output", output, "--threads"]
    # py-spy cannot unwind native stacks without pausing the process (the default, "blocking" mode).
    command.append("--native" if native else "--nonblocking")
    subprocess.run(command, check=True, capture_output=True, timeout=seconds + 60)


def short(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> ``func (file.py)``; native frames unchanged."""
    return re.sub(r"\((?:[^()]*/)?([^/():]+):\d+\)", r"(\1)", frame)


def summarise(path: str, top: int) -> None:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [short(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith("thread (")]
        if not frames or frames[-1] in IDLE_LEAVES or "_queue_SimpleQueue_get" in stack:
            idle += count
            continue
        total += count
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    print(f"{total} busy samples over all threads, 1 ms each ({idle} idle ones left out: a thread waiting "
          f"for work); percentages of busy samples\n")
    print("| own % | function (own time) |\n|---:|---|")
    for frame, count in own.most_common(top):
        print(f"| {100 * count / total:5.1f} | `{frame}` |")
    print("\n| incl % | function (inclusive) |\n|---:|---|")
    for frame, count in inclusive.most_common(top + 10):
        print(f"| {100 * count / total:5.1f} | `{frame}` |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="uvicorn", choices=("uvicorn", "granian"))
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--native", action="store_true")
    parser.add_argument("--manifest", default=str(ROOT / "examples" / "hello" / "app.yaml"),
                        help="the app to serve (e.g. examples/c-http/app.yaml, the wasi:http hello)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = args.manifest
    port = free_port()
    argv = [WASMLET, "--log-level", "warning", "serve", manifest, "--listen", f"127.0.0.1:{port}",
            "--server", args.server, "--workers", "1"]
    raw = str(OUT / f"profile-{args.server}.txt")
    svg = str(OUT / f"profile-{args.server}.svg")
    with temp_cache() as cache, running(argv, port, env=wasmlet_env(cache), log=OUT / "profile-server.log") as srv:
        # The busiest descendant is the worker (uvicorn: the one child; granian: its worker process).
        worker = srv.pids()[-1]
        url = f"http://127.0.0.1:{port}/"
        run_wrk(url, seconds=2)
        load: dict[str, float] = {}
        driver = threading.Thread(target=lambda: load.update(run_wrk(url, seconds=2 * args.seconds + 4)))
        driver.start()
        try:
            record(worker, args.seconds, "raw", raw, args.native)
            record(worker, args.seconds, "flamegraph", svg, args.native)
        finally:
            driver.join()
    print(f"server={args.server} worker pid={worker}; load: {load.get('rps', 0):.0f} req/s while profiled "
          f"(py-spy slows the worker a little)\nflame graph: {svg}\n")
    summarise(raw, args.top)


if __name__ == "__main__":
    main()
