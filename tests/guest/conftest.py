"""What the guest tests share: an engine whose epoch ticker runs (guests' deadlines need it)."""

from __future__ import annotations

import contextlib
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import wasmtime

from wasmlet import GuestCapacity
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


@pytest.fixture
def failing_compiler(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """The only C compiler on ``PATH`` fails every build, printing the line returned (the native helpers' tests)."""
    message = "helper.c:1: error: this compiler refuses"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    broken = bin_dir / "cc"
    broken.write_text(f"#!/bin/sh\necho '{message}' >&2\nexit 1\n")
    broken.chmod(broken.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir))
    return message


@pytest.fixture(scope="module")
def engine() -> Iterator[wasmtime.Engine]:
    with ticking_engine(EngineSettings(pool_instances=64, pool_max_memory=64 << 20, pool_warm_slots=8)) as engine:
        yield engine


@contextlib.contextmanager
def pool_slots_taken(engine: wasmtime.Engine, count: int = 1) -> Iterator[None]:
    """For the block, ``count`` of ``engine``'s pooled core instance slots held by the test.

    Empty modules, instantiated in a store of the test's own: deterministic, where a guest
    holding the pool from another thread would be a race. The store's deletion frees them.
    """
    store = wasmtime.Store(engine)
    module = wasmtime.Module(engine, "(module)")
    held = [wasmtime.Instance(store, module, []) for _ in range(count)]
    try:
        yield
    finally:
        del held, store


def expect_capacity(call: Callable[[], object]) -> None:
    """``call`` is refused for want of an instance slot: 503 "capacity" (``GuestCapacity``), not a trap."""
    with pytest.raises(GuestCapacity, match="no instance slot free") as caught:
        call()
    assert caught.value.status == 503 and caught.value.cause == "capacity"
