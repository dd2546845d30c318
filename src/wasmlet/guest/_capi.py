"""The wasmtime C API calls on the request path, made directly.

wasmtime-py's object layer wraps every handle in a Python object with a
finaliser, checks each pointer's type and goes through a Python function per
call; on a request of a few tens of microseconds those costs are most of the
time (``bench/hotpath.py``). The request path instead calls the C functions
itself, with ``void *`` and integer arguments, on prototypes of its own (made
with ``CDLL.__getitem__``, which returns a new function object, so
wasmtime-py's prototypes of the same symbols are left as they are).

Like every ``CDLL`` call, these release the GIL while they run, so guests on
several threads run in parallel and the epoch ticker keeps ticking.

Strings go to C as ``char **`` arrays built from the addresses of ``bytes``
objects (their contents are NUL-terminated in CPython), which is about five
times cheaper than a ``c_char_p`` array; a self-check at import falls back to
``c_char_p`` arrays on an interpreter where that does not hold.
"""

from __future__ import annotations

import array
import ctypes
import sys
from collections.abc import Sequence
from typing import Any, cast

import wasmtime
from wasmtime import _bindings
from wasmtime import _ffi as ffi

__all__ = [
    "Lane",
    "call_export",
    "error_from",
    "memory_size",
    "set_argv",
    "set_env",
    "set_stdin",
    "trap_from",
]

_char_pp = ctypes.POINTER(ctypes.POINTER(ctypes.c_char))
_vp = ctypes.c_void_p
_u64 = ctypes.c_uint64
_i64 = ctypes.c_int64


_dll: ctypes.CDLL = _bindings.dll  # type: ignore[attr-defined]


def _proto(name: str, restype: Any, *argtypes: Any) -> Any:
    function = _dll[name]  # a new function object: wasmtime-py's prototype of it is untouched
    function.restype = restype
    function.argtypes = list(argtypes)
    return function


wasi_config_new = _proto("wasi_config_new", _vp)
wasi_config_delete = _proto("wasi_config_delete", None, _vp)
wasi_config_set_argv = _proto("wasi_config_set_argv", ctypes.c_bool, _vp, ctypes.c_size_t, _vp)
wasi_config_set_env = _proto("wasi_config_set_env", ctypes.c_bool, _vp, ctypes.c_size_t, _vp, _vp)
wasi_config_set_stdin_bytes = _proto("wasi_config_set_stdin_bytes", None, _vp, _vp)
wasi_config_set_stdout_file = _proto("wasi_config_set_stdout_file", ctypes.c_bool, _vp, ctypes.c_char_p)
wasi_config_set_stderr_file = _proto("wasi_config_set_stderr_file", ctypes.c_bool, _vp, ctypes.c_char_p)
wasi_config_preopen_dir = _proto("wasi_config_preopen_dir", ctypes.c_bool, _vp, ctypes.c_char_p, ctypes.c_char_p,
                                 ctypes.c_bool)
store_new = _proto("wasmtime_store_new", _vp, _vp, _vp, _vp)
store_context = _proto("wasmtime_store_context", _vp, _vp)
store_delete = _proto("wasmtime_store_delete", None, _vp)
store_limiter = _proto("wasmtime_store_limiter", None, _vp, _i64, _i64, _i64, _i64, _i64)
store_epoch_deadline_callback = _proto("wasmtime_store_epoch_deadline_callback", None, _vp, _vp, _vp, _vp)
context_set_wasi = _proto("wasmtime_context_set_wasi", _vp, _vp, _vp)
context_set_epoch_deadline = _proto("wasmtime_context_set_epoch_deadline", None, _vp, _u64)
instance_pre_instantiate = _proto("wasmtime_instance_pre_instantiate", _vp, _vp, _vp, _vp, _vp)
instance_export_get = _proto("wasmtime_instance_export_get", ctypes.c_bool, _vp, _vp, ctypes.c_char_p,
                             ctypes.c_size_t, _vp)
func_call = _proto("wasmtime_func_call", _vp, _vp, _vp, _vp, ctypes.c_size_t, _vp, ctypes.c_size_t, _vp)
memory_data_size = _proto("wasmtime_memory_data_size", ctypes.c_size_t, _vp, _vp)
byte_vec_new = _proto("wasm_byte_vec_new", None, _vp, ctypes.c_size_t, ctypes.c_char_p)

_FUNC = int(ffi.WASMTIME_EXTERN_FUNC.value)
_MEMORY = int(ffi.WASMTIME_EXTERN_MEMORY.value)


def error_from(address: int) -> wasmtime.WasmtimeError:
    """The wasmtime-py exception for an owned ``wasmtime_error_t *`` (an ``ExitTrap`` for ``proc_exit``)."""
    return wasmtime.WasmtimeError._from_ptr(ctypes.cast(address, ctypes.POINTER(ffi.wasmtime_error_t)))


def trap_from(address: int) -> wasmtime.Trap:
    """The wasmtime-py exception for an owned ``wasm_trap_t *``."""
    return wasmtime.Trap._from_ptr(ctypes.cast(address, ctypes.POINTER(ffi.wasm_trap_t)))


class Lane:
    """One thread's reusable C structures for a run: the instance, one extern, a trap slot, stdin.

    wasmtime writes into them and the caller reads them back right away; a
    thread runs one guest at a time, so each thread keeps one set.
    """

    __slots__ = ("extern", "extern_at", "fast", "instance", "instance_at", "stdin", "stdin_at", "trap", "trap_at")

    def __init__(self) -> None:
        self.instance = ffi.wasmtime_instance_t()
        self.instance_at = ctypes.addressof(self.instance)
        self.extern = ffi.wasmtime_extern_t()
        self.extern_at = ctypes.addressof(self.extern)
        self.trap = ctypes.c_void_p()
        self.trap_at = ctypes.addressof(self.trap)
        self.stdin = ffi.wasm_byte_vec_t()
        self.stdin_at = ctypes.addressof(self.stdin)
        self.fast: Any = None  # the native path's run structure wired to this lane (_native.new_run), once used

    def export(self, context: int, name: bytes, kind: int) -> int:
        """The address of this lane's extern holding the instance's export ``name`` of ``kind``, or 0."""
        extern = self.extern
        if not instance_export_get(context, self.instance_at, name, len(name), self.extern_at):
            return 0
        if cast(int, extern.kind) != kind:
            return 0
        return self.extern_at + _OF_OFFSET

    def call(self, context: int, name: bytes) -> None:
        """Call the export ``name`` (no parameters, no results); raise as ``Func.__call__`` would."""
        func = self.export(context, name, _FUNC)
        if not func:
            raise wasmtime.WasmtimeError(f"the module exports no function {name.decode()!r}")
        self.trap.value = None
        error = func_call(context, func, None, 0, None, 0, self.trap_at)
        if error:
            raise error_from(error)
        trap = self.trap.value
        if trap:
            raise trap_from(trap)

    def memory_size(self, context: int) -> int:
        """Bytes of the instance's exported ``memory``, or 0 when it has none."""
        memory = self.export(context, b"memory", _MEMORY)
        return int(memory_data_size(context, memory)) if memory else 0


_OF_OFFSET: int = ffi.wasmtime_extern_t.of.offset


# char ** arrays ------------------------------------------------------------
_BYTES_DATA = sys.getsizeof(b"") - 1  # offset of a bytes object's contents (32 on 64-bit CPython)


def _addresses(values: Sequence[bytes]) -> array.array[int]:
    # From a list, not an iterator: array.array then sizes itself once (1.8 vs 2.2 us for 20 values).
    return array.array("Q", [id(value) + _BYTES_DATA for value in values])


def _c_array(values: Sequence[bytes]) -> ctypes.Array[ctypes.c_char_p]:
    return (ctypes.c_char_p * len(values))(*values)


def _by_address_works() -> bool:
    probe = [b"wasmlet", b"", b"\xff\x00x"]
    addresses = _addresses(probe) if array.array("Q").itemsize == ctypes.sizeof(ctypes.c_void_p) else []
    return bool(addresses) and all(
        ctypes.string_at(a, len(v) + 1) == v + b"\0" for a, v in zip(addresses, probe, strict=True))


_BY_ADDRESS = sys.implementation.name == "cpython" and _by_address_works()


def string_array(values: Sequence[bytes]) -> tuple[int, object]:
    """A ``char **`` for ``values`` (which the caller keeps alive) and the object that owns the array."""
    if _BY_ADDRESS:
        addresses = _addresses(values)
        address: int = addresses.buffer_info()[0]
        return address, addresses
    strings = _c_array(values)
    return ctypes.addressof(strings), strings


# The wasmtime-py level helpers (GuestRun for components, tools) ---------------
def _strings(values: list[bytes]) -> ctypes.Array[ctypes.c_char_p]:
    return (ctypes.c_char_p * len(values))(*values)


def set_env(wasi: wasmtime.WasiConfig, pairs: list[tuple[str, str]]) -> None:
    names = _strings([k.encode() for k, _ in pairs])
    values = _strings([v.encode("utf-8", "surrogateescape") for _, v in pairs])
    if not ffi.wasi_config_set_env(wasi.ptr(), len(pairs), ctypes.cast(names, _char_pp), ctypes.cast(values, _char_pp)):
        raise wasmtime.WasmtimeError("failed to configure the guest environment")


def set_argv(wasi: wasmtime.WasiConfig, argv: list[str]) -> None:
    array_ = _strings([a.encode("utf-8", "surrogateescape") for a in argv])
    if not ffi.wasi_config_set_argv(wasi.ptr(), len(argv), ctypes.cast(array_, _char_pp)):
        raise wasmtime.WasmtimeError("failed to configure the guest argv")


def set_stdin(wasi: wasmtime.WasiConfig, data: bytes) -> None:
    vec = ffi.wasm_byte_vec_t()
    buffer = ctypes.cast(ctypes.c_char_p(data), ctypes.POINTER(ctypes.c_ubyte))
    ffi.wasm_byte_vec_new(ctypes.byref(vec), len(data), buffer)  # copies the bytes
    ffi.wasi_config_set_stdin_bytes(wasi.ptr(), ctypes.byref(vec))  # wasmtime takes ownership of vec


def _export(store: wasmtime.Store, instance: wasmtime.Instance, name: bytes) -> ffi.wasmtime_extern_t | None:
    item = ffi.wasmtime_extern_t()
    found = ffi.wasmtime_instance_export_get(
        store._context(), ctypes.byref(instance._instance), name, len(name), ctypes.byref(item)
    )
    return item if found else None


def call_export(store: wasmtime.Store, instance: wasmtime.Instance, name: bytes) -> None:
    """Call the export ``name`` (a function of no parameters and no results).

    Raises ``wasmtime.Trap``, ``wasmtime.ExitTrap`` or ``wasmtime.WasmtimeError``
    exactly as ``Func.__call__`` would.
    """
    item = _export(store, instance, name)
    if item is None or cast(int, item.kind) != ffi.WASMTIME_EXTERN_FUNC.value:
        raise wasmtime.WasmtimeError(f"the module exports no function {name.decode()!r}")
    trap = ctypes.POINTER(ffi.wasm_trap_t)()
    error = ffi.wasmtime_func_call(
        store._context(), ctypes.byref(item.of.func), None, 0, None, 0, ctypes.byref(trap)
    )
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)
    if trap:
        raise wasmtime.Trap._from_ptr(trap)


def memory_size(store: wasmtime.Store, instance: wasmtime.Instance | None) -> int:
    """Bytes of the instance's exported ``memory``, or 0 when it has none."""
    if instance is None:
        return 0
    item = _export(store, instance, b"memory")
    if item is None or cast(int, item.kind) != ffi.WASMTIME_EXTERN_MEMORY.value:
        return 0
    return int(ffi.wasmtime_memory_data_size(store._context(), ctypes.byref(item.of.memory)))
