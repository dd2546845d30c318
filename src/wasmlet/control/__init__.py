"""The control side: what a host should serve, decided, checked and kept.

- ``ControlPlane``, its one public face: deploy, roll back, promote, abort,
  delete, describe; every change is prepared, committed, then published;
- prepare (``_prepare``): fetch, verify signatures, compile, trial-link;
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
from ._admin import AdminServer
from ._client import TOKEN_FILE, AdminClient, default_token, token_file_create
from ._openapi import openapi
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

__all__ = [
    "SCHEMA_VERSION",
    "TOKEN_FILE",
    "AdminClient",
    "AdminError",
    "AdminServer",
    "AppState",
    "ControlPlane",
    "DeployItem",
    "DeployResult",
    "NoCanary",
    "NothingToRollBack",
    "StateError",
    "StateLocked",
    "StateStore",
    "UnknownApp",
    "UnknownVersion",
    "Version",
    "default_state_dir",
    "default_token",
    "openapi",
    "parse_canary_header",
    "plan_for_module",
    "prepare",
    "token_file_create",
    "validate_app_name",
]
