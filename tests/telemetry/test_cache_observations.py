"""The start-up deploy's cache lookups, held until the first workers are asked for (``wasmlet serve``)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from wasmlet.telemetry import hold_cache_observations, observe_cache, release_cache_observations


def lookups(result: str) -> float:
    return REGISTRY.get_sample_value("wasmlet_cache_lookups_total", {"result": result}) or 0.0


def compiles() -> float:
    return REGISTRY.get_sample_value("wasmlet_compile_duration_seconds_count") or 0.0


def test_held_lookups_are_written_on_release_and_later_ones_at_once() -> None:
    hits, misses, compiled = lookups("hit"), lookups("miss"), compiles()
    hold_cache_observations()
    try:
        observe_cache("hit", 0.0)
        observe_cache("miss", 0.25)
        hold_cache_observations()  # a second hold keeps what the first held
        observe_cache("miss", 0.5)
        assert (lookups("hit"), lookups("miss"), compiles()) == (hits, misses, compiled)  # nothing written yet
    finally:
        release_cache_observations()
    assert (lookups("hit"), lookups("miss"), compiles()) == (hits + 1, misses + 2, compiled + 2)
    release_cache_observations()  # idempotent: nothing is written twice
    observe_cache("hit", 0.0)  # released: written as it comes
    assert (lookups("hit"), lookups("miss"), compiles()) == (hits + 2, misses + 2, compiled + 2)
