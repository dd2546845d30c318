"""What the guest tests share: an engine whose epoch ticker runs (guests' deadlines need it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import wasmtime

from wasmlet.engine import EpochTicker, build_engine
from wasmlet.plan import EngineSettings


@contextlib.contextmanager
def ticking_engine(settings: EngineSettings) -> Iterator[wasmtime.Engine]:
    """An engine built from ``settings``, its epoch ticking for as long as the block runs."""
    engine = build_engine(settings)
    ticker = EpochTicker(engine, settings.epoch_tick)
    ticker.start()
    try:
        yield engine
    finally:
        ticker.stop()


@pytest.fixture(scope="module")
def engine() -> Iterator[wasmtime.Engine]:
    with ticking_engine(EngineSettings(pool_instances=64, pool_max_memory=64 << 20, pool_warm_slots=8)) as engine:
        yield engine
