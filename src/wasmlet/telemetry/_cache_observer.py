"""Feeding the precompiled cache's lookups into the metrics."""

from __future__ import annotations

from ._metrics import CACHE_LOOKUPS, COMPILE_SECONDS

__all__ = ["observe_cache"]


def observe_cache(result: str, compile_seconds: float) -> None:
    CACHE_LOOKUPS.labels(result).inc()
    if result == "miss":
        COMPILE_SECONDS.observe(compile_seconds)
