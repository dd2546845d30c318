"""``remove_app_store``: an app's key-value file goes with the app, and nothing else does.

Real SQLite files in a temporary state folder. The control plane's side (when it
is called, what it keeps) is in tests/control/test_kv_delete.py.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from wasmlet.guest._spin import KeyValueHost, KeyValueStores, StoreError, app_file_name, remove_app_store


def filled(root: Path, app: str, **items: bytes) -> KeyValueStores:
    stores = KeyValueStores(root, app)
    for key, value in items.items():
        stores.set("default", key, value)
    return stores


def test_the_file_and_its_wal_and_shm_go(tmp_path: Path) -> None:
    kv = tmp_path / "kv"
    gone = filled(kv, "shop", cart=b"3 apples")
    kept = filled(kv, "shop-2", cart=b"1 pear")  # a neighbour whose name starts the same
    assert {p.name for p in kv.iterdir()} >= {"shop.sqlite", "shop.sqlite-wal", "shop.sqlite-shm"}
    removed = remove_app_store(kv, "shop")  # a worker still has it open: its -wal and -shm exist
    assert set(removed) == {"shop.sqlite", "shop.sqlite-wal", "shop.sqlite-shm"}
    gone.close()
    assert not [p for p in kv.iterdir() if p.name.startswith("shop.")]
    assert kept.get("default", "cart") == b"1 pear"
    assert remove_app_store(kv, "shop") == []  # twice: nothing left, no error
    assert remove_app_store(tmp_path / "never", "shop") == []  # no kv folder yet


@pytest.mark.parametrize("app", ["..", ".", "../victim", "a/../../victim", "/etc/passwd", "victim.sqlite/..",
                                 "x\x00y", "..\\victim", "kv/../victim", "v" * 300])
def test_a_crafted_name_removes_nothing_outside_the_folder(tmp_path: Path, app: str) -> None:
    kv = tmp_path / "state" / "kv"
    kv.mkdir(parents=True)
    # Decoys where a path-joining bug would land: beside and above the folder, and in it under the raw name.
    decoys = [tmp_path / "state" / "victim.sqlite", tmp_path / "victim.sqlite", tmp_path / "state" / "state.db",
              kv / "victim.sqlite", kv / "other.sqlite"]
    for decoy in decoys:
        decoy.write_bytes(b"keep me")
    filled(kv, app, k=b"v").close()
    assert {p.name for p in kv.iterdir() if p.name.startswith(app_file_name(app))}  # its own file exists
    removed = remove_app_store(kv, app)
    assert removed and all("/" not in name and name.startswith(app_file_name(app)) for name in removed)
    assert all(decoy.read_bytes() == b"keep me" for decoy in decoys)
    assert sorted(p.name for p in kv.iterdir()) == ["other.sqlite", "victim.sqlite"]


def test_a_symlink_in_the_folder_is_removed_not_followed(tmp_path: Path) -> None:
    kv = tmp_path / "kv"
    kv.mkdir()
    target = tmp_path / "precious.db"
    target.write_bytes(b"not the app's")
    (kv / "shop.sqlite").symlink_to(target)
    (kv / "shop.sqlite-wal").symlink_to(target)
    assert set(remove_app_store(kv, "shop")) == {"shop.sqlite", "shop.sqlite-wal"}
    assert target.read_bytes() == b"not the app's"
    assert list(kv.iterdir()) == []


def test_a_kv_folder_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "shop.sqlite").write_bytes(b"someone else's")
    (tmp_path / "kv").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(OSError):
        remove_app_store(tmp_path / "kv", "shop")
    assert (elsewhere / "shop.sqlite").read_bytes() == b"someone else's"


def test_an_in_flight_request_keeps_its_connection_and_a_redeploy_starts_empty(tmp_path: Path) -> None:
    """The worker's ``KeyValueHost`` outlives the app: after the delete it must not hand the old file over."""
    kv = KeyValueHost(tmp_path / "kv")
    old = kv.stores("shop")
    old.set("default", "cart", b"3 apples")
    in_use = threading.Event()
    release = threading.Event()
    seen: list[bytes | None] = []

    def in_flight() -> None:  # a request that holds a connection across the delete
        with old._conn() as conn:
            in_use.set()
            assert release.wait(10)
            seen.append(bytes(conn.execute("SELECT value FROM kv WHERE key = 'cart'").fetchone()[0]))

    thread = threading.Thread(target=in_flight)
    thread.start()
    assert in_use.wait(10)
    assert "shop.sqlite" in remove_app_store(kv.root, "shop")
    assert old.stale()
    # The re-deploy (a new handler: KeyValueHost.stores at build) gets a new, empty file.
    new = kv.stores("shop")
    assert new is not old and new.get("default", "cart") is None and new.get_keys("default") == []
    new.set("default", "cart", b"fresh")
    release.set()
    thread.join(10)
    assert seen == [b"3 apples"]  # the in-flight read still worked, on the unlinked file
    old.close()  # the old connections closing must not checkpoint over or delete the new -wal
    # The old object never makes a file of its own again: it needs a new connection here, and is refused.
    with pytest.raises(StoreError, match="deleted"):
        old.get("default", "cart")
    fresh = KeyValueStores(kv.root, "shop")  # another worker process, say
    assert fresh.get("default", "cart") == b"fresh" and fresh.usage() == (1, len("cart") + len("fresh"))
    new.close()
    fresh.close()


def test_a_live_app_keeps_its_stores_object(tmp_path: Path) -> None:
    kv = KeyValueHost(tmp_path / "kv")
    first = kv.stores("shop")
    first.set("default", "a", b"1")
    assert kv.stores("shop") is first  # a new version of the same app: same file, same pool
    assert not first.stale()
    os.replace(first.path, first.path.with_name("moved"))
    assert first.stale()  # the file is not the one it opened any more
