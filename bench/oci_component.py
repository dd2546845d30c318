"""Components as OCI artifacts: what listing their interfaces costs, and push/pull times.

* interfaces: ``component.imports``/``exports`` for the config, read from the
  binary's outer sections (what ``wasmlet push`` does) vs. compiling it with
  wasmtime and asking its component type (the same names);
* push (fresh registry, every blob uploaded), pull cold (empty cache), pull
  again by tag (one manifest GET; config and component from the store, not
  downloaded) and by digest (the store alone), against Debian's
  ``docker-registry`` on 127.0.0.1.

    .venv/bin/python bench/oci_component.py [--component PATH] [--repeat 5]

Default component: tests/guests/components/cgi_p2.wasm (8.6 KB). A 30-40 MB
componentize-py build is the case that matters; pass it with --component.
Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import wasmtime
import wasmtime.component

from _common import machine
from oci_deploy import Registry
from wasmlet.engine import BlobStore
from wasmlet.registry import pull_module, push_module
from wasmlet.registry._component import component_interfaces

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "tests" / "guests" / "components" / "cgi_p2.wasm"


def once(fn: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def ms(times: list[float]) -> str:
    return f"{statistics.median(times) * 1000:.2f} ms (min {min(times) * 1000:.2f}, max {max(times) * 1000:.2f})"


def wasmtime_names(data: bytes) -> tuple[list[str], list[str]]:
    engine = wasmtime.Engine()
    component = wasmtime.component.Component(engine, data)
    return list(component.type.imports(engine)), list(component.type.exports(engine))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--component", type=Path, default=DEFAULT)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    data = args.component.read_bytes()
    print(machine())
    print(f"component: {args.component} ({len(data)} bytes)")

    names = component_interfaces(data)
    print(f"imports: {len(names.imports)}, exports: {len(names.exports)}")
    print(f"interfaces, outer sections read:  {ms(timed(lambda: component_interfaces(data), args.repeat))}")
    compiled = timed(lambda: wasmtime_names(data), min(args.repeat, 3))
    print(f"interfaces, wasmtime compile+type: {ms(compiled)}")
    assert wasmtime_names(data) == (list(names.imports), list(names.exports))

    with tempfile.TemporaryDirectory(prefix="wasmlet-bench-oci-component-") as tmp:
        registry = Registry(Path(tmp))
        try:
            push, cold, warm, pinned = [], [], [], []
            for n in range(args.repeat):
                ref = f"oci://{registry.host}/bench/component{n}:v1"
                start = time.perf_counter()
                pushed = push_module(data, ref)
                push.append(time.perf_counter() - start)
                blobs = BlobStore(Path(tmp) / f"cache{n}")
                cold.append(once(pull_module, ref, blobs))
                warm.append(once(pull_module, ref, blobs))
                by_digest = f"oci://{registry.host}/bench/component{n}@{pushed.manifest_digest}"
                pinned.append(once(pull_module, by_digest, blobs))
            print(f"push (first to this repository):  {ms(push)}")
            print(f"pull by tag, empty cache:         {ms(cold)}")
            print(f"pull by tag again (stored):       {ms(warm)}")
            print(f"pull by digest (store only):      {ms(pinned)}")
        finally:
            registry.stop()


if __name__ == "__main__":
    main()
