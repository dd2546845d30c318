"""``fermyon:spin/key-value@2.0.0`` on a component linker, over the app's ``KeyValueStores``.

WIT (spin-sdk 3.4.1, ``wit/key-value.wit``)::

    resource store {
      open: static func(label: string) -> result<store, error>;
      get: func(key: string) -> result<option<list<u8>>, error>;
      set: func(key: string, value: list<u8>) -> result<_, error>;
      delete: func(key: string) -> result<_, error>;
      exists: func(key: string) -> result<bool, error>;
      get-keys: func() -> result<list<string>, error>;
    }
    variant error { store-table-full, no-such-store, access-denied, other(string) }

A ``store`` is a host resource (``STORE_TYPE``) whose rep is a key of the
request's handle table (``_context._Request``): reps are never reused in the
process, a dropped handle is gone from the table, and the canonical ABI
refuses a handle the guest does not hold before any of this runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, TypeVar

import wasmtime
import wasmtime.component as wc

from ._abi import Err, Ok, add_func
from ._context import _Request, current_request
from ._store import KeyValueStores, StoreError

__all__ = ["INTERFACE", "STORE_TYPE", "define_key_value"]

INTERFACE = "fermyon:spin/key-value@2.0.0"
STORE_TYPE = 100  # ResourceType.host ids 100..199 are the Spin interfaces' (1..99: wasi:http/proxy)
T = TypeVar("T")


# Reps are unique in the process, not per request: a destructor that wasmtime
# ran late (after its request, on a thread serving another) can never pop
# another request's handle. ``next`` on a count is atomic under the GIL.
_reps = itertools.count(1)


def _next_rep() -> int:
    rep = next(_reps) & 0xFFFFFFFF  # a rep is a u32
    return rep or _next_rep()


def _error(exc: StoreError) -> wc.Variant:
    return wc.Variant("other", exc.message) if exc.kind == "other" else wc.Variant(exc.kind)


def _request() -> _Request:
    request = current_request()
    if request is None:  # a host bug, not the guest's: no request context bound around the call
        raise wasmtime.WasmtimeError(f"wasmlet: {INTERFACE} called outside a request")
    return request


def _open(store: wasmtime.StoreContext, label: str) -> Ok | Err:
    request = _request()
    kv = request.ctx.kv
    if kv is None:
        return Err(wc.Variant("access-denied"))
    try:
        kv.check_label(label)
    except StoreError as exc:
        return Err(_error(exc))
    if len(request.stores) >= kv.limits.max_open:
        return Err(wc.Variant("store-table-full"))
    rep = _next_rep()
    request.stores[rep] = label
    return Ok(wc.ResourceHost.own(rep, STORE_TYPE))


def _method(op: Callable[..., T]) -> Callable[..., Ok | Err]:
    """A ``[method]store.*``: resolve ``self`` to its label, run ``op(stores, label, *args)``."""

    def call(store: wasmtime.StoreContext, this: wc.ResourceHost, *args: Any) -> Ok | Err:
        request = _request()
        rep = this.rep
        label = request.stores.get(rep)
        if label is None or request.ctx.kv is None:  # cannot happen: the ABI checks handles
            raise wasmtime.WasmtimeError(f"wasmlet: {INTERFACE}: unknown store handle {rep}")
        try:
            return Ok(op(request.ctx.kv, label, *args, wait=request.wait()))
        except StoreError as exc:
            return Err(_error(exc))

    return call


def _drop(store: wasmtime.StoreContext, rep: int) -> None:
    request = current_request()
    if request is not None:
        request.stores.pop(rep, None)


def define_key_value(root: wc.LinkerInstance) -> None:
    with root.add_instance(INTERFACE) as iface:
        iface.add_resource("store", wc.ResourceType.host(STORE_TYPE), _drop)
        methods: dict[str, Callable[..., Any]] = {
            "[static]store.open": _open,
            "[method]store.get": _method(KeyValueStores.get),
            "[method]store.set": _method(KeyValueStores.set),
            "[method]store.delete": _method(KeyValueStores.delete),
            "[method]store.exists": _method(KeyValueStores.exists),
            "[method]store.get-keys": _method(KeyValueStores.get_keys),
        }
        for name, func in methods.items():
            add_func(iface, name, func, f"{INTERFACE}#{name}")
