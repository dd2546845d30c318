"""A request body echoed by a wasi:http component, in process: host calls entered in C vs ctypes' callback.

``tests/guests/components/proxy_guest.wasm``'s ``/echo`` reads the body and writes it back; every
read and write is a host call carrying a ``list<u8>``. Two handlers of the same component, one
linked with the host-call helper (``guest/_hostcall.c``, the default where it builds) and one with
ctypes' callback (``_proxy._abi._call``, as with ``WASMLET_NATIVE=0`` or without Python's headers),
run the same POST in alternation; p50 and min wall time per request are printed.

    .venv/bin/python bench/proxy_echo.py [--size 1048576] [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import wasmtime.component as wc

from _common import machine
from wasmlet.engine import EpochTicker, build_engine
from wasmlet.guest import CgiRequest, GuestLimits
from wasmlet.guest import _native as native
from wasmlet.guest._proxy import ProxyHandler, build_proxy_linker, component_interfaces, find_handler_export
from wasmlet.plan import EngineSettings

GUEST = Path(__file__).resolve().parents[1] / "tests" / "guests" / "components" / "proxy_guest.wasm"
LIMITS = GuestLimits(memory=256 << 20, timeout=60.0, max_response=64 << 20)


def handler(engine: object, host_calls: bool) -> ProxyHandler:
    component = wc.Component.from_file(engine, GUEST)
    found = native.host_calls
    if not host_calls:
        native.host_calls = lambda: None  # this linker only: ctypes' callbacks
    try:
        linker = build_proxy_linker(engine, component_interfaces(component, engine), [])  # type: ignore[arg-type]
    finally:
        native.host_calls = found
    handle = find_handler_export(component, engine)  # type: ignore[arg-type]
    assert handle is not None
    return ProxyHandler("echo", engine, component, LIMITS, "/", linker, handle)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1 << 20, help="body bytes")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    print(machine())
    assert native.host_calls() is not None, "the host-call helper did not build (python3-dev and a C compiler?)"
    engine = build_engine(EngineSettings())
    EpochTicker(engine, 0.005).start()
    ways = {"host calls entered in C": handler(engine, True), "ctypes' callback": handler(engine, False)}
    body = bytes(range(256)) * (args.size // 256) + bytes(args.size % 256)
    request = CgiRequest(method="POST", path="/echo", raw_path="/echo", query="", headers=(("host", "t"),), body=body)
    for way in ways.values():
        assert way.handle(request).response.body == body
    times: dict[str, list[float]] = {label: [] for label in ways}
    for _ in range(args.rounds):
        for label, way in ways.items():
            started = time.perf_counter()
            way.handle(request)
            times[label].append((time.perf_counter() - started) * 1e3)
    print(f"{args.size} byte body echoed, {args.rounds} rounds alternating; ms per request")
    for label, values in times.items():
        print(f"  {label:24s} p50 {statistics.median(values):8.1f}   min {min(values):8.1f}")


if __name__ == "__main__":
    main()
