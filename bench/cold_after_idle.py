"""The same work, back to back and after its thread was idle: what a sparse request stream costs (issue 13).

Under ``wrk -t2 -c32`` a wasmlet worker spends ~140 us of CPU per hello request; at half the
peak rate from an open-loop client, with the worker idle between requests, ~230 us
(``docs/benchmarks.md`` section 30). This measures that effect without HTTP, in one thread:

* ``handle_inline``: ``WagiHandler.handle_inline`` on hello (a worker's inline request path);
* ``python``: a pure-Python unit of work (``json`` round trip of a small document), no wasmtime;

each timed (CPU time of the thread, ``time.thread_time``) back to back, then after the thread
slept ``GAP`` before every call, then after it busy-waited ``GAP`` instead (the thread never
leaves the core). If the work costs more after a sleep than after a busy wait of the same
length, the difference is the machine's: caches, TLBs and predictors gone cold while the thread
was off the core, a cost every server pays on a sparse stream, in proportion to how much state
its requests touch.

    .venv/bin/python bench/cold_after_idle.py [--calls 400] [--gaps 0.2,1,2,5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from _common import HELLO_WASM, machine, temp_cache
from inprocess import REQUEST
from wasmlet.control import plan_for_module
from wasmlet.server import Host

_DOCUMENT = {f"k{i}": [i, str(i), {"a": i}] for i in range(120)}


def _python_work() -> None:
    json.loads(json.dumps(_DOCUMENT))


def cpu_per_call(work: Callable[[], object], calls: int, gap: float, idle: str) -> float:
    """Median CPU seconds of ``work`` over ``calls``, each after ``gap`` seconds of ``idle``."""
    spent = []
    for _ in range(calls):
        if gap and idle == "sleep":
            time.sleep(gap)
        elif gap:
            end = time.perf_counter() + gap
            while time.perf_counter() < end:
                pass
        started = time.thread_time()
        work()
        spent.append(time.thread_time() - started)
    return statistics.median(spent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--gaps", default="0.2,1,2,5", help="idle gaps before each call, ms")
    args = parser.parse_args()
    gaps = [float(g) / 1e3 for g in args.gaps.split(",")]
    print(machine())
    with temp_cache() as cache:
        host = Host(plan_for_module(HELLO_WASM, cache_dir=cache))
        handler = next(iter(host.apps.values())).handler
        works: dict[str, Callable[[], object]] = {
            "handle_inline (hello)": lambda: handler.handle_inline(REQUEST, "", 0.001),  # type: ignore[attr-defined]
            "python (json round trip)": _python_work,
        }
        for work in works.values():
            for _ in range(200):
                work()
        print(f"\nus of CPU per call, median of {args.calls}; idle gap before each call: slept / busy-waited\n")
        print("| work | back to back | " + " | ".join(f"after {g * 1e3:g} ms: slept / busy" for g in gaps) + " |")
        print("|---|---:|" + "---:|" * len(gaps))
        for name, work in works.items():
            row = [f"{cpu_per_call(work, args.calls, 0, 'sleep') * 1e6:.1f}"]
            for gap in gaps:
                slept = cpu_per_call(work, args.calls, gap, "sleep")
                busy = cpu_per_call(work, args.calls, gap, "busy")
                row.append(f"{slept * 1e6:.1f} / {busy * 1e6:.1f}")
            print(f"| {name} | " + " | ".join(row) + " |")
        host.close()


if __name__ == "__main__":
    main()
