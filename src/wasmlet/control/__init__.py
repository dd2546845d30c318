"""The control side: what a host should serve, decided, checked and kept.

- ``ControlPlane``, its one public face: deploy, roll back, promote, abort,
  delete, describe; every change is prepared, committed, then published;
- prepare (``_prepare``): fetch, verify signatures, compile, trial-link;
- the offline checks of ``wasmlet validate`` (``_validate``);
- the durable state (``_state``, SQLite);
- the admin API (``_admin``) and its client (``_client``).

Its errors (``StateError`` and below, ``AdminError``) are in ``wasmlet._errors``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

if TYPE_CHECKING:  # the names below, for type checkers; at run time they load on first use
    from .._errors import (
        AdminError,
        NoCanary,
        NothingToRollBack,
        StateError,
        StateLocked,
        UnknownApp,
        UnknownVersion,
    )
    from ._admin import AdminServer, create_admin_app, openapi
    from ._backend import StateBackend
    from ._client import TOKEN_FILE, AdminClient, connect, default_token, find_admin, token_file_create
    from ._grants import FilePolicy
    from ._hosts import HostRecord, default_state_dir, recorded_host, running_hosts, runtime_dir
    from ._plane import ControlPlane
    from ._prepare import plan_for_module, prepare
    from ._state import (
        SCHEMA_VERSION,
        AppState,
        DeployItem,
        DeployResult,
        StateStore,
        Version,
        canonical_spec_json,
        parse_canary_header,
        parse_deploy_arguments,
        validate_app_name,
    )
    from ._validate import ComponentCheck, check_offline
    from ._views import AppView, DeployReport

# Each public name and the private module that defines it. A command that needs only the
# admin client (``wasmlet apps``) must not pay for FastAPI, wasmtime and the compiler (PEP 562).
_WHERE = {
    "AdminClient": "._client",
    "AdminError": ".._errors",
    "AdminServer": "._admin",
    "AppState": "._state",
    "AppView": "._views",
    "ComponentCheck": "._validate",
    "ControlPlane": "._plane",
    "DeployItem": "._state",
    "DeployReport": "._views",
    "DeployResult": "._state",
    "FilePolicy": "._grants",
    "HostRecord": "._hosts",
    "NoCanary": ".._errors",
    "NothingToRollBack": ".._errors",
    "SCHEMA_VERSION": "._state",
    "StateBackend": "._backend",
    "StateError": ".._errors",
    "StateLocked": ".._errors",
    "StateStore": "._state",
    "TOKEN_FILE": "._client",
    "UnknownApp": ".._errors",
    "UnknownVersion": ".._errors",
    "Version": "._state",
    "check_offline": "._validate",
    "connect": "._client",
    "create_admin_app": "._admin",
    "default_state_dir": "._hosts",
    "default_token": "._client",
    "find_admin": "._client",
    "openapi": "._admin",
    "canonical_spec_json": "._state",
    "parse_canary_header": "._state",
    "parse_deploy_arguments": "._state",
    "plan_for_module": "._prepare",
    "prepare": "._prepare",
    "recorded_host": "._hosts",
    "running_hosts": "._hosts",
    "runtime_dir": "._hosts",
    "token_file_create": "._client",
    "validate_app_name": "._state",
}

__all__ = [
    "SCHEMA_VERSION",
    "TOKEN_FILE",
    "AdminClient",
    "AdminError",
    "AdminServer",
    "AppState",
    "AppView",
    "ComponentCheck",
    "ControlPlane",
    "DeployItem",
    "DeployReport",
    "DeployResult",
    "FilePolicy",
    "HostRecord",
    "NoCanary",
    "NothingToRollBack",
    "StateBackend",
    "StateError",
    "StateLocked",
    "StateStore",
    "UnknownApp",
    "UnknownVersion",
    "Version",
    "check_offline",
    "connect",
    "create_admin_app",
    "default_state_dir",
    "default_token",
    "find_admin",
    "openapi",
    "canonical_spec_json",
    "parse_canary_header",
    "parse_deploy_arguments",
    "plan_for_module",
    "prepare",
    "recorded_host",
    "running_hosts",
    "runtime_dir",
    "token_file_create",
    "validate_app_name",
]


__getattr__, __dir__ = lazy_names(__name__, _WHERE, __all__)
