"""What the wasi:http tests over real HTTP share: one ``wasmlet serve`` worker for a module's manifest."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import Server, free_port


@contextlib.contextmanager
def serving(manifest: Path, tmp_path: Path, **env: str) -> Iterator[Server]:
    """``wasmlet serve MANIFEST --workers 1`` with its own cache, state and log under ``tmp_path``."""
    environment = dict(os.environ)
    environment.update(WASMLET_TEST_LOG=str(tmp_path / "serve.log"), WASMLET_CACHE_DIR=str(tmp_path / "cache"),
                       WASMLET_RUNTIME_DIR=str(tmp_path / "run"), **env)
    server = Server([str(manifest), "--workers", "1"], free_port(), environment, tmp_path / "state")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGKILL)
