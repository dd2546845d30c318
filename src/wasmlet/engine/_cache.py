"""A content-addressed, on-disk cache of precompiled modules.

Layout under the cache root (``$XDG_CACHE_HOME/wasmlet`` by default)::

    modules/<engine fingerprint>/<module sha256>.cwasm         the artifact
    modules/<engine fingerprint>/<module sha256>.cwasm.sha256  its own digest

wasmtime trusts a serialized artifact completely (deserialising is ``unsafe``
in its Rust API), so each artifact is checked against its recorded digest
before use; a mismatch, a missing digest or an artifact wasmtime refuses
(another version or settings) is recompiled, never a crash. Writes go to a
temporary file renamed into place, so readers never see half an artifact.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import wasmtime
import wasmtime.component

from .._errors import CacheError, ModuleError
from .._files import atomic_write
from ..plan import EngineSettings

__all__ = ["ModuleCache", "default_cache_dir", "is_component", "sha256_hex"]

Compiled = wasmtime.Module | wasmtime.component.Component


def is_component(wasm: bytes) -> bool:
    """True for a component-model binary: after the magic, version 0x0d and layer 1
    (component model binary format), where a core module has version 1, layer 0."""
    return wasm[:4] == b"\0asm" and wasm[4:8] == b"\x0d\x00\x01\x00"

log = logging.getLogger("wasmlet.cache")


def default_cache_dir() -> Path:
    """``$WASMLET_CACHE_DIR``, else ``$XDG_CACHE_HOME/wasmlet``, else ``~/.cache/wasmlet``."""
    explicit = os.environ.get("WASMLET_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "wasmlet"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModuleCache:
    """Compile-once storage of modules for one engine configuration."""

    def __init__(
        self,
        engine: wasmtime.Engine,
        settings: EngineSettings,
        root: Path | None = None,
        observer: Callable[[str, float], None] | None = None,
    ) -> None:
        self.engine = engine
        self.root = (root or default_cache_dir()) / "modules" / settings.fingerprint()
        self.hits = 0
        self.misses = 0
        # Told of every lookup: ("hit", 0.0) or ("miss", seconds spent compiling).
        self._observer = observer

    def artifact_path(self, digest: str) -> Path:
        return self.root / f"{digest}.cwasm"

    def contains(self, digest: str) -> bool:
        return self.artifact_path(digest).exists()

    def compile(self, wasm: bytes, name: str = "module") -> tuple[str, Path]:
        """Make sure ``wasm`` has a valid artifact in the cache; return its digest and path.

        Raises ``ModuleError`` when the bytes are not a valid module for this engine.
        """
        digest = sha256_hex(wasm)
        path = self.artifact_path(digest)
        if self._valid(path):
            self.hits += 1
            if self._observer:
                self._observer("hit", 0.0)
            return digest, path
        self.misses += 1
        started = time.perf_counter()
        try:
            kind = wasmtime.component.Component if is_component(wasm) else wasmtime.Module
            module: Compiled = kind(self.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise ModuleError(f"{name}: not a valid WebAssembly module: {_first_line(exc)}") from exc
        self._store(path, bytes(module.serialize()))
        if self._observer:
            self._observer("miss", time.perf_counter() - started)
        return digest, path

    def load(
        self, digest: str, wasm: bytes | Callable[[], bytes] | None = None, name: str = "module",
        component: bool = False,
    ) -> Compiled:
        """Load the compiled module for ``digest``.

        A missing, corrupt or stale artifact is recompiled from ``wasm`` (the
        bytes, or a function returning them, called only then) when it is
        given, else ``CacheError`` is raised.
        ``component`` says whether the artifact is a component's.
        """
        kind = wasmtime.component.Component if component else wasmtime.Module
        path = self.artifact_path(digest)
        if self._valid(path):
            try:
                module = kind.deserialize_file(self.engine, str(path))
                self.hits += 1
                if self._observer:
                    self._observer("hit", 0.0)
                return module
            except wasmtime.WasmtimeError as exc:
                log.warning("cache: %s: artifact %s refused by wasmtime (%s); recompiling", name, path.name, exc)
        if callable(wasm):
            wasm = wasm()
        if wasm is None:
            raise CacheError(f"{name}: no usable precompiled artifact for sha256:{digest} in {self.root}")
        if sha256_hex(wasm) != digest:
            raise CacheError(f"{name}: module bytes do not match sha256:{digest}")
        self._invalidate(path)
        self.compile(wasm, name)
        return kind.deserialize_file(self.engine, str(path))

    def _valid(self, path: Path) -> bool:
        sum_path = path.with_name(path.name + ".sha256")
        try:
            recorded = sum_path.read_text().strip()
            actual = _file_sha256(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.warning("cache: cannot read %s (%s); recompiling", path, exc)
            return False
        if recorded != actual:
            log.warning("cache: artifact %s is corrupt (digest mismatch); recompiling", path.name)
            return False
        return True

    def _invalidate(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".sha256").unlink(missing_ok=True)

    def _store(self, path: Path, artifact: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Artifact first, digest second: a digest file only ever vouches for
            # an artifact that is completely on disk.
            atomic_write(path, artifact)
            atomic_write(path.with_name(path.name + ".sha256"), sha256_hex(artifact).encode())
        except OSError as exc:
            raise CacheError(f"cannot write the module cache at {path.parent}: {exc}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
