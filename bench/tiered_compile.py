"""Would tiered compilation pay? Cranelift without optimisation (tier 0) against `speed` (tier 1).

Tier 0 could serve a new version sooner while tier 1 compiles in the
background; it pays only if it shortens deploys a lot and costs little while
it serves. Prints compile time at both levels for a small and a several-MB
module, and hello's per-request time under each.

    .venv/bin/python bench/tiered_compile.py
"""

from __future__ import annotations

import statistics
import time

import wasmtime

from _common import ROOT, machine
from hot_update import module


def engine(level: str) -> wasmtime.Engine:
    config = wasmtime.Config()
    config.cranelift_opt_level = level
    config.epoch_interruption = True
    config.parallel_compilation = True
    return wasmtime.Engine(config)


def run_time(eng: wasmtime.Engine, wasm: bytes, iterations: int = 3000) -> float:
    linker = wasmtime.Linker(eng)
    linker.define_wasi()
    pre = linker.instantiate_pre(wasmtime.Module(eng, wasm))
    samples = []
    for _ in range(iterations):
        store = wasmtime.Store(eng)
        store.set_wasi(wasmtime.WasiConfig())
        store.set_epoch_deadline(1_000_000)
        started = time.perf_counter()
        instance = pre.instantiate(store)
        start = instance.exports(store)["_start"]
        assert isinstance(start, wasmtime.Func)
        start(store)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6


def main() -> None:
    print(machine())
    hello = (ROOT / "examples" / "hello" / "hello.wasm").read_bytes()
    print("\n| module | bytes | tier 0 (none) compile ms | tier 1 (speed) compile ms | saved |")
    print("|---|---:|---:|---:|---:|")
    for name, wasm in (("hello", hello), ("echo", (ROOT / "examples" / "echo" / "echo.wasm").read_bytes()),
                       ("generated, several MB", module("big", 7000))):
        times = {}
        for level in ("none", "speed"):
            eng = engine(level)
            samples = []
            for _ in range(3):
                started = time.perf_counter()
                wasmtime.Module(eng, wasm)
                samples.append(time.perf_counter() - started)
            times[level] = statistics.median(samples) * 1000
        saved = 1 - times["none"] / times["speed"]
        print(f"| {name} | {len(wasm)} | {times['none']:.1f} | {times['speed']:.1f} | {saved:.0%} |")
    print("\nhello, instantiate + run, median us:",
          {level: round(run_time(engine(level), hello), 1) for level in ("none", "speed")})


if __name__ == "__main__":
    main()
