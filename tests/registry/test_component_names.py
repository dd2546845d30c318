"""Reading a component's imports and exports from its outer sections, checked against wasmtime's own
component type, and fuzzed: any bytes give names or ``MalformedComponent``, never another exception."""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime
import wasmtime.component
from hypothesis import example, given
from hypothesis import strategies as st
from tests.fuzz._fuzz import fuzz

from wasmlet.registry._component import COMPONENT_PREAMBLE, MalformedComponent, component_interfaces
from wasmlet.signing import KeyPair, sign_module

ROOT = Path(__file__).resolve().parents[2]
GUESTS = ROOT / "tests" / "guests"
COMMITTED = sorted(p for p in GUESTS.rglob("*.wasm") if p.read_bytes()[:8] == COMPONENT_PREAMBLE)
CGI_P2 = (GUESTS / "components" / "cgi_p2.wasm").read_bytes()

# Every kind of import (func, type bound both ways, instance, core module, component) and export (with and
# without an ascribed type), as the text format encodes them. Not a component wasmtime runs (it refuses
# root-level component imports and re-exported imported functions): only the outer sections matter here.
EVERY_KIND = """
(component
  (import "f" (func $f (param "x" u32) (result string)))
  (import "t" (type $t (sub resource)))
  (import "ns:pkg/iface@1.2.3" (instance $i (export "g" (func))))
  (import "m" (core module $m))
  {component_import}
  (type $ty (list u8))
  (import "u" (type $u (eq $ty)))
  (export "f2" (func $f))
  (export "ns:pkg/out@0.1.0" (instance $i))
  (export "t2" (type $t))
  (export "f3" (func $f) (func (param "x" u32) (result string)))
)
"""


def wasmtime_names(data: bytes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    engine = wasmtime.Engine()
    component = wasmtime.component.Component(engine, data)
    return tuple(component.type.imports(engine)), tuple(component.type.exports(engine))


def test_committed_components_agree_with_wasmtime() -> None:
    assert len(COMMITTED) >= 4  # cgi_p2, the adapted and command p1 builds, http_probe, the security guests
    for path in COMMITTED:
        data = path.read_bytes()
        names = component_interfaces(data)
        assert (names.imports, names.exports) == wasmtime_names(data), path


def test_every_kind_of_import_and_export() -> None:
    data = bytes(wasmtime.wat2wasm(EVERY_KIND.format(component_import="")))
    names = component_interfaces(data)
    assert names.imports == ("f", "t", "ns:pkg/iface@1.2.3", "m", "u")
    assert names.exports == ("f2", "ns:pkg/out@0.1.0", "t2", "f3")
    nested = bytes(wasmtime.wat2wasm(EVERY_KIND.format(component_import='(import "c" (component))')))
    assert component_interfaces(nested).imports == ("f", "t", "ns:pkg/iface@1.2.3", "m", "c", "u")


def test_a_signed_component_has_the_same_names() -> None:
    signed = sign_module(CGI_P2, KeyPair.generate())  # custom sections in front: skipped
    assert component_interfaces(signed) == component_interfaces(CGI_P2)


@pytest.mark.parametrize(("data", "message"), [
    (b"\0asm\x01\x00\x00\x00", "not a WebAssembly component"),
    (COMPONENT_PREAMBLE + b"\x0a\x40\x01", "runs past its end"),
    (COMPONENT_PREAMBLE + b"\x0a\x03\x01\x02\x00", "malformed import or export name"),
    (COMPONENT_PREAMBLE + b"\x0a\x04\x01\x00\x01\xff", "not UTF-8"),
    (COMPONENT_PREAMBLE + b"\x0a\x05\x01\x00\x01a\x09", "unknown import or export kind 0x09"),
    (COMPONENT_PREAMBLE + b"\x0b\x05\x01\x00\x01a\x07", "unknown sort 0x07"),
    (COMPONENT_PREAMBLE + b"\x0a\x07\x01\x00\x01a\x01\x00\x00", "bytes after its items"),
    (COMPONENT_PREAMBLE + b"\x0a\x06\xff\xff\xff\xff\x0f\x00", "claims 4294967295 items"),
    (COMPONENT_PREAMBLE + b"\x0a\x0a\x01\x00\x01a\x01\x80\x80\x80\x80\x80", "longer than 5 bytes"),
])
def test_malformed_components_name_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(MalformedComponent, match=message):
        component_interfaces(data)


def _mutations() -> st.SearchStrategy[bytes]:
    def mutate(args: tuple[int, int, int]) -> bytes:
        position, value, cut = args
        data = bytearray(CGI_P2)
        data[8 + position % (len(data) - 8)] = value
        return bytes(data[:len(data) - cut])

    return st.tuples(st.integers(0, 1 << 20), st.integers(0, 255), st.integers(0, 64)).map(mutate)


@fuzz(300)
@given(st.one_of(st.binary(max_size=300).map(lambda tail: COMPONENT_PREAMBLE + tail), _mutations()))
@example(COMPONENT_PREAMBLE + b"\x0a\x05\xff\xff\xff\xff\x0f")  # a count of 2^32 - 1 in a 5-byte section
def test_any_bytes_give_names_or_malformed_component(data: bytes) -> None:
    try:
        names = component_interfaces(data)
    except MalformedComponent as exc:
        assert len(str(exc)) < 200
        return
    assert all(isinstance(name, str) for name in (*names.imports, *names.exports))
    assert len(set(names.imports)) == len(names.imports) and len(set(names.exports)) == len(names.exports)
