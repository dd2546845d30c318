"""In-process cost of one request: WAGI hello against a ``wasi:http`` hello, side by side.

Calls ``handler.handle`` directly (no HTTP), round-robin so machine noise falls
on every case alike, on the serving engine (``build_engine`` defaults: pooling
allocator, epoch ticker running), and prints p50/p99 of the wall time per case
and the p50 of the calling thread's CPU time (which a loaded machine inflates
less; the resolution of ``time.thread_time`` is coarse for the short cases):

- WAGI ``examples/hello/hello.wasm`` (``WagiHandler``);
- ``tests/guests/components/proxy_hello.wasm``: the minimal wasi:http hello in
  freestanding C (``ProxyHandler``), and its ``Linker.instantiate`` alone;
- with ``--component LABEL=PATH`` (repeatable): more wasi:http hellos, e.g.
  componentize-py's or jco's from ``examples/python-hello/build.sh`` and
  ``examples/js-hello/build.sh`` (not built here; those cases run at most 500
  times, their requests taking milliseconds).

Then, for each wasi:http case, one more request with every host function and
resource destructor counted (``_proxy._abi``'s tables wrapped for that request
only): how many host calls a request makes, and which.

    .venv/bin/python bench/proxy_inprocess.py [--iterations 5000] [--component python=python-hello.wasm ...]
"""

from __future__ import annotations

import argparse
import collections
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import wasmtime
import wasmtime.component as wc

from _common import HELLO_WASM, machine
from wasmlet.engine import EpochTicker, build_engine
from wasmlet.guest import CgiRequest, GuestLimits, GuestResult, Linkers, WagiHandler
from wasmlet.guest._native import HostFunc
from wasmlet.guest._proxy import ProxyHandler, _abi, build_proxy_linker, component_interfaces, find_handler_export
from wasmlet.plan import EngineSettings

ROOT = Path(__file__).resolve().parents[1]
PROXY_HELLO = ROOT / "tests" / "guests" / "components" / "proxy_hello.wasm"
LIMITS = GuestLimits(memory=256 << 20, timeout=5.0, max_response=1 << 20)
REQUEST = CgiRequest(
    method="GET", path="/", raw_path="/", query="",
    headers=(("host", "127.0.0.1:3000"), ("user-agent", "wrk"), ("accept", "*/*")), body=b"",
    server_name="127.0.0.1", server_port=3000, remote_addr="127.0.0.1", remote_port=40000,
)


def proxy(engine: wasmtime.Engine, path: Path) -> ProxyHandler:
    component = wc.Component.from_file(engine, path)
    handle = find_handler_export(component, engine)
    assert handle is not None, f"{path} exports no wasi:http/incoming-handler"
    linker = build_proxy_linker(engine, component_interfaces(component, engine), [])
    return ProxyHandler("bench", engine, component, LIMITS, "/", linker, handle)


@contextmanager
def counting() -> Iterator[collections.Counter[str]]:
    """Count the host functions and resource destructors called while inside, by their WIT names."""
    counts: collections.Counter[str] = collections.Counter()
    functions, destructors = dict(_abi._functions), dict(_abi._destructors)

    def counted(name: str, func: Callable[..., object]) -> Callable[..., object]:
        def call(*args: object) -> object:
            counts[name] += 1
            return func(*args)

        return call

    _abi._functions.update({k: (counted(_abi.labels[k], f), e) for k, (f, e) in functions.items()})
    _abi._destructors.update({k: counted(_abi.labels[k], d) for k, d in destructors.items()})
    # Defined through the host-call helper (_hostcall.c): the C callback reads the Python callable from its
    # struct at each call, so it is swapped there.
    natives = {k: (d, d.call if isinstance(d, HostFunc) else d.destroy) for k, d in _abi._native_defined.items()}
    for key, (defined, func) in natives.items():
        if isinstance(defined, HostFunc):
            defined.call = counted(_abi.labels[key], func)
        else:
            defined.destroy = counted(_abi.labels[key], func)
    try:
        yield counts
    finally:
        _abi._functions.update(functions)
        _abi._destructors.update(destructors)
        for defined, func in natives.values():
            if isinstance(defined, HostFunc):
                defined.call = func
            else:
                defined.destroy = func


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--component", action="append", default=[], metavar="LABEL=PATH",
                        help="another wasi:http hello to time (repeatable)")
    args = parser.parse_args()
    settings = EngineSettings()
    engine = build_engine(settings)
    ticker = EpochTicker(engine, settings.epoch_tick)
    ticker.start()
    linkers = Linkers(engine)
    wagi = WagiHandler("bench", engine, linkers.core, wasmtime.Module.from_file(engine, HELLO_WASM), LIMITS, "/")
    hello = proxy(engine, PROXY_HELLO)

    def instantiate() -> None:
        store = wasmtime.Store(engine)
        store.set_epoch_deadline(1 << 30)
        hello._linker.instantiate(store, hello._component)

    cases: dict[str, Callable[[], object]] = {
        "WAGI hello handle()": lambda: wagi.handle(REQUEST),
        "wasi:http hello (C) handle()": lambda: hello.handle(REQUEST),
        "wasi:http hello: Linker.instantiate alone": instantiate,
    }
    for entry in args.component:
        label, _, path = entry.partition("=")
        handler = proxy(engine, Path(path))
        cases[f"wasi:http hello ({label}) handle()"] = lambda handler=handler: handler.handle(REQUEST)
    for case in cases.values():  # warm-up
        for _ in range(min(200, args.iterations)):
            case()
    times: dict[str, list[float]] = {label: [] for label in cases}
    cpu: dict[str, list[float]] = {label: [] for label in cases}
    # Where a handle() goes: instantiation (store, linker, instance) and the guest's run with its host calls.
    split: dict[str, list[tuple[float, float]]] = {label: [] for label in cases}
    iterations = args.iterations if not args.component else min(args.iterations, 500)
    for _ in range(iterations):
        for label, case in cases.items():
            start, start_cpu = time.perf_counter(), time.thread_time()
            result = case()
            times[label].append(time.perf_counter() - start)
            cpu[label].append(time.thread_time() - start_cpu)
            if isinstance(result, GuestResult):
                split[label].append((result.stats.instantiate_seconds, result.stats.execute_seconds))
    ticker.stop()
    print(machine())
    print(f"{iterations} requests per case, round-robin, one thread")
    for label, samples in times.items():
        samples.sort()
        p50, p99 = samples[len(samples) // 2], samples[int(len(samples) * 0.99)]
        cpu_p50 = sorted(cpu[label])[len(samples) // 2]
        print(f"{label:46s} p50 {p50 * 1e6:8.1f} us   p99 {p99 * 1e6:8.1f} us   "
              f"thread CPU p50 {cpu_p50 * 1e6:8.1f} us")
        if split[label]:
            instantiate_p50 = sorted(s[0] for s in split[label])[len(split[label]) // 2]
            execute_p50 = sorted(s[1] for s in split[label])[len(split[label]) // 2]
            print(f"{'':46s} of which instantiate p50 {instantiate_p50 * 1e6:8.1f} us, "
                  f"guest run with its host calls p50 {execute_p50 * 1e6:8.1f} us")
    for label, case in cases.items():
        if not label.startswith("wasi:http") or "alone" in label:
            continue
        with counting() as counts:
            case()
        drops = sum(n for name, n in counts.items() if name.startswith("[resource-drop]"))
        print(f"{label}: {sum(counts.values()) - drops} host calls and {drops} resource drops per request:")
        print("    " + ", ".join(f"{name} x{n}" if n > 1 else name for name, n in counts.items()))


if __name__ == "__main__":
    main()
