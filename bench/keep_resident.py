"""What ``EngineSettings.pool_keep_resident`` costs and saves, per guest, side by side in one run.

When an instance ends, the pooling allocator resets its memory slot for the next one: the
first ``pool_keep_resident`` bytes of the memory's *accessible* size are zeroed with
``memset`` (the pages stay mapped), the rest are given back with ``madvise(DONTNEED)`` and
fault in again, one page at a time, when the next instance touches them. So a larger value
saves page faults for guests that touch much of their memory, and costs a ``memset`` of
memory that a guest declares but never touches (measured below with a WAT guest that starts
with 32 MiB and writes one page, as Emscripten's 16 MiB default does), plus resident memory:
up to ``pool_warm_slots`` x the value per worker.

One engine per value, each with its own handlers; the engines alternate request by request
(round-robin), so noise falls on all alike. Guests: WAGI hello, the resizer on a 1920x1080
JPEG, the WAT guest above and, with ``--component LABEL=PATH``, ``wasi:http`` components
(componentize-py's or jco's hello from ``examples/*/build.sh``).

    .venv/bin/python bench/keep_resident.py [--values 1,16] [--iterations 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import time
from collections.abc import Callable
from pathlib import Path

import wasmtime

from _common import HELLO_WASM, machine
from proxy_inprocess import LIMITS, REQUEST, proxy
from resizer import RESIZER, photo, request
from wasmlet.engine import EpochTicker, build_engine
from wasmlet.guest import Linkers, WagiHandler
from wasmlet.plan import EngineSettings

# 32 MiB of memory, one page written: a guest that declares far more than it touches.
UNTOUCHED_WAT = r"""
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 512)
  (data (i32.const 16) "Content-Type: text/plain\n\nok\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 29))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""


def handlers(settings: EngineSettings, components: list[tuple[str, Path]], jpeg: bytes) -> tuple[
        EpochTicker, dict[str, Callable[[], object]]]:
    engine = build_engine(settings)
    ticker = EpochTicker(engine, settings.epoch_tick)
    ticker.start()
    core = Linkers(engine).core
    hello = WagiHandler("hello", engine, core, wasmtime.Module.from_file(engine, HELLO_WASM), LIMITS, "/")
    resizer = WagiHandler("resizer", engine, core, wasmtime.Module.from_file(engine, RESIZER / "resizer.wasm"),
                          dataclasses.replace(LIMITS, max_response=16 << 20), "/")
    untouched = WagiHandler("untouched", engine, core, wasmtime.Module(engine, UNTOUCHED_WAT), LIMITS, "/")
    resize = request(jpeg, 640)
    cases: dict[str, Callable[[], object]] = {
        "WAGI hello (128 KiB memory)": lambda: hello.handle(REQUEST),
        "resizer, 1920x1080 JPEG (10 MiB touched)": lambda: resizer.handle(resize),
        "WAT: 32 MiB memory, one page touched": lambda: untouched.handle(REQUEST),
    }
    for label, path in components:
        handler = proxy(engine, path)
        cases[f"wasi:http {label} hello"] = lambda handler=handler: handler.handle(REQUEST)
    return ticker, cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--values", default="1,16", help="pool_keep_resident values to compare, in MiB")
    parser.add_argument("--iterations", type=int, default=200, help="requests per guest and value")
    parser.add_argument("--component", action="append", default=[], metavar="LABEL=PATH")
    args = parser.parse_args()
    values = [int(v) for v in args.values.split(",")]
    components = [(label, Path(path)) for label, _, path in (c.partition("=") for c in args.component)]
    jpeg = photo(1920, 1080)
    engines = {v: handlers(EngineSettings(pool_keep_resident=v << 20), components, jpeg) for v in values}
    labels = list(next(iter(engines.values()))[1])
    wall: dict[tuple[str, int], list[float]] = {(label, v): [] for label in labels for v in values}
    faults: dict[tuple[str, int], list[int]] = {(label, v): [] for label in labels for v in values}
    for i in range(args.iterations + 10):
        for label in labels:
            # Rotated each round: the case run right after the resizer finds the CPU caches cold.
            for v in values[i % len(values):] + values[:i % len(values)]:
                case = engines[v][1][label]
                before, start = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt, time.perf_counter()
                case()
                elapsed = time.perf_counter() - start
                if i >= 10:  # warm-up: every slot has held its module once
                    wall[label, v].append(elapsed)
                    faults[label, v].append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
    for ticker, _ in engines.values():
        ticker.stop()
    print(machine())
    print(f"{args.iterations} requests per guest and value, round-robin; wall p50 per request, page faults p50")
    print("| guest | " + " | ".join(f"keep {v} MiB" for v in values) + " |")
    print("|---|" + "---:|" * len(values))
    for label in labels:
        cells = []
        for v in values:
            p50 = sorted(wall[label, v])[len(wall[label, v]) // 2]
            fault = sorted(faults[label, v])[len(faults[label, v]) // 2]
            cells.append(f"{p50 * 1e3:.3f} ms ({fault} faults)")
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"resident memory of this process at the end: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10} "
          "MiB peak")


if __name__ == "__main__":
    main()
