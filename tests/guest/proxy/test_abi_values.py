"""Every encoder of ``_abi`` writes what wasmtime's own ``wasmtime_component_val_t`` layout reads, and back.

The encoders and ``decode`` work on raw addresses with ``struct`` offsets (not
on ctypes structures), so each value is checked twice: through wasmtime-py's
ctypes definition of the C structure (an offset off by a field reads wrong
there), then through ``decode``. ``own`` needs a store and is run by every
request of the proxy tests.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from wasmtime import _ffi as ffi

from wasmlet.guest._proxy import _abi as abi

K = ffi


@pytest.fixture
def val() -> Iterator[Any]:
    value = abi.Val()
    yield value
    ffi.wasmtime_component_val_delete(ctypes.byref(value))


def _write(val: Any, encoder: abi.Encoder, value: object) -> object:
    encoder(None, value, ctypes.addressof(val))
    return abi.decode(None, ctypes.addressof(val))


def _name(vec: Any) -> str:
    return ctypes.string_at(vec.data, vec.size).decode()


@pytest.mark.parametrize(("encoder", "kind", "field", "value"), [
    (abi.u8, K.WASMTIME_COMPONENT_U8, "u8", 255),
    (abi.u16, K.WASMTIME_COMPONENT_U16, "u16", 65535),
    (abi.u32, K.WASMTIME_COMPONENT_U32, "u32", 0xFFFF_FFFE),
    (abi.u64, K.WASMTIME_COMPONENT_U64, "u64", 2**64 - 2),
    (abi.boolean, K.WASMTIME_COMPONENT_BOOL, "boolean", True),
])
def test_scalars(val: Any, encoder: abi.Encoder, kind: Any, field: str, value: int) -> None:
    assert _write(val, encoder, value) == value
    assert val.kind == kind.value
    assert getattr(val.of, field) == value


def test_a_scalar_out_of_its_range_is_refused_not_truncated(val: Any) -> None:
    with pytest.raises(struct.error, match="format requires"):
        abi.u16(None, 70000, ctypes.addressof(val))


def test_string_and_enum(val: Any) -> None:
    assert _write(val, abi.string, "héllo") == "héllo"
    assert val.kind == K.WASMTIME_COMPONENT_STRING.value
    assert _name(val.of.string) == "héllo"
    other = abi.Val()
    try:
        assert _write(other, abi.enum, "access-denied") == "access-denied"
        assert other.kind == K.WASMTIME_COMPONENT_ENUM.value
        assert _name(other.of.enumeration) == "access-denied"
    finally:
        ffi.wasmtime_component_val_delete(ctypes.byref(other))


def test_empty_string(val: Any) -> None:
    assert _write(val, abi.string, "") == ""
    assert val.of.string.size == 0


def test_option(val: Any) -> None:
    encoder = abi.option(abi.string)
    assert _write(val, encoder, "x") == "x"
    assert val.kind == K.WASMTIME_COMPONENT_OPTION.value
    assert _name(val.of.option.contents.of.string) == "x"
    none = abi.Val()
    try:
        assert _write(none, encoder, None) is None
        assert not none.of.option
    finally:
        ffi.wasmtime_component_val_delete(ctypes.byref(none))


@pytest.mark.parametrize(("value", "ok"), [((True, 7), True), ((False, ("forbidden", None)), False)])
def test_result(val: Any, value: tuple[bool, object], ok: bool) -> None:
    encoder = abi.result(abi.u64, abi.variant({"invalid-syntax": None, "forbidden": None}))
    assert _write(val, encoder, value) == value
    assert val.kind == K.WASMTIME_COMPONENT_RESULT.value
    assert val.of.result.is_ok is ok
    payload = val.of.result.val.contents
    if ok:
        assert payload.of.u64 == 7
    else:
        assert _name(payload.of.variant.discriminant) == "forbidden"
        assert not payload.of.variant.val


def test_result_without_payloads(val: Any) -> None:
    assert _write(val, abi.result(None, None), (False, None)) == (False, None)
    assert val.of.result.is_ok is False
    assert not val.of.result.val


def test_variant_with_a_payload(val: Any) -> None:
    encoder = abi.variant({"other": abi.string, "HTTP": None})
    assert _write(val, encoder, ("other", "gopher")) == ("other", "gopher")
    assert val.kind == K.WASMTIME_COMPONENT_VARIANT.value
    assert _name(val.of.variant.discriminant) == "other"
    assert _name(val.of.variant.val.contents.of.string) == "gopher"


def test_list_of_tuples(val: Any) -> None:
    encoder = abi.list_of(abi.tuple_of(abi.string, abi.bytes_list))
    entries = [("content-type", b"text/plain"), ("x-a", b"")]
    assert _write(val, encoder, entries) == [("content-type", b"text/plain"), ("x-a", [])]  # [] is an empty list
    assert val.kind == K.WASMTIME_COMPONENT_LIST.value
    items = val.of.list
    assert items.size == 2
    first = items.data[0]
    assert first.kind == K.WASMTIME_COMPONENT_TUPLE.value
    assert first.of.tuple.size == 2
    assert _name(first.of.tuple.data[0].of.string) == "content-type"
    assert first.of.tuple.data[1].of.list.size == len(b"text/plain")


def test_empty_list(val: Any) -> None:
    assert _write(val, abi.list_of(abi.u32), []) == []
    assert val.kind == K.WASMTIME_COMPONENT_LIST.value
    assert val.of.list.size == 0


def test_record(val: Any) -> None:
    encoder = abi.record(("seconds", abi.u64), ("nanoseconds", abi.u32))
    assert _write(val, encoder, (1_700_000_000, 999_999_999)) == {"seconds": 1_700_000_000,
                                                                   "nanoseconds": 999_999_999}
    assert val.kind == K.WASMTIME_COMPONENT_RECORD.value
    entries = val.of.record
    assert entries.size == 2
    assert [_name(entries.data[i].name) for i in range(2)] == ["seconds", "nanoseconds"]
    assert entries.data[1].val.of.u32 == 999_999_999


def test_kind_reads_the_tag(val: Any) -> None:
    abi.u32(None, 1, ctypes.addressof(val))
    assert abi.kind(ctypes.addressof(val)) == K.WASMTIME_COMPONENT_U32.value
