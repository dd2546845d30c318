"""A content-addressed store of module bytes.

``blobs/sha256/<hex>`` under the cache root. A blob is written to a temporary
file, verified against its digest, then renamed into place, so the store never
holds a half-written or mislabelled blob; it is verified again when read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .._errors import ModuleSourceError
from .._files import atomic_write

__all__ = ["BlobStore"]


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.cache_root = root  # the OCI tag index lives beside the blobs
        self.root = root / "blobs" / "sha256"

    def path(self, hex_digest: str) -> Path:
        return self.root / hex_digest

    def has(self, hex_digest: str) -> bool:
        return self.path(hex_digest).is_file()

    def put(self, data: bytes, expected: str | None = None) -> str:
        """Store ``data``; return its sha256 hex. ``expected`` (hex) must match if given."""
        actual = hashlib.sha256(data).hexdigest()
        if expected is not None and actual != expected:
            raise ModuleSourceError(f"digest mismatch: expected sha256:{expected}, got sha256:{actual}")
        target = self.path(actual)
        if target.is_file():
            return actual
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data)
        return actual

    def get(self, hex_digest: str) -> bytes:
        """Return the blob, verified; a corrupt blob is deleted and reported."""
        path = self.path(hex_digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise ModuleSourceError(f"blob sha256:{hex_digest} is not in the local store") from exc
        if hashlib.sha256(data).hexdigest() != hex_digest:
            path.unlink(missing_ok=True)
            raise ModuleSourceError(f"blob sha256:{hex_digest} in the local store is corrupt; removed it")
        return data
