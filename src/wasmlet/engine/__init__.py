"""The wasmtime engine: serving configuration, epoch clock, precompiled cache, module bytes.

``EngineSettings`` (what an engine is built with) is plain data in
``wasmlet.plan``, shared with the control side; this package builds from it.
"""

from ._blobs import BlobStore
from ._cache import ModuleCache, default_cache_dir, is_component, sha256_hex
from ._engine import EpochTicker, build_engine

__all__ = [
    "BlobStore",
    "EpochTicker",
    "ModuleCache",
    "build_engine",
    "default_cache_dir",
    "is_component",
    "sha256_hex",
]
