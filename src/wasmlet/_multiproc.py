"""Where prometheus_client's multi-process mode keeps its files.

Kept apart from ``telemetry`` on purpose: it must run before anything imports
``prometheus_client``, which chooses its storage once, at import time.
"""

from __future__ import annotations

import os
import tempfile

__all__ = ["MULTIPROC_ENV", "prepare_metrics_dir"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_metrics_dir() -> str:
    """Point multi-process mode at a fresh folder (workers inherit the variable)."""
    if "prometheus_client" in __import__("sys").modules:
        raise RuntimeError("prepare_metrics_dir() must run before prometheus_client is imported")
    path = tempfile.mkdtemp(prefix="wasmlet-metrics-")
    os.environ[MULTIPROC_ENV] = path
    return path
