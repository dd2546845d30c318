"""A content-addressed store of module bytes.

``blobs/sha256/<hex>`` under a root. Two stores use this layout:

- the cache's (``$XDG_CACHE_HOME/wasmlet``): what registries and HTTPS
  servers sent, for offline deploys; disposable;
- the state's (``<state dir>/blobs``, ``durable=True``): the bytes of every
  version the control plane records, written and fsynced (file and folder)
  before the version is committed, so a host whose cache was removed still
  has every module it serves (issue 14, item 6).

A blob is written to a temporary file, verified against its digest, then
renamed into place, so a store never holds a half-written or mislabelled
blob; it is verified again when read. Files are 0600 in 0700 folders: module
bytes can be a tenant's secret.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path

from .._errors import ModuleSourceError
from .._files import atomic_write

__all__ = ["BlobStore"]

_HEX = re.compile(r"^[0-9a-f]{64}$")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    def __init__(self, root: Path, durable: bool = False) -> None:
        self.cache_root = root  # the OCI tag index lives beside the blobs
        self.root = root / "blobs" / "sha256"
        self.durable = durable

    def path(self, hex_digest: str) -> Path:
        if not _HEX.match(hex_digest):  # a digest from a state row or a manifest never names another file
            raise ModuleSourceError(f"blob: {hex_digest[:80]!r} is not a sha256 hex digest")
        return self.root / hex_digest

    def has(self, hex_digest: str) -> bool:
        return _HEX.match(hex_digest) is not None and self.path(hex_digest).is_file()

    def put(self, data: bytes, expected: str | None = None) -> str:
        """Store ``data``; return its sha256 hex. ``expected`` (hex) must match if given.

        A durable store returns only once the blob and its folder entry are on disk.
        """
        actual = hashlib.sha256(data).hexdigest()
        if expected is not None and actual != expected:
            raise ModuleSourceError(f"digest mismatch: expected sha256:{expected}, got sha256:{actual}")
        target = self.path(actual)
        if target.is_file() and (not self.durable or self._intact(target, actual)):
            return actual
        for folder in (self.root.parent.parent, self.root.parent, self.root):
            folder.mkdir(mode=0o700, exist_ok=True, parents=True)
        with contextlib.suppress(OSError):  # a folder made by an older wasmlet (0755) is tightened
            for folder in (self.root.parent, self.root):
                os.chmod(folder, 0o700)
        atomic_write(target, data, mode=0o600)
        if self.durable:  # the new name, and the folders' own entries if they are new, reach the disk
            for folder in (self.root, self.root.parent, self.root.parent.parent):
                _fsync_dir(folder)
        return actual

    def get(self, hex_digest: str) -> bytes:
        """Return the blob, verified; a corrupt blob is reported (and deleted from a cache's store)."""
        path = self.path(hex_digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise ModuleSourceError(f"blob sha256:{hex_digest} is not in {self.root}") from exc
        except OSError as exc:
            raise ModuleSourceError(f"blob sha256:{hex_digest}: cannot read {path}: {exc.strerror or exc}") from exc
        if hashlib.sha256(data).hexdigest() != hex_digest:
            if not self.durable:  # the state's copy is kept for whoever investigates
                path.unlink(missing_ok=True)
                raise ModuleSourceError(f"blob sha256:{hex_digest} in the local store is corrupt; removed it")
            raise ModuleSourceError(f"blob sha256:{hex_digest} in {self.root} is corrupt (digest mismatch)")
        return data

    def digests(self) -> set[str]:
        """Every digest the store holds (by name; not verified)."""
        try:
            return {p.name for p in self.root.iterdir() if _HEX.match(p.name)}
        except FileNotFoundError:
            return set()

    def remove(self, hex_digest: str) -> None:
        self.path(hex_digest).unlink(missing_ok=True)

    @staticmethod
    def _intact(path: Path, hex_digest: str) -> bool:
        try:
            return hashlib.sha256(path.read_bytes()).hexdigest() == hex_digest
        except OSError:
            return False
