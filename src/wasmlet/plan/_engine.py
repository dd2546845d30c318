"""Engine settings: what the serving engine is built with, and its fingerprint."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from importlib.metadata import version

__all__ = ["EngineSettings", "wasmtime_version"]


@functools.cache
def wasmtime_version() -> str:
    """The installed wasmtime's version: once per process (the lookup reads the installed
    distributions' folders, ~1 ms), and in the zygote before it forks (``wasmlet.server._zygote``)."""
    return version("wasmtime")


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    """How the one-per-process wasmtime ``Engine`` is configured for serving.

    The defaults follow the seed's section 5 (memory-pool pre-allocation,
    precompiled-module cache, SIMD, Cranelift at its highest optimisation).
    """

    opt_level: str = "speed"  # Cranelift's highest level ("opt level 3" in the seed)
    simd: bool = True
    parallel_compilation: bool = True
    pooling: bool = True
    # Pool sizes, per worker process. Each slot reserves address space, not memory.
    pool_instances: int = 256
    pool_max_memory: int = 1 << 30  # no memoryLimit may exceed this
    pool_keep_resident: int = 1 << 20  # bytes of each memory slot reset with memset, not madvise
    pool_warm_slots: int = 64
    max_wasm_stack: int = 512 * 1024
    epoch_tick: float = 0.005  # seconds between epoch increments (deadline resolution)

    def codegen_key(self) -> dict[str, object]:
        """The settings that change compiled code, plus the wasmtime version."""
        return {
            "wasmtime": wasmtime_version(),
            "opt_level": self.opt_level,
            "simd": self.simd,
            "pooling": self.pooling,
            "max_wasm_stack": self.max_wasm_stack,
            "epoch_interruption": True,
        }

    def fingerprint(self) -> str:
        """A short stable hash naming the cache folder for these settings."""
        blob = json.dumps(self.codegen_key(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
