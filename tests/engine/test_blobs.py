"""The content-addressed blob store: the cache's (disposable) and the state's (durable)."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from wasmlet import ModuleSourceError
from wasmlet.engine import BlobStore

DATA = b"\0asm\x01\0\0\0"
DIGEST = hashlib.sha256(DATA).hexdigest()


@pytest.mark.parametrize("durable", [False, True])
def test_blobs_are_private(tmp_path: Path, durable: bool) -> None:
    store = BlobStore(tmp_path, durable=durable)
    assert store.put(DATA) == DIGEST
    assert store.get(DIGEST) == DATA and store.digests() == {DIGEST}
    assert stat.S_IMODE(store.path(DIGEST).stat().st_mode) == 0o600
    for folder in (store.root, store.root.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_digest_never_names_another_file(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    for bad in ("../../state.db", "ab" * 31, "AB" * 32, "", "/etc/passwd"):
        assert not store.has(bad)
        with pytest.raises(ModuleSourceError, match="not a sha256 hex digest"):
            store.get(bad)


def test_a_mismatch_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, durable=True)
    with pytest.raises(ModuleSourceError, match="digest mismatch"):
        store.put(DATA, "0" * 64)
    assert store.digests() == set()


def test_a_corrupt_durable_blob_is_reported_kept_and_rewritten(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, durable=True)
    store.put(DATA)
    store.path(DIGEST).write_bytes(b"garbage")
    with pytest.raises(ModuleSourceError, match="corrupt"):
        store.get(DIGEST)
    assert store.path(DIGEST).exists()  # the state's copy stays for whoever investigates
    store.put(DATA)  # a deploy of the same bytes repairs it
    assert store.get(DIGEST) == DATA


def test_a_corrupt_cache_blob_is_removed(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    store.put(DATA)
    store.path(DIGEST).write_bytes(b"garbage")
    with pytest.raises(ModuleSourceError, match="corrupt; removed it"):
        store.get(DIGEST)
    assert not store.has(DIGEST)
