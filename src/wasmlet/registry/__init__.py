"""Where modules come from: moduleURL resolution, the local blob store, OCI registries."""

from ._auth import Credentials
from ._oci import PulledModule, PushedModule, login, pull_module, push_module
from ._reference import Reference, is_loopback, parse_reference
from ._sources import MAX_MODULE, FetchedModule, fetch_module, local_module_path, read_module_file

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
