"""``list<u8>`` through the C API's array of values: ``bytes_list`` writes it, ``decode`` reads it back.

Both work on the whole array at once (strided slices of a byte buffer); a wrong
stride or payload offset would shift or mix the bytes, which these catch for
every byte value and for sizes around the 32-byte value size.
"""

from __future__ import annotations

import ctypes

import pytest
from wasmtime import _ffi as ffi

from wasmlet.guest._proxy import _abi as abi


@pytest.mark.parametrize("size", [1, 2, 31, 32, 33, 256, 65536 + 7])
def test_bytes_round_trip_through_the_array_of_values(size: int) -> None:
    value = (bytes(range(256)) * (size // 256 + 1))[:size][::-1]
    val = abi.Val()
    abi.bytes_list(None, value, ctypes.addressof(val))
    try:
        assert val.kind == ffi.WASMTIME_COMPONENT_LIST.value
        items = val.of.list
        assert items.size == size
        assert all(items.data[i].kind == ffi.WASMTIME_COMPONENT_U8.value for i in (0, size // 2, size - 1))
        assert [items.data[i].of.u8 for i in (0, size // 2, size - 1)] == [value[0], value[size // 2], value[-1]]
        assert abi.decode(None, ctypes.addressof(val)) == value
    finally:
        ffi.wasmtime_component_val_delete(ctypes.byref(val))


def test_empty_list_is_an_empty_list_both_ways() -> None:
    val = abi.Val()
    abi.bytes_list(None, b"", ctypes.addressof(val))
    try:
        assert val.of.list.size == 0
        assert abi.decode(None, ctypes.addressof(val)) == []
    finally:
        ffi.wasmtime_component_val_delete(ctypes.byref(val))
