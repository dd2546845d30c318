"""The few wasmtime C API calls on the request path, made directly.

wasmtime-py's object layer builds a dict of every export and converts each
environment string separately; on a ~100 us request those costs show up in
the profile (``bench/profile_hot_path.py``). These helpers do the same work
with one ctypes call each. They are used only where a profile showed it.
"""

from __future__ import annotations

import ctypes
from typing import cast

import wasmtime
from wasmtime import _ffi as ffi

__all__ = ["call_export", "memory_size", "set_argv", "set_env", "set_stdin"]

_char_pp = ctypes.POINTER(ctypes.POINTER(ctypes.c_char))


def _strings(values: list[bytes]) -> ctypes.Array[ctypes.c_char_p]:
    return (ctypes.c_char_p * len(values))(*values)


def set_env(wasi: wasmtime.WasiConfig, pairs: list[tuple[str, str]]) -> None:
    names = _strings([k.encode() for k, _ in pairs])
    values = _strings([v.encode("utf-8", "surrogateescape") for _, v in pairs])
    if not ffi.wasi_config_set_env(wasi.ptr(), len(pairs), ctypes.cast(names, _char_pp), ctypes.cast(values, _char_pp)):
        raise wasmtime.WasmtimeError("failed to configure the guest environment")


def set_argv(wasi: wasmtime.WasiConfig, argv: list[str]) -> None:
    array = _strings([a.encode("utf-8", "surrogateescape") for a in argv])
    if not ffi.wasi_config_set_argv(wasi.ptr(), len(argv), ctypes.cast(array, _char_pp)):
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
