"""Which Python functions a worker runs per hello request over HTTP, counted (not timed).

A request that arrives at an idle worker costs ~1.6x the CPU it costs in wrk's
batches (``bench/tail.py``'s "server CPU us/request" column): the interpreter's
working set is cold. How much code a request runs is what a leaner path would
cut, and counts are exact where timings under a profiler mislead. So this
counts, in one serving worker, every Python function entered and every builtin
called (``sys.setprofile``) over ``--requests`` keep-alive requests sent one at
a time (each alone in its pass of the event loop, as in the sparse stream), and
prints them per request: by package, then the most frequent.

The counter is a ``sitecustomize`` written into a temporary folder on the
worker's ``PYTHONPATH``; SIGUSR1 starts and stops it. Workers are spawned, not
forked from the zygote (``WASMLET_ZYGOTE=0``): a spawned worker runs
``sitecustomize`` itself. What a request runs does not depend on how its
worker started.

    .venv/bin/python bench/call_census.py [--requests 2000] [--top 30]
"""

from __future__ import annotations

import argparse
import collections
import http.client
import os
import signal
import tempfile
import textwrap
import time
from pathlib import Path

from _common import (
    HELLO_WASM,
    OUT,
    WASMLET,
    free_port,
    running,
    temp_cache,
    wasmlet_env,
    worker_pids,
    write_manifest,
)

_COUNTER = textwrap.dedent('''
    import collections, os, signal, sys

    if b"wasmlet.server._worker" in open("/proc/self/cmdline", "rb").read():
        _counts = collections.Counter()
        _on = [False]

        def _profile(frame, event, arg):
            if event == "call":
                _counts[(frame.f_code.co_filename, frame.f_code.co_name)] += 1
            elif event == "c_call":
                _counts[("<builtin>", getattr(arg, "__qualname__", repr(arg)))] += 1

        def _toggle(signum, frame):
            if not _on[0]:
                _counts.clear()
                _on[0] = True
                sys.setprofile(_profile)
                return
            sys.setprofile(None)
            _on[0] = False
            with open(os.path.join(os.environ["CENSUS_OUT"], f"{os.getpid()}.tsv"), "w") as out:
                for (where, name), count in _counts.items():
                    out.write(f"{count}\\t{where}\\t{name}\\n")

        signal.signal(signal.SIGUSR1, _toggle)
''')


def group_of(where: str) -> str:
    """A file's package, as the census groups it: wasmlet's subpackages, third parties, the standard library."""
    if where == "<builtin>":
        return "builtins (C)"
    if "/wasmlet/" in where:
        return "wasmlet." + where.rsplit("/wasmlet/", 1)[1].split("/")[0].removesuffix(".py")
    if "site-packages/" in where:
        return where.split("site-packages/", 1)[1].split("/")[0].removesuffix(".py")
    if "/lib/python3" in where:
        return "stdlib " + where.split("/lib/python3", 1)[1].split("/", 2)[1].split("/")[0].removesuffix(".py")
    return where


def get_many(port: int, count: int) -> None:
    """``count`` GETs of / on one keep-alive connection, one at a time."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(count):
            connection.request("GET", "/")
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"GET / answered {response.status}")
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--top", type=int, default=30, help="functions listed")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with temp_cache() as cache, tempfile.TemporaryDirectory() as site, tempfile.TemporaryDirectory() as out:
        Path(site, "sitecustomize.py").write_text(_COUNTER)
        manifest = write_manifest(Path(cache) / "hello.yaml", "hello", [("hello", HELLO_WASM, "/")])
        port = free_port()
        env = {**wasmlet_env(cache), "PYTHONPATH": site, "CENSUS_OUT": out, "WASMLET_ZYGOTE": "0"}
        argv = [WASMLET, "serve", str(manifest), "--listen", f"127.0.0.1:{port}", "--workers", "1"]
        with running(argv, port, env=env, log=OUT / "call-census.log") as server:
            workers = worker_pids(server.proc.pid)
            if len(workers) != 1:
                raise SystemExit(f"expected one worker, found {workers}")
            get_many(port, 500)  # warm: the app's first (cold) run, the inline policy settled
            os.kill(workers[0], signal.SIGUSR1)
            time.sleep(0.2)
            get_many(port, args.requests)
            os.kill(workers[0], signal.SIGUSR1)
            report = Path(out, f"{workers[0]}.tsv")
            deadline = time.monotonic() + 10
            while not report.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            rows = [line.split("\t") for line in report.read_text().splitlines()]
    counts = [(int(count) / args.requests, where, name) for count, where, name in rows]
    groups: collections.defaultdict[str, float] = collections.defaultdict(float)
    for per_request, where, _ in counts:
        groups[group_of(where)] += per_request
    python = sum(value for group, value in groups.items() if group != "builtins (C)")
    print(f"hello over HTTP, {args.requests} keep-alive requests one at a time, one worker; calls per request "
          f"(the worker's threads other than the event loop's are not counted)\n")
    print(f"Python functions entered: {python:.1f}; builtins called: {groups['builtins (C)']:.1f}\n")
    print("| package | calls per request |\n|---|---:|")
    for group, value in sorted(groups.items(), key=lambda item: -item[1]):
        if value >= 0.05:
            print(f"| {group} | {value:.1f} |")
    print("\n| function | where | calls per request |\n|---|---|---:|")
    for per_request, where, name in sorted(counts, reverse=True)[:args.top]:
        print(f"| {name} | {group_of(where)} | {per_request:.2f} |")


if __name__ == "__main__":
    main()
