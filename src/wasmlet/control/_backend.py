"""What the control plane needs of its durable state: ``StateStore`` (SQLite) on one host,
the lattice's JetStream key-value store past one host (``wasmlet.lattice``).

Both keep the same rules (``_state``'s docstring): versions numbered per app and
never reused, stable/previous/canary per app, a generation that goes up with
every change, every mutation durable before it returns, nothing changed on error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ._state import AppState, DeployItem, DeployResult, Version

__all__ = ["StateBackend"]


class StateBackend(Protocol):
    directory: Path  # this host's folder: module bytes (blobs/), admin token, logs

    def deploy(self, items: list[DeployItem], canary_weight: int | None = None,
               canary_header: str | None = None) -> list[DeployResult]: ...

    def promote(self, app: str) -> AppState: ...

    def abort(self, app: str) -> AppState: ...

    def rollback(self, app: str) -> AppState: ...

    def delete(self, app: str) -> None: ...

    def apps(self) -> list[AppState]: ...

    def app(self, app: str) -> AppState: ...

    def generation(self) -> int: ...

    def history(self, app: str, limit: int = 20) -> list[Version]: ...

    def close(self) -> None: ...
