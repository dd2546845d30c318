"""What Spin's key-value and variables cost on this host: the SQLite store alone, and through a guest.

- ``KeyValueStores`` directly: ``set`` (one write transaction, WAL fsynced:
  ``synchronous=FULL``) and ``get`` of 16 B, 1 KiB and 1 MiB values;
- ``tests/guest/spin/guest/spin_probe.wasm`` under ``ComponentHandler`` with
  ``define_spin``: a whole request that opens the store and does one get, one
  set, or one variable lookup, against the same request with no Spin call.

The store lives under ``--dir`` (default: a temporary directory, on whatever
disk holds it: fsync cost is the disk's).

    .venv/bin/python bench/spin_kv.py [--iterations 300] [--dir PATH]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import wasmtime.component as wc

from _common import machine
from wasmlet.engine import EpochTicker, build_engine
from wasmlet.guest import CgiRequest, GuestLimits
from wasmlet.guest._component import ComponentHandler, build_component_linker
from wasmlet.guest._spin import KeyValueHost, KeyValueStores, SpinContext, define_spin, spin_context
from wasmlet.plan import EngineSettings

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "tests" / "guest" / "spin" / "guest" / "spin_probe.wasm"


def percentiles(samples: list[float]) -> str:
    samples = sorted(samples)
    p50 = samples[len(samples) // 2]
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return f"p50 {p50 * 1e6:9.0f} µs   p99 {p99 * 1e6:9.0f} µs"


def timed(op: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        op()
        out.append(time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="spin-kv-"))
    print(machine())
    print(f"store under {root}, {args.iterations} iterations per case\n")

    kv = KeyValueStores(root, "bench")
    for size in (16, 1024, 1 << 20):
        value = b"x" * size
        sets = timed(lambda v=value: kv.set("default", "k", v), args.iterations)  # type: ignore[misc]
        print(f"store.set {size:>8} B   {percentiles(sets)}")
        print(f"store.get {size:>8} B   {percentiles(timed(lambda: kv.get('default', 'k'), args.iterations))}")
    kv.close()

    settings = EngineSettings(pool_instances=16, pool_max_memory=64 << 20, pool_warm_slots=4)
    engine = build_engine(settings)
    ticker = EpochTicker(engine, settings.epoch_tick)
    ticker.start()
    linker = build_component_linker(engine)
    define_spin(linker)
    handler = ComponentHandler("bench", engine, wc.Component.from_file(engine, PROBE),
                               GuestLimits(memory=32 << 20, timeout=10.0, max_response=1 << 20), "/", linker=linker)
    host = KeyValueHost(root)
    ctx = SpinContext.build("bench-guest", (("SPIN_VARIABLE_GREETING", "hello"),), host)
    cases = {"no Spin call": "", "open + get": "open=default&get=k", "open + set": "open=default&set=k:v",
             "variables.get": "var=greeting"}
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.iterations):  # round-robin: noise falls on every case alike
        for name, query in cases.items():
            request = CgiRequest(method="GET", path="/", raw_path="/", query=query, headers=(), body=b"")
            started = time.perf_counter()
            with spin_context(ctx):
                handler.handle(request)
            samples[name].append(time.perf_counter() - started)
    print()
    for name, values in samples.items():
        print(f"request, {name:<14} {percentiles(values)}")
    ticker.stop()
    host.close()


if __name__ == "__main__":
    main()
