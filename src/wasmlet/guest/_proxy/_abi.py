"""Host functions on a component linker through the C API, without wasmtime-py's generic lowering.

wasmtime-py's ``LinkerInstance.add_func`` rebuilds the function's type in
Python on every call and converts ``list<u8>`` one element at a time (a
1 MiB body write is a million Python calls). Here a function is defined with
``wasmtime_component_linker_instance_add_func`` and a ctypes callback of our
own: arguments are decoded by their value *kind* (no type lookup at all), and
the result is written by an encoder built once when the function is defined
(``own(...)``, ``result(...)``, ``variant(...)``, ...), so a call costs one
Python function plus the ctypes reads and writes it really needs.

Where the host-call helper is built (``guest/_hostcall.c``, ``use_host_calls``),
wasmtime enters the same Python functions through its C callback instead: it
decodes the arguments into the values ``decode`` gives and writes the results
whose shape the encoder carries (``plan_of``: ``own``, ``result`` of ``own``,
unit or ``list<u8>``, ``option<string>``, ``list<u8>``), calling the Python
encoder for the rest. ``_call`` and ``_destroy`` below are the ctypes way, and
the reference the helper is tested against (``tests/guest/proxy/test_hostcall.py``).

Everything here works on raw addresses (``int``), not on ctypes structures
and pointers (docs/benchmarks.md, section 21), because in a request of ten
host calls the ctypes machinery, not the work, was most of the cost:

- the callback's arguments are ``c_void_p`` (a pointer-typed argument is a
  new ctypes object each time);
- values are read and written in place through ``_MEM``, a memoryview of
  the process's memory, with ``struct`` (``string_at``/``memmove`` are a
  foreign call each);
- the C functions are our own prototypes of wasmtime's symbols with
  ``c_void_p`` arguments (``prototype``; wasmtime-py's ``_bindings`` keep
  theirs), and the short ones come from a ``PyDLL`` (``SHORT``): they keep
  the GIL instead of releasing and taking it again around a few dozen
  instructions. What runs the guest (``wasmtime_component_func_call``,
  instantiation) releases it, so other threads and the epoch ticker run.

A ``wasmtime_component_val_t`` is 32 bytes: its kind (``u8``) at offset 0,
its payload (a union) at offset 8. In the payload: a scalar at 0; a string,
an enum's case name or a list as (size, data pointer); a resource as a
pointer; an option as a pointer to a boxed value (NULL for none); a result
as (is_ok as a byte, pointer to a boxed value); a variant as (case name
size, data, pointer to a boxed value); a record as (size, pointer to
48-byte entries: the name, then the value at 16).

Ownership: the arguments stay the caller's (wasmtime drops them after the
callback returns; deleting them here frees them twice), the result is
handed over to wasmtime; a borrowed resource must be released (here by its conversion to the host rep,
``wasmtime_component_resource_any_to_host``) before the call returns, or wasmtime fails the call ("borrow handles still
remain at the end of the call"). A resource argument arrives as its host
``rep`` (an ``int``). An encoder writes a value's kind last (or with its
payload, in one write): if it fails half-way, the value keeps the kind
wasmtime gave it and what was allocated leaks, rather than wasmtime dropping
a half-built value.

An exception raised by a host function becomes a trap of the guest with its
message; ``Trap`` is the one raised on purpose (misuse of a handle, a limit).
"""

from __future__ import annotations

import ctypes
import itertools
import struct
import sys
from collections.abc import Callable, Sequence
from ctypes import c_bool, c_char_p, c_size_t, c_uint32, c_void_p
from typing import Any

import wasmtime
import wasmtime.component as wc
from wasmtime import _ffi as ffi

from .. import _native as native

__all__ = [
    "CALLBACK",
    "FINALIZER",
    "RESOURCE",
    "SHORT",
    "VAL_SIZE",
    "Encoder",
    "Trap",
    "add_func",
    "add_raw_func",
    "add_resource",
    "boolean",
    "bytes_list",
    "decode",
    "enum",
    "fail",
    "kind",
    "list_of",
    "option",
    "own",
    "plan_of",
    "prototype",
    "record",
    "result",
    "string",
    "tuple_of",
    "u8",
    "u16",
    "u32",
    "u64",
    "use_host_calls",
    "use_native",
    "variant",
    "wasmtime_error",
]

Val = ffi.wasmtime_component_val_t
Context = Any  # the wasmtime_context_t: its address (an int), or a ctypes pointer to it
Encoder = Callable[[Context, Any, int], None]  # (context, python value, address of the value to fill)

_SIZE = ctypes.sizeof(Val)
_OF = Val.of.offset
_ENTRY = ctypes.sizeof(ffi.wasmtime_component_valrecord_entry)
_NAME = ctypes.sizeof(ffi.wasm_name_t)
assert (_SIZE, _OF, _ENTRY, _NAME) == (32, 8, 48, 16), "wasmtime_component_val_t's layout changed"
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
VAL_SIZE = _SIZE
RESOURCE = _K_RESOURCE


def prototype(name: str, restype: Any, *argtypes: Any, library: Any = ffi.dll) -> Any:
    """wasmtime's C function ``name`` with plain argument types: ``dll[name]`` is a new object, wasmtime-py's stay."""
    func = library[name]
    func.restype = restype
    func.argtypes = argtypes
    return func


# The short C functions of a call (no callback into Python, no wait) keep the GIL: a ``PyDLL`` function
# skips releasing and taking it again, which costs more than the function itself.
SHORT = ctypes.PyDLL(ffi.dll._name, handle=ffi.dll._handle)
_any_to_host = prototype("wasmtime_component_resource_any_to_host", c_void_p, c_void_p, c_void_p, c_void_p,
                         library=SHORT)
_host_new = prototype("wasmtime_component_resource_host_new", c_void_p, c_bool, c_uint32, c_uint32, library=SHORT)
_host_rep = prototype("wasmtime_component_resource_host_rep", c_uint32, c_void_p, library=SHORT)
_host_delete = prototype("wasmtime_component_resource_host_delete", None, c_void_p, library=SHORT)
_host_to_any = prototype("wasmtime_component_resource_host_to_any", c_void_p, c_void_p, c_void_p, c_void_p,
                         library=SHORT)
_val_new = prototype("wasmtime_component_val_new", c_void_p, c_void_p, library=SHORT)
_list_new_uninit = prototype("wasmtime_component_vallist_new_uninit", None, c_void_p, c_size_t, library=SHORT)
_tuple_new_uninit = prototype("wasmtime_component_valtuple_new_uninit", None, c_void_p, c_size_t, library=SHORT)
_record_new_uninit = prototype("wasmtime_component_valrecord_new_uninit", None, c_void_p, c_size_t,
                               library=SHORT)
_byte_vec_new = prototype("wasm_byte_vec_new", None, c_void_p, c_size_t, c_char_p, library=SHORT)
_error_new = prototype("wasmtime_error_new", c_void_p, c_char_p, library=SHORT)
_add_func = prototype("wasmtime_component_linker_instance_add_func", c_void_p,
                      c_void_p, c_char_p, c_size_t, c_void_p, c_void_p, c_void_p)
_add_resource = prototype("wasmtime_component_linker_instance_add_resource", c_void_p,
                          c_void_p, c_char_p, c_size_t, c_void_p, c_void_p, c_void_p, c_void_p)

#: The process's memory as bytes, to read the values wasmtime hands over and write the results in place:
#: ``_MEM[address]`` is the byte there, ``struct`` reads and writes through it (``unpack_from``/``pack_into``)
#: and a slice is a view. It is indexed only at the addresses wasmtime gives (the arguments, the results and
#: what they point to), as ``ctypes.string_at`` and ``ctypes.memmove`` would be, without a foreign call each.
_MEM = memoryview((ctypes.c_char * sys.maxsize).from_address(0)).cast("B")

#: The callback of a host function: (data, context, type, args, nargs, results, nresults) -> error or 0.
CALLBACK = ctypes.CFUNCTYPE(c_size_t, c_void_p, c_void_p, c_void_p, c_void_p, c_size_t, c_void_p, c_size_t)
_DESTRUCTOR = ctypes.CFUNCTYPE(c_size_t, c_void_p, c_void_p, c_uint32)  # (data, context, rep) -> error or 0
FINALIZER = ctypes.CFUNCTYPE(None, c_void_p)  # (data): the function's definition is gone

_PTR = struct.Struct("=Q")  # a pointer (64-bit hosts only: wasmtime-py ships no 32-bit build)
_VEC = struct.Struct("=QQ")  # (size, data): a string, an enum's case name, a list, a record, a tuple, flags
_RESULT = struct.Struct("=?7xQ")  # (is_ok, boxed value)
_VARIANT = struct.Struct("=QQQ")  # (case name size, its data, boxed value)


class Trap(Exception):
    """Raised by a host function to trap the guest with this message."""


def wasmtime_error(error: int) -> wasmtime.WasmtimeError:
    """The ``wasmtime_error_t`` at ``error`` (an address wasmtime returned) as an exception; it is freed."""
    return wasmtime.WasmtimeError._from_ptr(ctypes.cast(error, ctypes.POINTER(ffi.wasmtime_error_t)))


def _raise(error: int) -> None:
    raise wasmtime_error(error)


# -- decoding arguments (by kind) --------------------------------------------------------------------------------


def _to_rep(context: Context, any_ptr: int) -> int:
    host = c_void_p()
    error = _any_to_host(context, any_ptr, ctypes.byref(host))
    if error:
        _raise(error)
    # For a borrow, the conversion also ends it (wasmtime lifts the borrow out of the host table), so
    # no resource_any_drop follows: it would fail with "unknown handle index".
    rep: int = _host_rep(host)
    _host_delete(host)
    return rep


def _text(at: int) -> str:
    """The string (or name) whose (size, data) is at ``at``."""
    size, data = _VEC.unpack_from(_MEM, at)
    return str(_MEM[data:data + size], "utf-8")


def _boxed_value(context: Context, address: int) -> Any:
    return _decode(context, address) if address else None


def _decode(context: Context, at: int) -> Any:
    """The value at address ``at`` as Python."""
    kind = _MEM[at]
    at += _OF
    if kind == _K_RESOURCE:
        return _to_rep(context, _PTR.unpack_from(_MEM, at)[0])
    if kind == _K_STRING:
        return _text(at)
    if kind == _K_LIST:
        size, data = _VEC.unpack_from(_MEM, at)
        if size == 0:
            return []
        if _MEM[data] == _K_U8:  # list<u8>: one copy of the array of values, then a strided slice of it
            # (bytes slicing with a step is a C loop; a stepped slice of a memoryview is ~4x slower).
            return _MEM[data:data + size * _SIZE].tobytes()[_OF::_SIZE]
        return [_decode(context, data + i * _SIZE) for i in range(size)]
    if kind in _SCALARS:
        return _SCALARS[kind].unpack_from(_MEM, at)[0]
    if kind == _K_OPTION:
        return _boxed_value(context, _PTR.unpack_from(_MEM, at)[0])
    if kind == _K_RESULT:
        is_ok, payload = _RESULT.unpack_from(_MEM, at)
        return (is_ok, _boxed_value(context, payload))
    if kind == _K_VARIANT:
        return (_text(at), _boxed_value(context, _VARIANT.unpack_from(_MEM, at)[2]))
    if kind == _K_ENUM:
        return _text(at)
    if kind == _K_TUPLE:
        size, data = _VEC.unpack_from(_MEM, at)
        return tuple(_decode(context, data + i * _SIZE) for i in range(size))
    if kind == _K_RECORD:
        size, data = _VEC.unpack_from(_MEM, at)
        return {_text(data + i * _ENTRY): _decode(context, data + i * _ENTRY + _NAME) for i in range(size)}
    if kind == _K_FLAGS:
        size, data = _VEC.unpack_from(_MEM, at)
        return {_text(data + i * _NAME) for i in range(size)}
    raise Trap(f"wasmlet: unsupported argument kind {kind}")


def kind(address: int) -> int:
    """The kind of the value at ``address``."""
    return _MEM[address]


def decode(context: Context, address: int) -> Any:
    """The value at ``address`` as Python (a resource: its host rep, the borrow ended)."""
    return _decode(context, address)


# -- encoders for results (built once per function) -----------------------------------------------------------

def _plan(encoder: Encoder, plan: int, type_id: int = 0) -> None:
    """Mark ``encoder`` as one the C callback writes itself (``_hostcall.c``'s plans) for the values it can."""
    setattr(encoder, "_native_plan", (plan, type_id))  # noqa: B010 (a function's attribute; mypy knows no such field)


def plan_of(encoder: Encoder | None) -> tuple[int, int] | None:
    """How ``_hostcall.c`` writes ``encoder``'s values: (plan, resource type), or None (Python does)."""
    found: tuple[int, int] | None = getattr(encoder, "_native_plan", None)
    return found


# Each scalar read and written at its own width, so the layout holds either endianness.
_SCALARS = {kind: struct.Struct(f"={code}") for kind, code in (
    (_K_U8, "B"), (_K_U16, "H"), (_K_U32, "I"), (_K_U64, "Q"), (_K_S32, "i"), (_K_S64, "q"), (_K_BOOL, "?"))}


def _scalar(kind: int, code: str) -> Encoder:
    pack_into = struct.Struct(f"=B7x{code}").pack_into  # the kind and the payload in one write

    def encode(context: Context, value: Any, out: int) -> None:
        pack_into(_MEM, out, kind, value)

    return encode


u8 = _scalar(_K_U8, "B")
u16 = _scalar(_K_U16, "H")
u32 = _scalar(_K_U32, "I")
u64 = _scalar(_K_U64, "Q")
boolean = _scalar(_K_BOOL, "?")


def string(context: Context, value: str, out: int) -> None:
    data = value.encode("utf-8")
    _byte_vec_new(out + _OF, len(data), data)
    _MEM[out] = _K_STRING


def enum(context: Context, value: str, out: int) -> None:
    data = value.encode("utf-8")
    _byte_vec_new(out + _OF, len(data), data)
    _MEM[out] = _K_ENUM


_U8_KIND_BYTE = bytes([_K_U8])


def _new_list(new_uninit: Any, out: int, size: int) -> int:
    """A new array of ``size`` values as the payload at ``out``; its address."""
    new_uninit(out + _OF, size)
    data: int = _PTR.unpack_from(_MEM, out + _OF + 8)[0]
    return data


def bytes_list(context: Context, value: bytes, out: int) -> None:
    """``list<u8>`` from ``bytes``.

    The C API has no byte-list form: a ``list<u8>`` is an array of 32-byte
    values, one per byte, which wasmtime then lowers one by one. That (about
    0.1 s per MiB each way, mostly in wasmtime) is what bounds a proxy
    guest's body throughput here; see docs/guest-abis.md.
    """
    size = len(value)
    data = _new_list(_list_new_uninit, out, size)
    if size:
        # The values built in a bytearray (kind, then the byte, by two strided writes) and copied over in
        # one go: a stepped write into a memoryview of the C array costs ~6x the three steps together.
        buf = bytearray(size * _SIZE)
        buf[0::_SIZE] = _U8_KIND_BYTE * size
        buf[_OF::_SIZE] = value
        _MEM[data:data + len(buf)] = buf
    _MEM[out] = _K_LIST


_plan(bytes_list, native.PLAN_BYTES)


def list_of(element: Encoder) -> Encoder:
    def encode(context: Context, value: Sequence[Any], out: int) -> None:
        data = _new_list(_list_new_uninit, out, len(value))
        for i, item in enumerate(value):
            element(context, item, data + i * _SIZE)
        _MEM[out] = _K_LIST

    return encode


def tuple_of(*elements: Encoder) -> Encoder:
    def encode(context: Context, value: Sequence[Any], out: int) -> None:
        data = _new_list(_tuple_new_uninit, out, len(elements))
        for i, element in enumerate(elements):
            element(context, value[i], data + i * _SIZE)
        _MEM[out] = _K_TUPLE

    return encode


def record(*fields: tuple[str, Encoder]) -> Encoder:
    """A record from a ``tuple`` of its field values, in order."""
    names = [name.encode() for name, _ in fields]

    def encode(context: Context, value: Sequence[Any], out: int) -> None:
        data = _new_list(_record_new_uninit, out, len(fields))
        for i, (_, element) in enumerate(fields):
            entry = data + i * _ENTRY
            _byte_vec_new(entry, len(names[i]), names[i])
            element(context, value[i], entry + _NAME)
        _MEM[out] = _K_RECORD

    return encode


def _boxed(context: Context, encoder: Encoder, value: Any) -> int:
    tmp = Val()
    encoder(context, value, ctypes.addressof(tmp))
    box: int = _val_new(ctypes.byref(tmp))  # moves tmp's contents into a new box
    return box


_PACK_OPTION = struct.Struct("=B7xQ").pack_into
_PACK_RESULT = struct.Struct("=B7x?7xQ").pack_into


def option(payload: Encoder) -> Encoder:
    """``option<T>`` from ``None`` or the value."""

    def encode(context: Context, value: Any, out: int) -> None:
        _PACK_OPTION(_MEM, out, _K_OPTION, 0 if value is None else _boxed(context, payload, value))

    if payload is string:
        _plan(encode, native.PLAN_OPTION_STRING)
    return encode


def result(ok: Encoder | None, err: Encoder | None) -> Encoder:
    """``result<T, E>`` from ``(True, ok value)`` or ``(False, err value)``."""

    def encode(context: Context, value: tuple[bool, Any], out: int) -> None:
        is_ok, payload = value
        encoder = ok if is_ok else err
        box = 0 if encoder is None else _boxed(context, encoder, payload)
        _PACK_RESULT(_MEM, out, _K_RESULT, bool(is_ok), box)

    ok_plan = plan_of(ok) if ok is not None else None
    if ok is None:
        _plan(encode, native.PLAN_RESULT_UNIT)
    elif ok_plan is not None and ok_plan[0] == native.PLAN_OWN:
        _plan(encode, native.PLAN_RESULT_OWN, ok_plan[1])
    elif ok_plan is not None and ok_plan[0] == native.PLAN_BYTES:
        _plan(encode, native.PLAN_RESULT_BYTES)
    return encode


def variant(cases: dict[str, Encoder | None]) -> Encoder:
    """A variant from ``(case name, payload)``; a case without payload ignores it."""
    names = {name: name.encode() for name in cases}

    def encode(context: Context, value: tuple[str, Any], out: int) -> None:
        name, payload = value
        encoder = cases[name]
        box = 0 if encoder is None else _boxed(context, encoder, payload)
        raw = names[name]
        _PTR.pack_into(_MEM, out + _OF + 16, box)
        _byte_vec_new(out + _OF, len(raw), raw)
        _MEM[out] = _K_VARIANT

    return encode


def _own_into(context: Context, rep: int, type_id: int, out: int) -> None:
    """A new owned handle for ``rep`` of host type ``type_id``, as the value at ``out``."""
    host = _host_new(True, rep, type_id)
    error = _host_to_any(context, host, out + _OF)  # the new handle's pointer goes straight to the payload
    _host_delete(host)
    if error:
        _raise(error)
    _MEM[out] = _K_RESOURCE


def own(type_id: int) -> Encoder:
    """``own<R>`` for the host resource type ``ResourceType.host(type_id)`` from its rep."""

    def encode(context: Context, rep: int, out: int) -> None:
        _own_into(context, rep, type_id, out)  # looked up at each call: ``use_native`` may replace it

    _plan(encode, native.PLAN_OWN, type_id)
    return encode


def use_native(fast: Any) -> None:
    """Convert resources through the C helper ``fast`` (a ``guest._native.FastPath``) from now on.

    ``_to_rep`` and ``_own_into`` make the same wasmtime calls in one crossing each instead of
    three (``_fastpath.c``: ``wasmlet_resource_rep``, ``wasmlet_resource_own``). ``None`` (no
    helper: no compiler, or ``WASMLET_NATIVE=0``) changes nothing. Idempotent.
    """
    global _to_rep, _own_into
    if fast is None:
        return
    rep_of, own_new, api = fast.resource_rep, fast.resource_own, fast.resource_api

    def to_rep(context: Context, any_ptr: int) -> int:
        rep: int = rep_of(api, context, any_ptr)
        if rep < 0:  # minus the address of wasmtime's error
            _raise(-rep)
        return rep

    def own_into(context: Context, rep: int, type_id: int, out: int) -> None:
        error = own_new(api, context, rep, type_id, out, _K_RESOURCE)
        if error:
            _raise(error)

    _to_rep, _own_into = to_rep, own_into


_ctypes_to_rep, _ctypes_own_into = _to_rep, _own_into  # the ctypes ways, kept (tests compare the two)


# -- defining functions and resources ------------------------------------------------------------------------------

HostFunc = Callable[..., Any]
_functions: dict[int, tuple[HostFunc, Encoder | None]] = {}
_destructors: dict[int, Callable[[int], None]] = {}
#: What each key defines, for diagnostics (``bench/proxy_inprocess.py`` counts a request's calls by it).
labels: dict[int, str] = {}
_ids = itertools.count(1)
#: While not None, ``add_func``/``add_resource`` only append the names they would define (``_linker.provided``).
recording: list[str] | None = None


def fail(exc: BaseException) -> int:
    """``exc`` as a new ``wasmtime_error_t`` (its address) for a callback to return: the guest traps with it."""
    message = str(exc) if isinstance(exc, Trap) else f"wasmlet: host function failed: {type(exc).__name__}: {exc}"
    error: int = _error_new(message.encode("utf-8", "replace"))
    return error


@CALLBACK
def _call(data, context, ty, args, nargs, results, nresults):  # type: ignore[no-untyped-def]
    try:
        func, encode = _functions[data or 0]
        if nargs == 0:
            value = func()
        else:
            # The first argument is most often a method's own resource: read here, a Python call less.
            first = (_to_rep(context, _PTR.unpack_from(_MEM, args + _OF)[0]) if _MEM[args] == _K_RESOURCE
                     else _decode(context, args))
            if nargs == 1:
                value = func(first)
            elif nargs == 2:
                value = func(first, _decode(context, args + _SIZE))
            else:
                value = func(first, *[_decode(context, args + i * _SIZE) for i in range(1, nargs)])
        if nresults:
            if encode is None:
                raise Trap("wasmlet: a host function without an encoder was asked for a result")
            encode(context, value, results)
        return 0
    except BaseException as exc:
        return fail(exc)


@FINALIZER
def _forget_func(data):  # type: ignore[no-untyped-def]
    _functions.pop(data or 0, None)
    labels.pop(data or 0, None)


@_DESTRUCTOR
def _destroy(data, context, rep):  # type: ignore[no-untyped-def]
    try:
        _destructors[data or 0](rep)
        return 0
    except BaseException as exc:
        return fail(exc)


@FINALIZER
def _forget_destructor(data):  # type: ignore[no-untyped-def]
    _destructors.pop(data or 0, None)
    labels.pop(data or 0, None)


def add_raw_func(instance: wc.LinkerInstance, name: str, callback: Any, key: int, forget: Any) -> None:
    """Define ``name`` on ``instance`` as ``callback`` (a ``CALLBACK``) with ``key`` as its data."""
    raw = name.encode()
    error = _add_func(instance.ptr(), raw, len(raw), callback, key, forget)
    if error:
        _raise(error)


def use_host_calls(helper: native.HostCalls | None) -> None:
    """Define the functions and resources of the linkers built from now on with ``helper``'s C callbacks.

    ``helper`` is ``guest._native.host_calls()``: ``_hostcall.c`` decodes the arguments
    and writes the common results itself, then calls the same Python host function
    (see its header). ``None`` (no helper built, or ``WASMLET_NATIVE=0``): ctypes'
    callbacks, ``_call`` and ``_destroy``. A linker keeps the way it was built with.
    """
    global _host_calls
    if helper is not None:
        helper.init(fail, wasmtime_error, Trap)
    _host_calls = helper


_host_calls: native.HostCalls | None = None
#: What a linker defined through ``_hostcall.c`` points to (the address is the callback's data), kept alive
#: until wasmtime's finalizer says the definition is gone.
_native_defined: dict[int, native.HostFunc | native.HostDestructor] = {}


@FINALIZER
def _forget_native(data):  # type: ignore[no-untyped-def]
    _native_defined.pop(data or 0, None)
    labels.pop(data or 0, None)


def add_func(instance: wc.LinkerInstance, name: str, func: HostFunc, encode: Encoder | None = None) -> None:
    """Define ``name`` on ``instance``: ``func`` gets the decoded arguments, ``encode`` writes its result."""
    if recording is not None:
        recording.append(name)
        return
    helper = _host_calls
    if helper is not None:
        plan, type_id = plan_of(encode) or (native.PLAN_PYTHON, 0)
        defined = native.HostFunc(func, encode, plan, type_id)
        key = ctypes.addressof(defined)
        _native_defined[key] = defined
        labels[key] = name
        add_raw_func(instance, name, helper.call_at, key, _forget_native)
        return
    key = next(_ids)
    _functions[key] = (func, encode)
    labels[key] = name
    add_raw_func(instance, name, _call, key, _forget_func)


def add_resource(instance: wc.LinkerInstance, name: str, type_id: int, destroy: Callable[[int], None]) -> None:
    """Define the resource ``name`` as ``ResourceType.host(type_id)``; ``destroy(rep)`` runs when the guest drops it."""
    if recording is not None:
        recording.append(name)
        return
    raw = name.encode()
    ty = wc.ResourceType.host(type_id)
    helper = _host_calls
    if helper is not None:
        defined = native.HostDestructor(destroy)
        key = ctypes.addressof(defined)
        _native_defined[key] = defined
        labels[key] = f"[resource-drop]{name}"
        error = _add_resource(instance.ptr(), raw, len(raw), ty.ptr(), helper.drop_at, key, _forget_native)
    else:
        key = next(_ids)
        _destructors[key] = destroy
        labels[key] = f"[resource-drop]{name}"
        error = _add_resource(instance.ptr(), raw, len(raw), ty.ptr(), _destroy, key, _forget_destructor)
    if error:
        _raise(error)
