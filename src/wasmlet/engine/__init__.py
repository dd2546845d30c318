"""The wasmtime engine: serving configuration, epoch clock, precompiled cache."""

from ._cache import ModuleCache, default_cache_dir, is_component, sha256_hex
from ._engine import EpochTicker, build_engine
from ._settings import EngineSettings

__all__ = [
    "EngineSettings",
    "EpochTicker",
    "ModuleCache",
    "build_engine",
    "default_cache_dir",
    "is_component",
    "sha256_hex",
]
