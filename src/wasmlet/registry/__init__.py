"""Where modules come from: moduleURL resolution, the local blob store, OCI registries.

Names load on first use (PEP 562): a deploy from files (``wasmlet serve MANIFEST``)
needs ``_sources``, not the OCI client and the httpx it is built on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

if TYPE_CHECKING:  # the names below, for type checkers; at run time they load on first use
    from ._auth import Credentials
    from ._oci import PulledModule, PushedModule, login, pull_module, push_module
    from ._reference import Reference, is_loopback, parse_reference
    from ._sources import MAX_MODULE, FetchedModule, fetch_module, local_module_path, read_module_file

# Each public name and the private module that defines it.
_WHERE = {
    "Credentials": "._auth",
    "FetchedModule": "._sources",
    "MAX_MODULE": "._sources",
    "PulledModule": "._oci",
    "PushedModule": "._oci",
    "Reference": "._reference",
    "fetch_module": "._sources",
    "is_loopback": "._reference",
    "local_module_path": "._sources",
    "login": "._oci",
    "parse_reference": "._reference",
    "pull_module": "._oci",
    "push_module": "._oci",
    "read_module_file": "._sources",
}

__all__ = [
    "MAX_MODULE",
    "Credentials",
    "FetchedModule",
    "PulledModule",
    "PushedModule",
    "Reference",
    "fetch_module",
    "is_loopback",
    "local_module_path",
    "login",
    "parse_reference",
    "pull_module",
    "push_module",
    "read_module_file",
]


__getattr__, __dir__ = lazy_names(__name__, _WHERE, __all__)
