"""Building the serving ``Engine`` and driving its epoch clock."""

from __future__ import annotations

import threading

import wasmtime
from wasmtime import _ffi as ffi

from ..plan import EngineSettings

__all__ = ["EpochTicker", "build_engine"]


def build_engine(settings: EngineSettings) -> wasmtime.Engine:
    """Create the wasmtime engine for one process.

    wasmtime-py's ``Config`` does not wrap the pooling instance allocator, so
    it is set through wasmtime's C API (``wasmtime_pooling_allocation_*``),
    which the wheel already ships.
    """
    config = wasmtime.Config()
    config.epoch_interruption = True
    config.cranelift_opt_level = settings.opt_level
    config.wasm_simd = settings.simd
    if not settings.simd:
        # wasmtime's C API aborts the process (a Rust panic, not an error) on
        # relaxed SIMD without SIMD, so both go off together.
        config.wasm_relaxed_simd = False
    config.parallel_compilation = settings.parallel_compilation
    config.max_wasm_stack = settings.max_wasm_stack
    if settings.pooling:
        pool = ffi.wasmtime_pooling_allocation_config_new()
        try:
            n = settings.pool_instances
            ffi.wasmtime_pooling_allocation_config_total_core_instances_set(pool, n)
            ffi.wasmtime_pooling_allocation_config_total_memories_set(pool, n)
            ffi.wasmtime_pooling_allocation_config_total_tables_set(pool, n)
            ffi.wasmtime_pooling_allocation_config_max_memory_size_set(pool, settings.pool_max_memory)
            ffi.wasmtime_pooling_allocation_config_linear_memory_keep_resident_set(pool, settings.pool_keep_resident)
            ffi.wasmtime_pooling_allocation_config_table_keep_resident_set(pool, 64 * 1024)
            ffi.wasmtime_pooling_allocation_config_max_unused_warm_slots_set(pool, settings.pool_warm_slots)
            ffi.wasmtime_pooling_allocation_strategy_set(config.ptr(), pool)
        finally:
            ffi.wasmtime_pooling_allocation_config_delete(pool)
    return wasmtime.Engine(config)


class EpochTicker:
    """A daemon thread that advances the engine's epoch every ``tick`` seconds.

    Guests run with an epoch deadline (``Store.set_epoch_deadline``); wasmtime
    checks it at function entries and loop back-edges, so a runaway guest traps
    within one tick of its deadline. As a context manager it ticks for the
    block only: for code that runs guest code before a server's ticker starts
    (the trial instantiation at deploy, ``wasmlet run``). Several tickers on
    one engine only make deadlines checked more often.
    """

    def __init__(self, engine: wasmtime.Engine, tick: float) -> None:
        self._engine = engine
        self.tick = tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wasmlet-epoch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def __enter__(self) -> EpochTicker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1)

    def ticks_for(self, seconds: float) -> int:
        return max(1, round(seconds / self.tick))

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            self._engine.increment_epoch()
