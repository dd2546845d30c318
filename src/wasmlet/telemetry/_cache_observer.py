"""Feeding the precompiled cache's lookups into the metrics.

``wasmlet serve`` holds the lookups of its start-up deploy (``hold_cache_observations``) and
writes them once the first workers are asked for (``release_cache_observations``): the supervisor
then loads prometheus_client, with http.server and ssl behind it (~18 ms of imports, issue 13),
while the workers start on the other cores, not on the way to the host's first response.
"""

from __future__ import annotations

import threading

__all__ = ["hold_cache_observations", "observe_cache", "release_cache_observations"]

_lock = threading.Lock()
_held: list[tuple[str, float]] | None = None


def observe_cache(result: str, compile_seconds: float) -> None:
    with _lock:
        if _held is not None:
            _held.append((result, compile_seconds))
            return
    _record(result, compile_seconds)


def hold_cache_observations() -> None:
    """Keep what ``observe_cache`` is told, unwritten, until ``release_cache_observations``."""
    global _held
    with _lock:
        if _held is None:
            _held = []


def release_cache_observations() -> None:
    """Write what was held, and every later lookup as it comes (idempotent)."""
    global _held
    with _lock:
        held, _held = _held, None
    for result, compile_seconds in held or ():
        _record(result, compile_seconds)


def _record(result: str, compile_seconds: float) -> None:
    from ._metrics import CACHE_LOOKUPS, COMPILE_SECONDS

    CACHE_LOOKUPS.labels(result).inc()
    if result == "miss":
        COMPILE_SECONDS.observe(compile_seconds)
