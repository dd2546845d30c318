"""Interfaces a request must never use, linked as denials that fail cleanly.

``wasi:filesystem`` (without a ``files`` grant) and ``wasi:sockets``:
componentize-py and other toolchains import them whether or not the code
uses them, so they must link; every call answers as a host without them
would, in the WIT's own terms, and never touches the host's file system or
network:

- a ``result`` is its ``err`` case: ``error-code.access`` (filesystem) or
  ``access-denied`` (sockets), whichever the enum has;
- ``preopens.get-directories`` is an empty list, an ``option`` is ``none``,
  a ``bool`` is false, a number is 0;
- a resource the function must return (``instance-network``) is a handle on
  which every method fails the same way; a ``pollable`` is ready at once.

The functions are defined from the component's own import types at deploy
(whatever version and functions it names); the value is built from the
function's type when first called, then cached.
"""

from __future__ import annotations

import ctypes
import itertools
from typing import Any

import wasmtime.component as wc
from wasmtime import _ffi as ffi
from wasmtime.component import _types as wt

from . import _abi as abi
from . import _ids as ids
from ._io import READY
from ._state import current, drop

__all__ = ["DENIED_PREFIXES", "define_denied", "is_denied"]

DENIED_PREFIXES = ("wasi:filesystem/", "wasi:sockets/")
_PREFERRED = ("access-denied", "access", "not-permitted")
_RESOURCES = {
    "descriptor": 40, "directory-entry-stream": 41, "network": 42, "tcp-socket": 43, "udp-socket": 44,
    "incoming-datagram-stream": 45, "outgoing-datagram-stream": 46, "resolve-address-stream": 47,
}
_OWNERS = {
    "wasi:filesystem/types": ("descriptor", "directory-entry-stream"),
    "wasi:sockets/network": ("network",),
    "wasi:sockets/tcp": ("tcp-socket",),
    "wasi:sockets/udp": ("udp-socket", "incoming-datagram-stream", "outgoing-datagram-stream"),
    "wasi:sockets/ip-name-lookup": ("resolve-address-stream",),
}


def is_denied(interface: str) -> bool:
    return interface.startswith(DENIED_PREFIXES)


class Denied:
    """A handle of a denied interface's resource: every method on it fails."""

    __slots__ = ()


_DENIED = Denied()
_host_types: list[tuple[wc.ResourceType, int]] = []


def _type_id(resource: wc.ResourceType) -> int:
    if not _host_types:
        _host_types.extend((wc.ResourceType.host(n), n) for n in [ids.POLLABLE, *_RESOURCES.values()])
    for ty, n in _host_types:
        if ty == resource:
            return n
    raise abi.Trap("wasmlet: a denied function returns a resource this host does not know")


def _pick(names: list[str]) -> str:
    for name in _PREFERRED:
        if name in names:
            return name
    return names[0]


def _denial(ty: Any) -> tuple[abi.Encoder, Any]:
    """The encoder and the value that refuse, for the result type ``ty``."""
    if isinstance(ty, wt.ResultType):
        err = _denial(ty.err) if ty.err is not None else None
        return abi.result(None, err[0] if err else None), (False, err[1] if err else None)
    if isinstance(ty, wt.EnumType):
        return abi.enum, _pick(ty.names)
    if isinstance(ty, wt.VariantType):
        cases = dict(ty.cases)
        name = _pick([n for n, payload in cases.items() if payload is None] or list(cases))
        payload = _denial(cases[name]) if cases[name] is not None else None
        return abi.variant({name: payload[0] if payload else None}), (name, payload[1] if payload else None)
    if isinstance(ty, wt.OptionType):
        return abi.option(abi.u8), None
    if isinstance(ty, wt.ListType):
        return abi.list_of(abi.u8), []
    if isinstance(ty, wt.Bool):
        return abi.boolean, False
    for kind, encoder in ((wt.U8, abi.u8), (wt.U16, abi.u16), (wt.U32, abi.u32), (wt.U64, abi.u64)):
        if isinstance(ty, kind):
            return encoder, 0
    if isinstance(ty, wt.String):
        return abi.string, ""
    if isinstance(ty, wt.TupleType):
        parts = [_denial(t) for t in ty.elements]
        return abi.tuple_of(*(p[0] for p in parts)), tuple(p[1] for p in parts)
    if isinstance(ty, wt.RecordType):
        fields = [(name, _denial(t)) for name, t in ty.fields]
        return abi.record(*((n, p[0]) for n, p in fields)), tuple(p[1] for _, p in fields)
    if isinstance(ty, wt.OwnType):
        type_id = _type_id(ty.ty)
        encoder = abi.own(type_id)
        pollable = type_id == ids.POLLABLE

        def mint(context: Any, _value: Any, out: int) -> None:
            encoder(context, current().add(READY if pollable else _DENIED), out)

        return mint, None
    raise abi.Trap(f"wasmlet: cannot build a denial for a result of type {type(ty).__name__}")


_cache: dict[int, tuple[abi.Encoder, Any] | None] = {}
_ids = itertools.count(1)
_names: dict[int, str] = {}


@abi.CALLBACK
def _deny(data, context, ty, args, nargs, results, nresults):  # type: ignore[no-untyped-def]
    key = data or 0
    try:
        for i in range(nargs):  # borrows must be released; nothing else is looked at
            if abi.kind(args + i * abi.VAL_SIZE) == abi.RESOURCE:
                abi.decode(context, args + i * abi.VAL_SIZE)
        if nresults:
            if key not in _cache:
                result = wt.FuncType._from_ptr(ctypes.cast(ty, ctypes.POINTER(ffi.wasmtime_component_func_type_t)),
                                               owner=True).result
                _cache[key] = _denial(result) if result is not None else None
            denial = _cache[key]
            if denial is None:
                raise abi.Trap(f"wasmlet: {_names.get(key)} is not available")
            denial[0](context, denial[1], results)
        return 0
    except BaseException as exc:
        return abi.fail(exc)


@abi.FINALIZER
def _forget(data):  # type: ignore[no-untyped-def]
    _cache.pop(data or 0, None)
    _names.pop(data or 0, None)


def define_denied(interface: str, instance: wc.LinkerInstance, functions: list[str]) -> None:
    """Define ``functions`` of the denied ``interface`` (no version) and the resources it owns."""
    for name in _OWNERS.get(interface, ()):
        abi.add_resource(instance, name, _RESOURCES[name], drop)
    for function in functions:
        key = next(_ids)
        _names[key] = f"{interface}#{function}"
        abi.add_raw_func(instance, function, _deny, key, _forget)
