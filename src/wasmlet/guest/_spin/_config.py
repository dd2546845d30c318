"""``fermyon:spin/variables@2.0.0`` and ``wasi:config/store@0.2.0-draft-2024-09-27``, from ``Variables``.

WIT (spin-sdk 3.4.1)::

    // fermyon:spin/variables
    get: func(name: string) -> result<string, error>;
    variant error { invalid-name(string), undefined(string), provider(string), other(string) }

    // wasi:config/store (Spin answers it from the same variables)
    get: func(key: string) -> result<option<string>, error>;
    get-all: func() -> result<list<tuple<string, string>>, error>;
    variant error { upstream(string), io(string) }

As in Spin, ``wasi:config/store.get`` answers ``none`` for an undefined or
invalid name rather than an error.
"""

from __future__ import annotations

import wasmtime
import wasmtime.component as wc

from ._abi import Err, Ok, add_func
from ._context import current_request
from ._variables import VariableError, Variables

__all__ = ["CONFIG_INTERFACE", "VARIABLES_INTERFACE", "define_config", "define_variables"]

VARIABLES_INTERFACE = "fermyon:spin/variables@2.0.0"
CONFIG_INTERFACE = "wasi:config/store@0.2.0-draft-2024-09-27"


def _variables() -> Variables | None:
    request = current_request()
    return None if request is None else request.ctx.variables


def _get(store: wasmtime.StoreContext, name: str) -> Ok | Err:
    variables = _variables()
    if variables is None:
        return Err(wc.Variant("provider", "wasmlet: no variables outside a request"))
    try:
        return Ok(variables.get(name))
    except VariableError as exc:
        return Err(wc.Variant(exc.kind, exc.message))


def _config_get(store: wasmtime.StoreContext, key: str) -> Ok | Err:
    variables = _variables()
    if variables is None:
        return Err(wc.Variant("upstream", "wasmlet: no configuration outside a request"))
    try:
        return Ok(variables.get(key))
    except VariableError:
        return Ok(None)


def _config_get_all(store: wasmtime.StoreContext) -> Ok | Err:
    variables = _variables()
    if variables is None:
        return Err(wc.Variant("upstream", "wasmlet: no configuration outside a request"))
    return Ok(variables.all())


def define_variables(root: wc.LinkerInstance) -> None:
    with root.add_instance(VARIABLES_INTERFACE) as iface:
        add_func(iface, "get", _get, f"{VARIABLES_INTERFACE}#get")


def define_config(root: wc.LinkerInstance) -> None:
    with root.add_instance(CONFIG_INTERFACE) as iface:
        add_func(iface, "get", _config_get, f"{CONFIG_INTERFACE}#get")
        add_func(iface, "get-all", _config_get_all, f"{CONFIG_INTERFACE}#get-all")
