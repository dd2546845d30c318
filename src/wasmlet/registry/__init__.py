"""Where modules come from: moduleURL resolution, the local blob store, OCI registries."""

from ._auth import Credentials
from ._oci import PulledModule, PushedModule, login, pull_module, push_module
from ._reference import Reference, parse_reference
from ._sources import FetchedModule, fetch_module, local_module_path

__all__ = [
    "Credentials",
    "FetchedModule",
    "PulledModule",
    "PushedModule",
    "Reference",
    "fetch_module",
    "local_module_path",
    "login",
    "parse_reference",
    "pull_module",
    "push_module",
]
