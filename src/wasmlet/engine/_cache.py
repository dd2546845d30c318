"""A content-addressed, on-disk cache of precompiled modules, authenticated by the host.

Layout under the cache root (``$XDG_CACHE_HOME/wasmlet`` by default, mode 0700)::

    artifact.key                                             32 random bytes, 0600: the host's key
    modules/<engine fingerprint>/<module sha256>.cwasm       the artifact (native code), 0600
    modules/<engine fingerprint>/<module sha256>.cwasm.mac   HMAC-SHA256 of it, 0600
    modules/<engine fingerprint>/<module sha256>.cwasm.lock  taken while one process recompiles it

wasmtime trusts a serialized artifact completely (deserialising is ``unsafe``
in its Rust API: the artifact *is* native code), so a plain digest beside it
proves nothing: whoever can replace the artifact can replace the digest too
(issue 14, item 10). Each artifact is therefore authenticated with a key only
this host holds, and the MAC covers the engine fingerprint and the module's
digest as well as the bytes, so another module's genuine artifact moved under
this name is refused too. A mismatch, a missing MAC or an artifact wasmtime
refuses (another version or settings) is recompiled from the module bytes,
never a crash. The bytes checked are the bytes loaded: the artifact is read
and checked through one descriptor and wasmtime maps that same file.

The key is created once, atomically (a temporary file, 0600 from its first
byte, renamed into place under a lock); a key that is not a private regular
file of this user is replaced, which invalidates every artifact made with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import hmac
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import wasmtime

from .._errors import CacheError, ModuleError
from .._files import atomic_write
from ..plan import EngineSettings, wasm_kind

if TYPE_CHECKING:  # wasmtime.component (~7 ms of imports) loads with the first component
    import wasmtime.component

    Compiled = wasmtime.Module | wasmtime.component.Component

__all__ = ["ModuleCache", "default_cache_dir", "is_component", "sha256_hex"]

KEY_FILE = "artifact.key"
_KEY_BYTES = 32
_MAC_SUFFIX = ".mac"
_MAC_CONTEXT = b"wasmlet-artifact-v1\0"
# What wasmlet keeps in a cache root (the blob store and the OCI tag index share it).
_ROOT_ENTRIES = frozenset({"modules", "blobs", "oci", KEY_FILE, f".{KEY_FILE}.lock"})


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


def _private_dir(path: Path) -> None:
    """Make ``path`` (and parents) and keep it 0700 if it is ours."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.stat(path)
    if info.st_uid == os.geteuid() and info.st_mode & 0o077:
        os.chmod(path, 0o700)


def _private_root(root: Path) -> None:
    """Make the cache root 0700; tighten an existing one only if it holds nothing but wasmlet's
    (a ``--cache-dir`` pointed at a shared folder such as ``/tmp`` is never chmod-ed: the
    folders below it, which hold the artifacts and the key, are)."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.stat(root)
    if info.st_uid != os.geteuid() or not info.st_mode & 0o077:
        return
    if {name for name in os.listdir(root) if not name.startswith(f".{KEY_FILE}.")} <= _ROOT_ENTRIES:
        os.chmod(root, 0o700)


def _read_key(path: Path) -> bytes | None:
    """The key if ``path`` is a private regular file of this user holding one; None if absent.

    Raises ``ValueError`` saying why an existing key cannot be trusted.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:  # ELOOP: a symlink
        raise ValueError(f"cannot be opened as a plain file ({exc.strerror})") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("is not a regular file")
        if info.st_uid != os.geteuid():
            raise ValueError(f"belongs to uid {info.st_uid}, not this user")
        if info.st_mode & 0o077:
            raise ValueError(f"is readable or writable by others (mode {stat.S_IMODE(info.st_mode):04o})")
        key = os.read(fd, _KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(key) != _KEY_BYTES:
        raise ValueError(f"holds {len(key)} bytes, not {_KEY_BYTES}")
    return key


def artifact_key(root: Path) -> bytes:
    """The host's artifact key in the cache ``root``, created (atomically, 0600) if absent."""
    path = root / KEY_FILE
    try:
        _private_root(root)
        lock = os.open(root / f".{KEY_FILE}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise CacheError(f"cannot use the module cache at {root}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes starting at once end with one key
        try:
            key = _read_key(path)
        except ValueError as exc:
            log.warning("cache: the artifact key %s %s; replacing it (every artifact will be recompiled)", path, exc)
            key = None
        if key is None:
            key = os.urandom(_KEY_BYTES)
            atomic_write(path, key, mode=0o600)  # rename(2) over any refused key: never half a key
        return key
    except OSError as exc:
        raise CacheError(f"cannot create the artifact key {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(lock)


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
        self.base = root or default_cache_dir()
        self.fingerprint = settings.fingerprint()
        self.root = self.base / "modules" / self.fingerprint
        self.hits = 0
        self.misses = 0
        # Told of every lookup: ("hit", 0.0) or ("miss", seconds spent compiling).
        self._observer = observer

    @functools.cached_property
    def _key(self) -> bytes:
        return artifact_key(self.base)

    def artifact_path(self, digest: str) -> Path:
        return self.root / f"{digest}.cwasm"

    def contains(self, digest: str) -> bool:
        return self.artifact_path(digest).exists()

    def _tag(self, digest: str) -> hmac.HMAC:
        # Bound to the engine fingerprint and the module digest: a genuine
        # artifact of another module (or engine) does not verify under this name.
        return hmac.new(self._key, _MAC_CONTEXT + f"{self.fingerprint}\0{digest}\0".encode(), hashlib.sha256)

    def mac(self, digest: str, artifact: bytes) -> str:
        """The MAC this host writes beside the artifact of module ``digest``."""
        tag = self._tag(digest)
        tag.update(artifact)
        return tag.hexdigest()

    def compile(self, wasm: bytes, name: str = "module") -> tuple[str, Path]:
        """Make sure ``wasm`` has a valid artifact in the cache; return its digest and path.

        Raises ``ModuleError`` when the bytes are not a valid module for this engine.
        """
        digest = sha256_hex(wasm)
        path = self.artifact_path(digest)
        checked = self._open_checked(digest, path)
        if checked is not None:
            os.close(checked)
            self.hits += 1
            if self._observer:
                self._observer("hit", 0.0)
            return digest, path
        try:
            wasm_kind(wasm)  # wasmtime would read bytes that are not a binary as WAT text: "expected '('"
        except ValueError as exc:
            raise ModuleError(f"{name}: not WebAssembly: {exc}") from exc
        self.misses += 1
        started = time.perf_counter()
        try:
            kind = _component_class() if is_component(wasm) else wasmtime.Module
            module: Compiled = kind(self.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise ModuleError(f"{name}: not a valid WebAssembly module: {_first_line(exc)}") from exc
        self._store(digest, path, bytes(module.serialize()))
        if self._observer:
            self._observer("miss", time.perf_counter() - started)
        return digest, path

    def load(
        self, digest: str, wasm: bytes | Callable[[], bytes] | None = None, name: str = "module",
        component: bool = False,
    ) -> Compiled:
        """Load the compiled module for ``digest``.

        A missing, unauthenticated or stale artifact is recompiled from ``wasm``
        (the bytes, or a function returning them, called only then) when it is
        given, else ``CacheError`` is raised.
        ``component`` says whether the artifact is a component's.
        """
        kind = _component_class() if component else wasmtime.Module
        path = self.artifact_path(digest)
        fd = self._open_checked(digest, path)
        refused = False
        if fd is not None:
            try:
                module = _deserialize(kind, self.engine, fd)
                self.hits += 1
                if self._observer:
                    self._observer("hit", 0.0)
                return module
            except wasmtime.WasmtimeError as exc:
                log.warning("cache: %s: artifact %s refused by wasmtime (%s); recompiling", name, path.name, exc)
                refused = True
            finally:
                os.close(fd)
        if callable(wasm):
            wasm = wasm()
        if wasm is None:
            raise CacheError(f"{name}: no usable precompiled artifact for sha256:{digest} in {self.root}")
        if sha256_hex(wasm) != digest:
            raise CacheError(f"{name}: module bytes do not match sha256:{digest}")
        # Workers forked together all find the artifact missing at once (a cache removed under a
        # restarting host): one compiles, the others wait and take its artifact. Unlocked, one's
        # _invalidate removed what another had just written, and that one's app answered 503.
        with self._compiling(path):
            fd = None if refused else self._open_checked(digest, path)
            if fd is None:
                self._invalidate(path)
                self.compile(wasm, name)
                fd = self._open_checked(digest, path)
        if fd is None:
            raise CacheError(f"{name}: the artifact for sha256:{digest} changed while it was being written")
        try:
            return _deserialize(kind, self.engine, fd)
        finally:
            os.close(fd)

    def _open_checked(self, digest: str, path: Path) -> int | None:
        """A descriptor of the artifact if its MAC holds (the caller closes it), else None."""
        tag = self._tag(digest)  # before opening: a key that cannot be made raises CacheError, leaking nothing
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cache: cannot open %s (%s); recompiling", path, exc.strerror or exc)
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(f"{path.name} is not a regular file")
            recorded = _read_small(path.with_name(path.name + _MAC_SUFFIX)).strip()
            offset = 0
            while block := os.pread(fd, 1 << 20, offset):
                tag.update(block)
                offset += len(block)
        except FileNotFoundError:
            os.close(fd)
            return None
        except OSError as exc:
            os.close(fd)
            log.warning("cache: cannot read %s (%s); recompiling", path, exc)
            return None
        if not hmac.compare_digest(recorded, tag.hexdigest().encode()):
            os.close(fd)
            log.warning("cache: artifact %s is not authenticated by this host's key (tampered, corrupt or "
                        "from elsewhere); recompiling", path.name)
            return None
        return fd

    @contextlib.contextmanager
    def _compiling(self, path: Path) -> Iterator[None]:
        """Hold the artifact's compile lock (``flock(2)`` on ``<artifact>.lock``) across processes."""
        try:
            _private_root(self.base)
            for folder in (self.base / "modules", path.parent):
                _private_dir(folder)
            lock = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                           0o600)
        except OSError as exc:
            raise CacheError(f"cannot use the module cache at {path.parent}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
        finally:
            os.close(lock)

    def _invalidate(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        path.with_name(path.name + _MAC_SUFFIX).unlink(missing_ok=True)
        path.with_name(path.name + ".sha256").unlink(missing_ok=True)  # the unkeyed digest earlier versions wrote

    def _store(self, digest: str, path: Path, artifact: bytes) -> None:
        try:
            _private_root(self.base)
            for folder in (self.base / "modules", path.parent):
                _private_dir(folder)
            # Artifact first, MAC second: a MAC only ever vouches for an
            # artifact that is completely on disk.
            atomic_write(path, artifact, mode=0o600)
            atomic_write(path.with_name(path.name + _MAC_SUFFIX), self.mac(digest, artifact).encode(), mode=0o600)
        except OSError as exc:
            raise CacheError(f"cannot write the module cache at {path.parent}: {exc}") from exc


def _read_small(path: Path, limit: int = 256) -> bytes:
    """Up to ``limit`` bytes of a regular file (never blocks on a FIFO put in its place)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path.name} is not a regular file")
        return os.read(fd, limit)
    finally:
        os.close(fd)


def _component_class() -> type[wasmtime.component.Component]:
    import wasmtime.component

    return wasmtime.component.Component


def _deserialize(kind: type[Compiled], engine: wasmtime.Engine, fd: int) -> Compiled:
    """Load the artifact behind ``fd``, the descriptor its MAC was checked through.

    Through ``/proc/self/fd`` wasmtime maps that very file (shared by every
    worker, unlike a copy in memory); a rename over the path since the check
    does not change what the descriptor names.
    """
    proc = f"/proc/self/fd/{fd}"
    if os.path.exists(proc):
        return kind.deserialize_file(engine, proc)
    data = bytearray()
    while block := os.pread(fd, 1 << 20, len(data)):
        data += block
    return kind.deserialize(engine, bytes(data))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
