"""The Spin platform interfaces wasmlet does not provide, linked so that calls fail cleanly.

A Spin SDK guest imports all of its world whether it uses them or not
(componentize-py keeps every import of ``spin-http``), so a component that
never touches a database still needs these to link. Each function answers
``err(other("wasmlet does not provide IFACE"))`` where its result has that
case, and traps with the same message otherwise (``_abi.Refuse``): ``llm``'s
error has no ``other``, nor has ``wasi:keyvalue/atomics.swap``'s.

The names are those spin-sdk 3.4.1 imports (``componentize-py -w spin-http``;
listed from the component with ``Component.type.imports``). Resources that one
interface ``use``s from another (``wasi:keyvalue`` ``bucket``) share one host
type, as the component's types require.
"""

from __future__ import annotations

import wasmtime
import wasmtime.component as wc

from ._abi import add_func, deny

__all__ = ["DENIED", "define_denied"]

_CONNECTION = ("[static]connection.open",)
_RDBMS = (*_CONNECTION, "[method]connection.query", "[method]connection.execute")

# interface -> ((resource, host type id), ...), (function, ...)
DENIED: dict[str, tuple[tuple[tuple[str, int], ...], tuple[str, ...]]] = {
    "fermyon:spin/llm@2.0.0": ((), ("infer", "generate-embeddings")),
    "fermyon:spin/redis@2.0.0": ((("connection", 110),), (
        *_CONNECTION, "[method]connection.publish", "[method]connection.get", "[method]connection.set",
        "[method]connection.incr", "[method]connection.del", "[method]connection.sadd",
        "[method]connection.smembers", "[method]connection.srem", "[method]connection.execute")),
    "fermyon:spin/rdbms-types@2.0.0": ((), ()),
    "fermyon:spin/postgres@2.0.0": ((("connection", 111),), _RDBMS),
    "fermyon:spin/mysql@2.0.0": ((("connection", 112),), _RDBMS),
    "fermyon:spin/mqtt@2.0.0": ((("connection", 113),), (*_CONNECTION, "[method]connection.publish")),
    "fermyon:spin/sqlite@2.0.0": ((("connection", 114),), (*_CONNECTION, "[method]connection.execute")),
    "spin:postgres/postgres@3.0.0": ((("connection", 115),), _RDBMS),
    "spin:postgres/postgres@4.0.0": ((("connection", 116),), _RDBMS),
    "spin:sqlite/sqlite@3.0.0": ((("connection", 117),), (
        *_CONNECTION, "[method]connection.execute", "[method]connection.last-insert-rowid",
        "[method]connection.changes")),
    "wasi:keyvalue/store@0.2.0-draft2": ((("bucket", 120),), (
        "open", "[method]bucket.get", "[method]bucket.set", "[method]bucket.delete", "[method]bucket.exists",
        "[method]bucket.list-keys")),
    "wasi:keyvalue/atomics@0.2.0-draft2": ((("bucket", 120), ("cas", 121)), (
        "[static]cas.new", "[method]cas.current", "increment", "swap")),
    "wasi:keyvalue/batch@0.2.0-draft2": ((("bucket", 120),), ("get-many", "set-many", "delete-many")),
}


def _no_dtor(store: wasmtime.StoreContext, rep: int) -> None:
    """Never called with a live handle: no function here ever returns one."""


def define_denied(root: wc.LinkerInstance) -> None:
    for interface, (resources, functions) in DENIED.items():
        with root.add_instance(interface) as iface:
            for name, type_id in resources:
                iface.add_resource(name, wc.ResourceType.host(type_id), _no_dtor)
            refuse = deny(interface)
            for function in functions:
                add_func(iface, function, refuse, f"{interface}#{function}")
