"""Spin's platform interfaces for components: host functions on a ``wasmtime.component.Linker``.

- ``fermyon:spin/key-value@2.0.0``: one SQLite file per app on this host
  (``_store``: pure, with its limits; ``_keyvalue``: the binding);
- ``fermyon:spin/variables@2.0.0`` and ``wasi:config/store``: the component's
  ``environment`` (``_variables``: pure; ``_config``: the binding);
- the rest of what a Spin SDK guest imports (llm, redis, mqtt, postgres,
  mysql, sqlite, wasi:keyvalue) fails cleanly at call time (``_denied``).

``define_spin(linker)`` once per linker; ``with spin_context(ctx):`` around each
guest call; for ``wasi:http/proxy`` components, ``spin_extension(kv)`` does
both through ``guest._proxy.Extension``. ``_abi`` is the lowering the bindings
share. See docs/spin.md.
"""

from ._abi import Err, Ok, Refuse, add_func, deny
from ._context import KeyValueHost, SpinContext, spin_context, spin_request_context
from ._linker import PROVIDED, SPIN_INTERFACE_NAMES, SPIN_INTERFACES, define_spin, spin_extension
from ._store import (
    DEFAULT_LABEL,
    DEFAULT_LIMITS,
    KeyValueStores,
    KvLimits,
    StoreError,
    app_file_name,
    remove_app_store,
)
from ._variables import VariableError, Variables

__all__ = [
    "DEFAULT_LABEL",
    "DEFAULT_LIMITS",
    "PROVIDED",
    "SPIN_INTERFACES",
    "SPIN_INTERFACE_NAMES",
    "Err",
    "KeyValueHost",
    "KeyValueStores",
    "KvLimits",
    "Ok",
    "Refuse",
    "SpinContext",
    "StoreError",
    "VariableError",
    "Variables",
    "add_func",
    "app_file_name",
    "define_spin",
    "deny",
    "remove_app_store",
    "spin_context",
    "spin_extension",
    "spin_request_context",
]
