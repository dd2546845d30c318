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
from ._client import TOKEN_FILE, AdminClient, connect, default_token, find_admin, token_file_create
from ._hosts import HostRecord, recorded_host, running_hosts, runtime_dir
from ._plane import ControlPlane, default_state_dir
from ._prepare import plan_for_module, prepare
from ._state import (
    SCHEMA_VERSION,
    AppState,
    DeployItem,
    DeployResult,
    StateStore,
    Version,
    parse_canary_header,
    validate_app_name,
)
from ._validate import ComponentCheck, check_offline
from ._views import AppView, DeployReport

__all__ = [
    "SCHEMA_VERSION",
    "TOKEN_FILE",
    "AdminClient",
    "AdminError",
    "AdminServer",
    "AppView",
    "DeployReport",
    "AppState",
    "ComponentCheck",
    "ControlPlane",
    "DeployItem",
    "DeployResult",
    "HostRecord",
    "NoCanary",
    "NothingToRollBack",
    "StateError",
    "StateLocked",
    "StateStore",
    "UnknownApp",
    "UnknownVersion",
    "Version",
    "check_offline",
    "connect",
    "default_state_dir",
    "default_token",
    "find_admin",
    "create_admin_app",
    "openapi",
    "parse_canary_header",
    "plan_for_module",
    "prepare",
    "recorded_host",
    "running_hosts",
    "runtime_dir",
    "token_file_create",
    "validate_app_name",
]
