"""Host functions on a component linker through the C API, without wasmtime-py's generic lowering.

wasmtime-py's ``LinkerInstance.add_func`` rebuilds the function's type in
Python on every call and converts ``list<u8>`` one element at a time (a
1 MiB body write is a million Python calls). Here a function is defined with
``wasmtime_component_linker_instance_add_func`` and a ctypes callback of our
own: arguments are decoded by their value *kind* (no type lookup at all), and
the result is written by an encoder built once when the function is defined
(``own(...)``, ``result(...)``, ``variant(...)``, ...), so a call costs one
Python function plus the ctypes reads and writes it really needs.

Ownership: the arguments stay the caller's (wasmtime drops them after the
callback returns; deleting them here frees them twice), the result is
handed over to wasmtime; a borrowed resource must be released (here by its conversion to the host rep,
``wasmtime_component_resource_any_to_host``) before the call returns, or wasmtime fails the call ("borrow handles still
remain at the end of the call"). A resource argument arrives as its host
``rep`` (an ``int``).

An exception raised by a host function becomes a trap of the guest with its
message; ``Trap`` is the one raised on purpose (misuse of a handle, a limit).
"""

from __future__ import annotations

import ctypes
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import wasmtime
import wasmtime.component as wc
from wasmtime import _bindings
from wasmtime import _ffi as ffi

__all__ = [
    "Encoder",
    "Trap",
    "add_func",
    "add_resource",
    "boolean",
    "bytes_list",
    "enum",
    "list_of",
    "option",
    "own",
    "record",
    "result",
    "string",
    "tuple_of",
    "u8",
    "u16",
    "u32",
    "u64",
    "variant",
]

Val = ffi.wasmtime_component_val_t
Context = Any  # ctypes pointer to wasmtime_context_t
Encoder = Callable[[Context, Any, Any], None]  # (context, python value, wasmtime_component_val_t to fill)

_SIZE = ctypes.sizeof(Val)
_OF = Val.of.offset
_K_BOOL = ffi.WASMTIME_COMPONENT_BOOL.value
_K_U8 = ffi.WASMTIME_COMPONENT_U8.value
_K_U16 = ffi.WASMTIME_COMPONENT_U16.value
_K_U32 = ffi.WASMTIME_COMPONENT_U32.value
_K_U64 = ffi.WASMTIME_COMPONENT_U64.value
_K_S32 = ffi.WASMTIME_COMPONENT_S32.value
_K_S64 = ffi.WASMTIME_COMPONENT_S64.value
_K_STRING = ffi.WASMTIME_COMPONENT_STRING.value
_K_LIST = ffi.WASMTIME_COMPONENT_LIST.value
_K_RECORD = ffi.WASMTIME_COMPONENT_RECORD.value
_K_TUPLE = ffi.WASMTIME_COMPONENT_TUPLE.value
_K_VARIANT = ffi.WASMTIME_COMPONENT_VARIANT.value
_K_ENUM = ffi.WASMTIME_COMPONENT_ENUM.value
_K_OPTION = ffi.WASMTIME_COMPONENT_OPTION.value
_K_RESULT = ffi.WASMTIME_COMPONENT_RESULT.value
_K_FLAGS = ffi.WASMTIME_COMPONENT_FLAGS.value
_K_RESOURCE = ffi.WASMTIME_COMPONENT_RESOURCE.value

# The ctypes functions themselves: ``ffi.NAME`` wraps each in a Python function, a call more per use.
_any_to_host = _bindings._wasmtime_component_resource_any_to_host
_host_new = _bindings._wasmtime_component_resource_host_new
_host_rep = _bindings._wasmtime_component_resource_host_rep
_host_delete = _bindings._wasmtime_component_resource_host_delete
_host_to_any = _bindings._wasmtime_component_resource_host_to_any
_val_new = _bindings._wasmtime_component_val_new
_list_new_uninit = _bindings._wasmtime_component_vallist_new_uninit
_tuple_new_uninit = _bindings._wasmtime_component_valtuple_new_uninit
_record_new_uninit = _bindings._wasmtime_component_valrecord_new_uninit
_HostPtr = ctypes.POINTER(ffi.wasmtime_component_resource_host_t)
_AnyPtr = ctypes.POINTER(ffi.wasmtime_component_resource_any_t)
_error_new = ffi.wasmtime_error_new


class Trap(Exception):
    """Raised by a host function to trap the guest with this message."""


# -- decoding arguments (by kind) --------------------------------------------------------------------------------


def _decode(context: Context, val: Any) -> Any:
    kind = val.kind
    of = val.of
    if kind == _K_RESOURCE:
        any_ptr = of.resource
        host = _HostPtr()
        error = _any_to_host(context, any_ptr, ctypes.byref(host))
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
        # For a borrow, the conversion also ends it (wasmtime lifts the borrow out of the host table), so
        # no resource_any_drop follows: it would fail with "unknown handle index".
        rep = _host_rep(host)
        _host_delete(host)
        return rep
    if kind == _K_STRING:
        return ctypes.string_at(of.string.data, of.string.size).decode("utf-8")
    if kind == _K_LIST:
        size = of.list.size
        if size == 0:
            return []
        data = of.list.data
        if data[0].kind == _K_U8:  # list<u8>: one copy of the array of values, then a strided slice of it
            # (bytes slicing with a step is a C loop; a stepped slice of a memoryview is ~4x slower).
            return ctypes.string_at(data, size * _SIZE)[_OF::_SIZE]
        return [_decode(context, data[i]) for i in range(size)]
    if kind == _K_U64:
        return of.u64
    if kind == _K_U32:
        return of.u32
    if kind == _K_U16:
        return of.u16
    if kind == _K_U8:
        return of.u8
    if kind == _K_BOOL:
        return of.boolean
    if kind == _K_S32:
        return of.s32
    if kind == _K_S64:
        return of.s64
    if kind == _K_OPTION:
        return _decode(context, of.option.contents) if of.option else None
    if kind == _K_TUPLE:
        return tuple(_decode(context, of.tuple.data[i]) for i in range(of.tuple.size))
    if kind == _K_RECORD:
        entries = of.record.data
        return {ffi.to_str(entries[i].name): _decode(context, entries[i].val) for i in range(of.record.size)}
    if kind == _K_VARIANT:
        payload = of.variant.val
        return (ffi.to_str(of.variant.discriminant), _decode(context, payload.contents) if payload else None)
    if kind == _K_ENUM:
        return ffi.to_str(of.enumeration)
    if kind == _K_RESULT:
        payload = of.result.val
        return (bool(of.result.is_ok), _decode(context, payload.contents) if payload else None)
    if kind == _K_FLAGS:
        return {ffi.to_str(of.flags.data[i]) for i in range(of.flags.size)}
    raise Trap(f"wasmlet: unsupported argument kind {kind}")


# -- encoders for results (built once per function) -----------------------------------------------------------


def _scalar(kind: int, field: str) -> Encoder:
    def encode(context: Context, value: Any, out: Any) -> None:
        out.kind = kind
        setattr(out.of, field, value)

    return encode


u8 = _scalar(_K_U8, "u8")
u16 = _scalar(_K_U16, "u16")
u32 = _scalar(_K_U32, "u32")
u64 = _scalar(_K_U64, "u64")
boolean = _scalar(_K_BOOL, "boolean")


def string(context: Context, value: str, out: Any) -> None:
    out.kind = _K_STRING
    out.of.string = ffi.bytes_to_capi(value.encode("utf-8"))


def enum(context: Context, value: str, out: Any) -> None:
    out.kind = _K_ENUM
    out.of.enumeration = ffi.bytes_to_capi(value.encode("utf-8"))


_U8_KIND_BYTE = bytes([_K_U8])


def bytes_list(context: Context, value: bytes, out: Any) -> None:
    """``list<u8>`` from ``bytes``.

    The C API has no byte-list form: a ``list<u8>`` is an array of 32-byte
    values, one per byte, which wasmtime then lowers one by one. That (about
    0.1 s per MiB each way, mostly in wasmtime) is what bounds a proxy
    guest's body throughput here; see docs/guest-abis.md.
    """
    size = len(value)
    raw = ffi.wasmtime_component_vallist_t()
    _list_new_uninit(ctypes.byref(raw), size)
    if size:
        # The values built in a bytearray (kind, then the byte, by two strided writes) and copied over in
        # one memmove: a stepped write into a memoryview of the C array costs ~6x the three steps together.
        buf = bytearray(size * _SIZE)
        buf[0::_SIZE] = _U8_KIND_BYTE * size
        buf[_OF::_SIZE] = value
        ctypes.memmove(raw.data, (ctypes.c_char * len(buf)).from_buffer(buf), len(buf))
    out.kind = _K_LIST
    out.of.list = raw


def list_of(element: Encoder) -> Encoder:
    def encode(context: Context, value: Sequence[Any], out: Any) -> None:
        raw = ffi.wasmtime_component_vallist_t()
        _list_new_uninit(ctypes.byref(raw), len(value))
        data = raw.data
        for i, item in enumerate(value):
            element(context, item, data[i])
        out.kind = _K_LIST
        out.of.list = raw

    return encode


def tuple_of(*elements: Encoder) -> Encoder:
    def encode(context: Context, value: Sequence[Any], out: Any) -> None:
        raw = ffi.wasmtime_component_valtuple_t()
        _tuple_new_uninit(ctypes.byref(raw), len(elements))
        data = raw.data
        for i, element in enumerate(elements):
            element(context, value[i], data[i])
        out.kind = _K_TUPLE
        out.of.tuple = raw

    return encode


def record(*fields: tuple[str, Encoder]) -> Encoder:
    """A record from a ``tuple`` of its field values, in order."""
    names = [name.encode() for name, _ in fields]

    def encode(context: Context, value: Sequence[Any], out: Any) -> None:
        raw = ffi.wasmtime_component_valrecord_t()
        _record_new_uninit(ctypes.byref(raw), len(fields))
        data = raw.data
        for i, (_, element) in enumerate(fields):
            data[i].name = ffi.bytes_to_capi(names[i])
            element(context, value[i], data[i].val)
        out.kind = _K_RECORD
        out.of.record = raw

    return encode


def _boxed(context: Context, encoder: Encoder, value: Any) -> Any:
    tmp = Val()
    encoder(context, value, tmp)
    return _val_new(ctypes.byref(tmp))  # moves tmp's contents into a new box


def option(payload: Encoder) -> Encoder:
    """``option<T>`` from ``None`` or the value."""

    def encode(context: Context, value: Any, out: Any) -> None:
        out.kind = _K_OPTION
        out.of.option = None if value is None else _boxed(context, payload, value)

    return encode


def result(ok: Encoder | None, err: Encoder | None) -> Encoder:
    """``result<T, E>`` from ``(True, ok value)`` or ``(False, err value)``."""

    def encode(context: Context, value: tuple[bool, Any], out: Any) -> None:
        is_ok, payload = value
        encoder = ok if is_ok else err
        out.kind = _K_RESULT
        out.of.result.is_ok = is_ok
        out.of.result.val = None if encoder is None else _boxed(context, encoder, payload)

    return encode


def variant(cases: dict[str, Encoder | None]) -> Encoder:
    """A variant from ``(case name, payload)``; a case without payload ignores it."""
    names = {name: name.encode() for name in cases}

    def encode(context: Context, value: tuple[str, Any], out: Any) -> None:
        name, payload = value
        encoder = cases[name]
        out.kind = _K_VARIANT
        out.of.variant.discriminant = ffi.bytes_to_capi(names[name])
        out.of.variant.val = None if encoder is None else _boxed(context, encoder, payload)

    return encode


def own(type_id: int) -> Encoder:
    """``own<R>`` for the host resource type ``ResourceType.host(type_id)`` from its rep."""

    def encode(context: Context, rep: int, out: Any) -> None:
        host = _host_new(True, rep, type_id)
        any_ptr = _AnyPtr()
        error = _host_to_any(context, host, ctypes.byref(any_ptr))
        _host_delete(host)
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
        out.kind = _K_RESOURCE
        out.of.resource = any_ptr

    return encode


def mint(context: Context, rep: int, type_id: int) -> Any:
    """A new ``own`` handle as a ``wasmtime_component_val_t`` (for the export's arguments)."""
    val = Val()
    own(type_id)(context, rep, val)
    return val


# -- defining functions and resources ------------------------------------------------------------------------------

HostFunc = Callable[..., Any]
_functions: dict[int, tuple[HostFunc, Encoder | None]] = {}
_destructors: dict[int, Callable[[int], None]] = {}
_ids = itertools.count(1)
#: While not None, ``add_func``/``add_resource`` only append the names they would define (``_linker.provided``).
recording: list[str] | None = None


def _fail(exc: BaseException) -> int:
    message = str(exc) if isinstance(exc, Trap) else f"wasmlet: host function failed: {type(exc).__name__}: {exc}"
    error = _error_new(message.encode("utf-8", "replace"))
    return ctypes.cast(error, ctypes.c_void_p).value or 0


@ffi.wasmtime_component_func_callback_t
def _call(data, context, ty, args, nargs, results, nresults):  # type: ignore[no-untyped-def]
    try:
        func, encode = _functions[data or 0]
        if nargs == 0:
            value = func()
        elif nargs == 1:
            value = func(_decode(context, args[0]))
        else:
            value = func(*[_decode(context, args[i]) for i in range(nargs)])
        if nresults:
            if encode is None:
                raise Trap("wasmlet: a host function without an encoder was asked for a result")
            encode(context, value, results[0])
        return 0
    except BaseException as exc:
        return _fail(exc)


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _forget_func(data):  # type: ignore[no-untyped-def]
    _functions.pop(data or 0, None)


@ffi.wasmtime_component_resource_destructor_t
def _destroy(data, context, rep):  # type: ignore[no-untyped-def]
    try:
        _destructors[data or 0](rep)
        return 0
    except BaseException as exc:
        return _fail(exc)


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _forget_destructor(data):  # type: ignore[no-untyped-def]
    _destructors.pop(data or 0, None)


def add_func(instance: wc.LinkerInstance, name: str, func: HostFunc, encode: Encoder | None = None) -> None:
    """Define ``name`` on ``instance``: ``func`` gets the decoded arguments, ``encode`` writes its result."""
    if recording is not None:
        recording.append(name)
        return
    key = next(_ids)
    _functions[key] = (func, encode)
    raw = name.encode()
    error = ffi.wasmtime_component_linker_instance_add_func(instance.ptr(), ctypes.create_string_buffer(raw),
                                                            len(raw), _call, key, _forget_func)
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)


def add_resource(instance: wc.LinkerInstance, name: str, type_id: int, destroy: Callable[[int], None]) -> None:
    """Define the resource ``name`` as ``ResourceType.host(type_id)``; ``destroy(rep)`` runs when the guest drops it."""
    if recording is not None:
        recording.append(name)
        return
    key = next(_ids)
    _destructors[key] = destroy
    raw = name.encode()
    ty = wc.ResourceType.host(type_id)
    error = ffi.wasmtime_component_linker_instance_add_resource(instance.ptr(), ctypes.create_string_buffer(raw),
                                                                len(raw), ty.ptr(), _destroy, key,
                                                                _forget_destructor)
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)
