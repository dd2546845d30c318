"""Host functions on a component linker, with results lowered by explicit case.

``LinkerInstance.add_func`` lowers a Python result by guessing the case of a
``result``/``option``/``variant`` from the Python class of the value
(``VariantLikeType._tagged`` in ``wasmtime/component/_types.py``). For
``result<option<list<u8>>, error>`` (``store.get``) the guess is wrong: an
``option`` case accepts any ``object``, so an error is lowered as ``ok`` and
fails. Here a result is always ``Ok(value)`` or ``Err(value)``, an option
``None`` or the value, a variant ``Variant(tag, payload)``; other types are
lowered by wasmtime-py as usual.

``Refuse(message)`` is a host function's way to say "not on this host": it
lowers to ``err(other(message))`` when the function's result has such a case
(else ``io(message)`` or ``runtime-error(message)``: ``_MESSAGE_CASES``),
and traps with the message otherwise. Denials therefore need no signature
(``deny``), and stay right for any version of an interface.

Two rules of the canonical ABI are kept for every function: a borrowed
handle is released before the host function returns (``_param``), and no Python
exception crosses into wasmtime (``catch_exceptions`` would keep it in a
process-wide slot that the next caller on any thread re-raises); it becomes a
trap naming the function.
"""

from __future__ import annotations

import ctypes
import dataclasses
import itertools
import logging
from collections.abc import Callable
from typing import Any

import wasmtime
import wasmtime.component as wc
from wasmtime import _ffi as ffi
from wasmtime.component._enter import catch_exceptions

__all__ = ["Err", "HostFunc", "Ok", "Refuse", "add_func", "deny"]

log = logging.getLogger("wasmlet.spin")

HostFunc = Callable[..., Any]  # (store, *params) -> result


@dataclasses.dataclass(frozen=True)
class Ok:
    value: Any = None


@dataclasses.dataclass(frozen=True)
class Err:
    value: Any = None


@dataclasses.dataclass(frozen=True)
class Refuse:
    message: str


_funcs: dict[int, tuple[str, HostFunc]] = {}
_counter = itertools.count(1)  # never 0: the index travels as a C void*, and NULL reads back as 0


def add_func(instance: wc.LinkerInstance, name: str, func: HostFunc, label: str = "") -> None:
    """Define ``name`` on ``instance``; ``label`` (e.g. ``iface#name``) is what a trap names."""
    idx = next(_counter)
    _funcs[idx] = (label or name, func)
    raw = name.encode()
    err = ffi.wasmtime_component_linker_instance_add_func(
        instance.ptr(), ctypes.create_string_buffer(raw), len(raw), _trampoline, idx, _finalize
    )
    if err:
        _funcs.pop(idx, None)
        raise wasmtime.WasmtimeError._from_ptr(err)


def deny(interface: str) -> HostFunc:
    """A host function that refuses, naming ``interface``."""
    message = f"wasmlet does not provide {interface}"

    def refuse(store: wasmtime.StoreContext, *params: Any) -> Refuse:
        return Refuse(message)

    return refuse


def _call(store: wasmtime.StoreContext, idx: int, ty_raw: Any, args: Any, nargs: int, results: Any) -> None:
    label, func = _funcs.get(idx, (f"#{idx}", None))
    try:
        if func is None:  # the linker that defined it is gone: cannot happen while an instance of it runs
            raise wasmtime.WasmtimeError(f"wasmlet: host function {label} is no longer defined")
        with wc.FuncType._from_ptr(ty_raw, owner=store) as fty:
            params = [_param(store, _lift(ty, args[i])) for i, (_, ty) in enumerate(fty.params[:nargs])]
            result_ty = fty.result
            value = func(store, *params)
            if isinstance(value, Refuse):
                value = _refusal(result_ty, value.message)
            if result_ty is not None:
                lower(store, result_ty, value, results)
    except wasmtime.WasmtimeError:
        raise
    except Exception as exc:  # a host bug: a trap naming the function, never a Python exception in wasmtime
        log.exception("host function %s failed", label)
        raise wasmtime.WasmtimeError(f"wasmlet: host function {label} failed: {type(exc).__name__}") from exc


def _param(store: wasmtime.StoreContext, value: Any) -> Any:
    """A borrowed host resource as its ``ResourceHost`` (its rep); the borrow ends here.

    ``ResourceAny.to_host`` takes the borrow out of the store's table, which is
    what ends it ("borrow handles still remain at the end of the call"
    otherwise): a second ``to_host`` or a ``drop`` on it fails with "unknown
    handle index". Only host-defined resources reach these functions.
    """
    if isinstance(value, wc.ResourceAny) and not value.owned:
        return value.to_host(store)
    return value


# The error cases that carry a free-form message, most generic first: Spin's
# ``other(string)``; sqlite's ``io(string)`` and llm's ``runtime-error(string)``
# where the error has no ``other``.
_MESSAGE_CASES = ("other", "io", "runtime-error")


def _refusal(result_ty: wc.ValType | None, message: str) -> Err:
    if isinstance(result_ty, wc.ResultType):
        err = result_ty.err
        if isinstance(err, wc.VariantType):
            cases = {n for n, t in err.cases if isinstance(t, wc.String)}
            for case in _MESSAGE_CASES:
                if case in cases:
                    return Err(wc.Variant(case, message))
    raise wasmtime.WasmtimeError(message)


@ffi.wasmtime_component_func_callback_t  # type: ignore[untyped-decorator]
def _trampoline(idx: Any, context: Any, ty_raw: Any, args: Any, nargs: int, results: Any, nresults: int) -> Any:
    return catch_exceptions(context, lambda store: _call(store, idx or 0, ty_raw, args, nargs, results))


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)  # type: ignore[untyped-decorator]
def _finalize(idx: Any) -> None:
    _funcs.pop(idx or 0, None)


def lower(store: wasmtime.StoreContext, ty: wc.ValType, value: Any, ptr: Any) -> None:
    """Write ``value`` of type ``ty`` into the ``wasmtime_component_val_t`` at ``ptr``."""
    if isinstance(ty, wc.ResultType):
        if not isinstance(value, (Ok, Err)):
            raise TypeError(f"a result needs Ok(...) or Err(...), not {type(value).__name__}")
        ok = isinstance(value, Ok)
        ptr.contents.kind = ffi.WASMTIME_COMPONENT_RESULT
        ptr.contents.of.result.is_ok = ok
        ptr.contents.of.result.val = _boxed(store, ty.ok if ok else ty.err, value.value)
    elif isinstance(ty, wc.OptionType):
        ptr.contents.kind = ffi.WASMTIME_COMPONENT_OPTION
        ptr.contents.of.option = None if value is None else _boxed(store, ty.payload, value)
    elif isinstance(ty, wc.VariantType):
        if not isinstance(value, wc.Variant):
            raise TypeError(f"a variant needs Variant(tag, payload), not {type(value).__name__}")
        case = next((t for n, t in ty.cases if n == value.tag), ...)
        if case is ...:
            raise ValueError(f"no case {value.tag!r} in this variant")
        ptr.contents.kind = ffi.WASMTIME_COMPONENT_VARIANT
        ptr.contents.of.variant.discriminant = ffi.str_to_capi(value.tag)
        ptr.contents.of.variant.val = _boxed(store, case, value.payload)
    elif _is_bytes(ty):
        ptr.contents.kind = ffi.WASMTIME_COMPONENT_LIST
        ptr.contents.of.list = _bytes_to_vallist(value)
    else:
        ty.convert_to_c(store, value, ptr)


# ``list<u8>`` crosses the C API as one 32-byte ``wasmtime_component_val_t`` per
# byte; wasmtime-py converts it one element at a time in Python (about 1.5 s
# for a 1 MiB value). These read and write the elements' memory in one go.
_VAL_SIZE = ctypes.sizeof(ffi.wasmtime_component_val_t)
_PAYLOAD = ffi.wasmtime_component_val_t.of.offset
_U8 = ffi.WASMTIME_COMPONENT_U8.value


def _is_bytes(ty: wc.ValType) -> bool:
    return isinstance(ty, wc.ListType) and isinstance(ty.element, wc.U8)


def _lift(ty: wc.ValType, val: Any) -> Any:
    if not _is_bytes(ty):
        return ty.convert_from_c(val)
    # Read only: the arguments stay the caller's (wasmtime's C API drops its
    # vector of them after the callback returns).
    items = val.of.list
    size = int(items.size)
    raw = ctypes.string_at(items.data, size * _VAL_SIZE) if size else b""
    return raw[_PAYLOAD::_VAL_SIZE]


def _bytes_to_vallist(value: bytes) -> Any:
    if not isinstance(value, (bytes, bytearray)):
        raise TypeError(f"list<u8> needs bytes, not {type(value).__name__}")
    size = len(value)
    items = ffi.wasmtime_component_vallist_t()
    ffi.wasmtime_component_vallist_new_uninit(items, size)
    if size:
        buf = bytearray(size * _VAL_SIZE)
        buf[0::_VAL_SIZE] = bytes([_U8]) * size
        buf[_PAYLOAD::_VAL_SIZE] = value
        ctypes.memmove(items.data, bytes(buf), len(buf))
    return items


def _boxed(store: wasmtime.StoreContext, ty: wc.ValType | None, value: Any) -> Any:
    if ty is None:
        return None
    raw = ffi.wasmtime_component_val_t()
    lower(store, ty, value, ctypes.pointer(raw))
    return ffi.wasmtime_component_val_new(ctypes.byref(raw))
