"""Profile the in-process hot path: ``WagiHandler.handle`` on ``hello``, many times.

Two views of the same loop:

* cProfile, sorted by own time, as microseconds per request (cProfile's own
  overhead inflates every call a little; use the ranks, and
  ``bench/inprocess.py`` for unprofiled stage times);
* pyinstrument (sampling, low overhead), its call tree as text and HTML in
  ``bench/out/profile_inprocess.html``.

    .venv/bin/python bench/profile_hot_path.py [--iterations 20000] [--top 25]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats

from pyinstrument import Profiler

from _common import HELLO_WASM, OUT, temp_cache
from inprocess import REQUEST
from wasmlet.control import plan_for_module
from wasmlet.server import Host


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    n = args.iterations
    with temp_cache() as cache:
        host = Host(plan_for_module(HELLO_WASM, cache_dir=cache, memoryLimit="16Mi"))
        host.start()
        try:
            handle = next(iter(host.apps.values())).handler.handle
            for _ in range(1000):
                handle(REQUEST)

            profile = cProfile.Profile()
            profile.enable()
            for _ in range(n):
                handle(REQUEST)
            profile.disable()

            sampler = Profiler(interval=0.0001)
            sampler.start()
            for _ in range(n):
                handle(REQUEST)
            sampler.stop()
        finally:
            host.close()

    stats = pstats.Stats(profile)
    rows = []
    for (filename, line, name), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{filename.rsplit('/site-packages/', 1)[-1].rsplit('/src/', 1)[-1]}:{line}({name})"
        rows.append((tottime, cumtime, ncalls, where))
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows)
    print(f"cProfile, {n} requests: {total / n * 1e6:.1f} us/request under the profiler\n")
    print(f"| {'own us/req':>10s} | {'cum us/req':>10s} | {'calls/req':>9s} | function |")
    print("|-----------:|-----------:|----------:|----------|")
    for tottime, cumtime, ncalls, where in rows[: args.top]:
        print(f"| {tottime / n * 1e6:10.2f} | {cumtime / n * 1e6:10.2f} | {ncalls / n:9.1f} | `{where}` |")
    html = OUT / "profile_inprocess.html"
    html.write_text(sampler.output_html())
    print(f"\npyinstrument (sampling every 100 us, {n} requests); full tree in {html}\n")
    print(sampler.output_text(unicode=False, color=False, show_all=False))


if __name__ == "__main__":
    main()
