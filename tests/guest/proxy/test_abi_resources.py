"""A component's resources converted by ``_abi`` through ctypes and through the C helper, alike.

``own`` makes a new owned handle for a host rep in a real store; ``decode``
turns it back into the rep (``_to_rep``), and wasmtime's refusals (a handle
already taken, a handle of another store) become the same ``WasmtimeError``
either way. The C helper (``_fastpath.c``: ``wasmlet_resource_own``,
``wasmlet_resource_rep``) replaces three ctypes calls per conversion; every
proxy test runs through it too.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator

import pytest
import wasmtime
from wasmtime import _ffi as ffi

from wasmlet.guest import _native as native
from wasmlet.guest._proxy import _abi as abi


@pytest.fixture(params=["ctypes", "native"])
def way(request: pytest.FixtureRequest) -> Iterator[str]:
    saved = abi._to_rep, abi._own_into
    abi._to_rep, abi._own_into = abi._ctypes_to_rep, abi._ctypes_own_into
    if request.param == "native":
        fast = native.fast_path()
        assert fast is not None, "the C helper did not build (make test installs clang)"
        abi.use_native(fast)
        assert abi._to_rep is not abi._ctypes_to_rep and abi._own_into is not abi._ctypes_own_into
    try:
        yield request.param
    finally:
        abi._to_rep, abi._own_into = saved


def _context(store: wasmtime.Store) -> int:
    address = ctypes.cast(store._context(), ctypes.c_void_p).value
    assert address
    return address


def _owned(context: int, rep: int, type_id: int = 7) -> abi.Val:
    value = abi.Val()
    abi.own(type_id)(context, rep, ctypes.addressof(value))
    return value


def test_an_owned_handle_gives_its_rep_back_once(way: str) -> None:
    store = wasmtime.Store(wasmtime.Engine())
    context = _context(store)
    for rep in (0, 12345, 2**32 - 1):  # the whole u32 range, none mistaken for an error
        value = _owned(context, rep)
        try:
            assert abi.kind(ctypes.addressof(value)) == abi.RESOURCE
            assert abi.decode(context, ctypes.addressof(value)) == rep
            with pytest.raises(wasmtime.WasmtimeError, match="unknown handle index"):
                abi.decode(context, ctypes.addressof(value))  # taken: the table no longer holds it
        finally:
            ffi.wasmtime_component_val_delete(ctypes.byref(value))


def test_a_handle_of_another_store_is_refused(way: str) -> None:
    engine = wasmtime.Engine()
    mine, other = wasmtime.Store(engine), wasmtime.Store(engine)
    value = _owned(_context(mine), 5)
    try:
        with pytest.raises(wasmtime.WasmtimeError, match="unknown handle index"):
            abi.decode(_context(other), ctypes.addressof(value))
        assert abi.decode(_context(mine), ctypes.addressof(value)) == 5  # untouched by the refusal
    finally:
        ffi.wasmtime_component_val_delete(ctypes.byref(value))
