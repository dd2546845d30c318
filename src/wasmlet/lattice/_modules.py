"""Module bytes across the lattice: the object store ``PREFIX-modules``, keyed by sha256.

A deploy puts the bytes of every version it records in the object store
before the desired state names the version (so no host is ever told to serve
bytes it cannot get), unless they are there already. A host placed with a
version it does not have gets the bytes

1. from the module's OCI registry, if its ``moduleURL`` is ``oci://`` (the
   module's own source; the host needs the registry's credentials, as for a
   deploy), when they still have the recorded digest (a tag may have moved);
2. else from the object store, which holds every version's bytes: a lattice
   never depends on a registry being reachable at failover time.

Either way the bytes are checked against the recorded sha256 before they are
kept (in the host's durable blob store, as a deploy keeps them): the object
store is writable by any lattice member, so what it returns is not trusted.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
from pathlib import Path

import nats.js.errors

from .._errors import LatticeError, ModuleSourceError, WasmletError
from ..engine import BlobStore
from ..plan import ComponentSpec
from ._connection import Connection

__all__ = ["Modules"]

log = logging.getLogger("wasmlet.lattice")

_RATE = 20 << 20  # bytes per second a transfer is given at least (its timeout grows with its size)


def _timeout(size: int) -> float:
    return 15.0 + size / _RATE


class Modules:
    def __init__(self, connection: Connection, blobs: BlobStore, cache_dir: Path | None = None) -> None:
        self._conn = connection
        self.blobs = blobs
        self.cache_dir = cache_dir

    def upload(self, digest: str) -> None:
        """Put the local bytes of ``digest`` in the object store unless they are there (``LatticeError``)."""
        data = self.blobs.get(digest)  # verified
        store = self._conn.modules
        assert store is not None

        async def put() -> None:
            try:
                info = await store.get_info(digest)
                if info.size == len(data):
                    return
            except nats.js.errors.ObjectNotFoundError:
                pass
            await store.put(digest, data)

        self._conn.call(put(), _timeout(len(data)), f"store module sha256:{digest[:12]} in the lattice")

    def download(self, digest: str) -> bytes:
        """The bytes of ``digest`` from the object store, checked (``ModuleSourceError`` if missing or wrong)."""
        store = self._conn.modules
        assert store is not None

        async def get() -> bytes:
            info = await store.get_info(digest)
            buffer = io.BytesIO()
            await asyncio.wait_for(store.get(digest, writeinto=buffer), _timeout(info.size or 0))
            return buffer.getvalue()

        try:
            data = self._conn.call(get(), _timeout(256 << 20) + 5, f"fetch module sha256:{digest[:12]}")
        except LatticeError as exc:
            cause = exc.__cause__
            if isinstance(cause, nats.js.errors.ObjectNotFoundError | nats.js.errors.NotFoundError):
                raise ModuleSourceError(f"module sha256:{digest} is not in the lattice's object store") from exc
            raise ModuleSourceError(f"module sha256:{digest}: {exc}") from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise ModuleSourceError(f"module sha256:{digest} from the lattice's object store has sha256:{actual}; "
                                    "refused")
        return data

    def ensure(self, digest: str, spec: ComponentSpec | None = None) -> None:
        """Have the bytes of ``digest`` in the local durable store: already there, the registry, or the store."""
        if self.blobs.has(digest):
            try:
                self.blobs.get(digest)
                return
            except WasmletError:
                pass  # corrupt: fetched again
        data: bytes | None = None
        if spec is not None and spec.module_url.startswith("oci://") and self.cache_dir is not None:
            from ..registry import fetch_module

            try:
                fetched = fetch_module(spec, BlobStore(self.cache_dir))
                if fetched.digest == digest:
                    data = fetched.data
                else:
                    log.info("lattice: %s now has sha256:%s, not the recorded sha256:%s; using the object store",
                             spec.module_url, fetched.digest[:12], digest[:12])
            except WasmletError as exc:
                log.info("lattice: %s not fetched from its registry (%s); using the object store",
                         spec.module_url, exc)
        if data is None:
            data = self.download(digest)
        self.blobs.put(data, expected=digest)
