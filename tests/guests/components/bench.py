"""Per-request cost: WAGI (preview 1 module) against wasi:cli (preview 2 component).

An in-process loop on one thread, no HTTP: ``handler.handle(request)`` for
the same echo request, on the serving engine (``build_engine`` defaults:
pooling allocator, epoch interruption, epoch ticker running).

    .venv/bin/python tests/guests/components/bench.py [--requests 3000]

Prints p50, p99 and mean per request for each guest, and for components the
share spent in ``wasmtime_component_linker_instantiate`` (which has no
pre-instantiated form in wasmtime-py 50).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import wasmtime
import wasmtime.component as wc

from wasmlet.engine import EpochTicker, build_engine
from wasmlet.guest import CgiRequest, GuestLimits, WagiHandler
from wasmlet.guest._component import ComponentHandler, build_component_linker
from wasmlet.plan import EngineSettings

HERE = Path(__file__).resolve().parent
LIMITS = GuestLimits(memory=16 << 20, timeout=5.0, max_response=1 << 20)
REQUEST = CgiRequest(
    method="POST",
    path="/app/echo",
    raw_path="/app/echo",
    query="a=1&b=2",
    headers=(("host", "bench.test"), ("content-type", "text/plain"), ("user-agent", "bench")),
    body=b"x" * 256,
)


def measure(cases: dict[str, Callable[[], object]], n: int) -> None:
    """Run the cases round-robin, so machine noise falls on all of them alike."""
    for run in cases.values():
        for _ in range(min(200, n)):
            run()
    times: dict[str, list[float]] = {label: [] for label in cases}
    for _ in range(n):
        for label, run in cases.items():
            t = time.perf_counter()
            run()
            times[label].append(time.perf_counter() - t)
    for label, ts in times.items():
        ts.sort()
        p50, p99 = ts[len(ts) // 2], ts[int(len(ts) * 0.99)]
        mean = statistics.fmean(ts)
        print(f"{label:46s} p50 {p50 * 1e6:7.1f} us   p99 {p99 * 1e6:7.1f} us   mean {mean * 1e6:7.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    n = parser.parse_args().requests
    settings = EngineSettings()
    engine = build_engine(settings)
    ticker = EpochTicker(engine, settings.epoch_tick)
    ticker.start()
    print(f"wasmtime-py {version('wasmtime')}, {n} requests per case, cases interleaved")

    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    module = wasmtime.Module.from_file(engine, str(HERE / "cgi_p1_command.wasm"))
    wagi = WagiHandler("bench", engine, linker, module, LIMITS, route="/app")
    clinker = build_component_linker(engine)
    components = {name: wc.Component.from_file(engine, HERE / f"{name}.wasm") for name in ("cgi_p1_adapted", "cgi_p2")}
    apps = {
        name: ComponentHandler("bench", engine, component, LIMITS, route="/app", linker=clinker)
        for name, component in components.items()
    }
    assert apps["cgi_p1_adapted"].handle(REQUEST).response == wagi.handle(REQUEST).response

    def instantiate(component: wc.Component) -> Callable[[], object]:
        def run() -> None:
            store = wasmtime.Store(engine)
            store.set_wasi(wasmtime.WasiConfig())
            store.set_epoch_deadline(1 << 30)
            clinker.instantiate(store, component)

        return run

    def pre_instantiate() -> None:
        store = wasmtime.Store(engine)
        store.set_wasi(wasmtime.WasiConfig())
        store.set_epoch_deadline(1 << 30)
        wagi._pre.instantiate(store)

    measure(
        {
            "WAGI handle, cgi_p1_command.wasm": lambda: wagi.handle(REQUEST),
            "component handle, cgi_p1_adapted.wasm": lambda: apps["cgi_p1_adapted"].handle(REQUEST),
            "component handle, cgi_p2.wasm": lambda: apps["cgi_p2"].handle(REQUEST),
            "  WAGI InstancePre.instantiate only": pre_instantiate,
            "  component instantiate only, cgi_p1_adapted": instantiate(components["cgi_p1_adapted"]),
            "  component instantiate only, cgi_p2": instantiate(components["cgi_p2"]),
        },
        n,
    )
    ticker.stop()


if __name__ == "__main__":
    main()
