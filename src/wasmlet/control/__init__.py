"""The control plane: durable app state (SQLite), the admin API's client and its OpenAPI document.

Exceptions (all ``wasmlet.WasmletError``)::

    StateError                  the state store refuses an operation (bad input, or not possible now)
     +-- UnknownApp             no app of that name is deployed
     +-- UnknownVersion         no version with that id
     +-- NoCanary               promote/abort without a canary
     +-- NothingToRollBack      rollback without a previous version
     +-- StateLocked            another process holds the state directory
    AdminError                  the admin API answered 4xx/5xx (``status``), or is unreachable (status 0)
"""

from __future__ import annotations

from ._client import TOKEN_FILE, AdminClient, AdminError, default_token, token_file_create
from ._openapi import openapi
from ._state import (
    SCHEMA_VERSION,
    AppState,
    DeployItem,
    DeployResult,
    NoCanary,
    NothingToRollBack,
    StateError,
    StateLocked,
    StateStore,
    UnknownApp,
    UnknownVersion,
    Version,
    parse_canary_header,
    validate_app_name,
)

__all__ = [
    "SCHEMA_VERSION",
    "TOKEN_FILE",
    "AdminClient",
    "AdminError",
    "AppState",
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
    "default_token",
    "openapi",
    "parse_canary_header",
    "token_file_create",
    "validate_app_name",
]
