"""Two revisions of wasmlet side by side in one run: in-process ``handle()`` and HTTP throughput.

Each revision is checked out in a temporary git worktree and run from its own
sources (``PYTHONPATH``), with this checkout's virtualenv; the two alternate
round by round so that drift on a noisy machine hits both alike. For each:

* in process: ``bench/inprocess.py`` of that revision, its ``WagiHandler.handle``
  p50 and the bare store+WASI+instantiate+call floor;
* over HTTP: ``wasmlet serve examples/hello/app.yaml --workers 2`` under wrk
  (``-t2 -c32``), req/s, p50 and p99.

    .venv/bin/python bench/compare_revisions.py BASE [HEAD] [--rounds 3] [--seconds 5]

HEAD defaults to the working tree (uncommitted changes included).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from _common import ROOT, free_port, machine, run_wrk, running, temp_cache, wasmlet_env

ROW = re.compile(r"^\|\s*(?P<what>[^|]+?)\s*\|\s*(?P<p50>[\d.]+)\s*\|")


@contextlib.contextmanager
def checkout(rev: str | None) -> Iterator[Path]:
    """A worktree at ``rev`` (None: this working tree), with this checkout's .venv beside it."""
    if rev is None:
        yield ROOT
        return
    where = Path(tempfile.mkdtemp(prefix="wasmlet-rev-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev], check=True,
                   capture_output=True)
    try:
        (where / ".venv").symlink_to(ROOT / ".venv")
        yield where
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)], check=False,
                       capture_output=True)


def env_for(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree / "src"), str(tree / "bench"), str(tree)])}


def inprocess(tree: Path, iterations: int) -> tuple[float, float]:
    """(handle p50, bare floor p50) in microseconds, from that revision's own bench/inprocess.py."""
    out = subprocess.run([sys.executable, str(tree / "bench" / "inprocess.py"), "--iterations", str(iterations)],
                         cwd=tree, env=env_for(tree), capture_output=True, text=True, timeout=600, check=True).stdout
    rows = {m["what"]: float(m["p50"]) for line in out.splitlines() if (m := ROW.match(line))}
    return rows["WagiHandler.handle (full)"], rows["bare: store+WASI+instantiate+call"]


def throughput(tree: Path, seconds: int) -> dict[str, float]:
    port = free_port()
    with temp_cache() as cache:
        env = {**wasmlet_env(cache), **env_for(tree)}
        argv = [sys.executable, "-m", "wasmlet", "serve", str(tree / "examples" / "hello" / "app.yaml"),
                "--listen", f"127.0.0.1:{port}", "--workers", "2", "--admin-listen", "none"]
        with running(argv, port, env=env):
            url = f"http://127.0.0.1:{port}/"
            run_wrk(url, seconds=2, connections=32)  # warm-up
            return run_wrk(url, seconds=seconds, connections=32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base")
    parser.add_argument("head", nargs="?", default=None, help="default: the working tree")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=3000)
    args = parser.parse_args()
    print(machine())
    names = {"base": args.base, "head": args.head or "working tree"}
    results: dict[str, dict[str, list[float]]] = {k: {} for k in names}
    with checkout(args.base) as base, checkout(args.head) as head:
        trees = {"base": base, "head": head}
        for round_ in range(args.rounds):
            for key, tree in trees.items():
                handle, floor = inprocess(tree, args.iterations)
                http = throughput(tree, args.seconds)
                for metric, value in (("handle p50 us", handle), ("floor p50 us", floor), ("req/s", http["rps"]),
                                      ("http p50 ms", http["p50"]), ("http p99 ms", http["p99"])):
                    results[key].setdefault(metric, []).append(value)
                print(f"round {round_ + 1} {key}: handle {handle:.1f} us, floor {floor:.1f} us, "
                      f"{http['rps']:.0f} req/s, p99 {http['p99']:.2f} ms", flush=True)
    print(f"\nmedians of {args.rounds} alternated rounds; wrk -t2 -c32 -d{args.seconds}s, 2 workers\n")
    print(f"| metric | base ({names['base']}) | head ({names['head']}) | head / base |")
    print("|---|---|---|---|")
    for metric in results["base"]:
        a, b = statistics.median(results["base"][metric]), statistics.median(results["head"][metric])
        print(f"| {metric} | {a:.2f} | {b:.2f} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
