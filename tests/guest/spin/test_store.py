"""The SQLite key-value store behind ``fermyon:spin/key-value``: limits, isolation, durability, concurrency."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from wasmlet.guest._spin import DEFAULT_LIMITS, KeyValueHost, KeyValueStores, KvLimits, StoreError, app_file_name

SMALL = KvLimits(max_key=16, max_value=64, max_keys=5, max_bytes=200)


def stores(root: Path, app: str = "app", limits: KvLimits = DEFAULT_LIMITS) -> KeyValueStores:
    return KeyValueStores(root, app, limits)


def test_set_get_exists_delete_and_keys(tmp_path: Path) -> None:
    kv = stores(tmp_path)
    assert kv.get("default", "a") is None
    assert not kv.exists("default", "a")
    kv.set("default", "a", b"1")
    kv.set("default", "b", b"")
    kv.set("default", "a", b"22")  # overwrite
    assert kv.get("default", "a") == b"22"
    assert kv.get("default", "b") == b""
    assert kv.exists("default", "b")
    assert kv.get_keys("default") == ["a", "b"]
    kv.delete("default", "a")
    kv.delete("default", "never-there")  # not an error, as in Spin
    assert kv.get_keys("default") == ["b"]
    assert kv.usage() == (1, 1)  # one key of 1 byte, empty value


def test_unicode_keys_are_counted_in_utf8_bytes(tmp_path: Path) -> None:
    kv = stores(tmp_path, limits=SMALL)
    kv.set("default", "é" * 8, b"v")  # 16 bytes: at the limit
    with pytest.raises(StoreError, match="the key is 18 bytes, more than the limit of 16"):
        kv.set("default", "é" * 9, b"v")
    assert kv.usage() == (1, 17)


def test_any_string_is_a_key(tmp_path: Path) -> None:
    """Keys are opaque: NUL, SQL and path syntax, and look-alike Unicode stay distinct and intact."""
    kv = stores(tmp_path)
    keys = ["a\x00b", "a", "'; DROP TABLE kv; --", "../../etc/passwd", "%", "_", "é", "e\u0301", ""]
    for i, key in enumerate(keys):
        kv.set("default", key, str(i).encode())
    assert [kv.get("default", k) for k in keys] == [str(i).encode() for i in range(len(keys))]
    assert sorted(kv.get_keys("default")) == sorted(keys)
    kv.delete("default", "a\x00b")
    assert kv.get("default", "a") == b"1"


def test_only_the_default_label_exists(tmp_path: Path) -> None:
    kv = stores(tmp_path)
    for op in (lambda: kv.get("other", "k"), lambda: kv.set("other", "k", b"v"), lambda: kv.get_keys("")):
        with pytest.raises(StoreError) as info:
            op()
        assert info.value.kind == "no-such-store"
    assert not kv.path.exists()  # refused before the file is made


@pytest.mark.parametrize(("op", "message"), [
    (lambda kv: kv.set("default", "k" * 17, b"v"), "the key is 17 bytes, more than the limit of 16"),
    (lambda kv: kv.get("default", "k" * 17), "the key is 17 bytes"),
    (lambda kv: kv.delete("default", "k" * 17), "the key is 17 bytes"),
    (lambda kv: kv.exists("default", "k" * 17), "the key is 17 bytes"),
    (lambda kv: kv.set("default", "k", b"x" * 65), "the value is 65 bytes, more than the limit of 64"),
])
def test_size_limits(tmp_path: Path, op, message: str) -> None:  # type: ignore[no-untyped-def]
    kv = stores(tmp_path, limits=SMALL)
    with pytest.raises(StoreError, match=message) as info:
        op(kv)
    assert info.value.kind == "other"
    assert kv.usage() == (0, 0)


def test_key_count_limit_holds_and_a_delete_makes_room(tmp_path: Path) -> None:
    kv = stores(tmp_path, limits=SMALL)
    for i in range(5):
        kv.set("default", f"k{i}", b"v")
    with pytest.raises(StoreError, match="holds 5 keys, the limit"):
        kv.set("default", "k5", b"v")
    kv.set("default", "k0", b"overwritten")  # overwriting adds no key
    kv.delete("default", "k1")
    kv.set("default", "k5", b"v")
    assert kv.usage()[0] == 5
    assert len(kv.get_keys("default")) == 5


def test_byte_limit_counts_keys_and_values_and_overwrites(tmp_path: Path) -> None:
    kv = stores(tmp_path, limits=SMALL)
    kv.set("default", "a", b"x" * 64)
    kv.set("default", "b", b"x" * 64)
    kv.set("default", "c", b"x" * 60)  # 65 + 65 + 61 = 191
    with pytest.raises(StoreError, match="hold 201 bytes, more than the limit of 200"):
        kv.set("default", "d", b"x" * 9)
    kv.set("default", "a", b"x")  # shrinking an existing value frees its bytes
    kv.set("default", "d", b"x" * 9)
    assert kv.usage() == (4, 2 + 65 + 61 + 10)
    assert kv.get("default", "d") == b"x" * 9


def test_a_refused_write_changes_nothing(tmp_path: Path) -> None:
    kv = stores(tmp_path, limits=SMALL)
    kv.set("default", "a", b"old")
    with pytest.raises(StoreError):
        kv.set("default", "a", b"x" * 65)
    assert kv.get("default", "a") == b"old"
    assert kv.usage() == (1, 4)


@pytest.mark.parametrize("app", ["../evil", "../../etc/passwd", "a/b", "/abs", ".", "..", "", "x\x00y", "A",
                                 "..\\win", "é", "a_b", "a" * 500])
def test_app_names_never_leave_the_root(tmp_path: Path, app: str) -> None:
    root = tmp_path / "kv"
    if not app:
        with pytest.raises(ValueError):
            app_file_name(app)
        return
    name = app_file_name(app)
    assert "/" not in name and "\\" not in name and "\x00" not in name and not name.startswith(".")
    assert len(name.encode()) < 255
    kv = stores(root, app)
    kv.set("default", "k", b"v")
    assert kv.path.parent == root
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kv"]  # nothing written beside the root
    assert {p.name for p in root.iterdir()} <= {name, name + "-wal", name + "-shm"}


def test_file_names_are_distinct_per_app() -> None:
    apps = ["a", "A", "a-b", "a_b", "a.b", "a/b", "a_2fb", "a%2fb", "é", "e", "a" * 500, "a" * 501]
    names = [app_file_name(a) for a in apps]
    assert len(set(names)) == len(apps)
    assert app_file_name("my-app-1") == "my-app-1.sqlite"  # manifest names (RFC 1123) map to themselves


def test_apps_are_isolated(tmp_path: Path) -> None:
    host = KeyValueHost(tmp_path)
    a, b = host.stores("a"), host.stores("b")
    a.set("default", "secret", b"of a")
    assert b.get("default", "secret") is None
    assert b.get_keys("default") == []
    b.set("default", "secret", b"of b")
    assert a.get("default", "secret") == b"of a"
    assert a.path != b.path
    assert host.stores("a") is a  # one object per app: one connection per thread, not per handler
    host.close()


def test_data_outlives_the_store_object(tmp_path: Path) -> None:
    kv = stores(tmp_path)
    kv.set("default", "k", b"v")
    kv.close()
    again = stores(tmp_path)
    assert again.get("default", "k") == b"v"
    assert again.usage() == (1, 2)


def test_wal_full_sync_and_owner_only_file(tmp_path: Path) -> None:
    kv = stores(tmp_path)
    kv.set("default", "k", b"v")
    with kv._conn() as conn:
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: fsynced before the call returns
    with sqlite3.connect(kv.path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # WAL is a property of the file
    assert stat.S_IMODE(os.stat(kv.path).st_mode) == 0o600


def test_a_file_that_is_not_a_database_is_a_clean_error(tmp_path: Path) -> None:
    (tmp_path / app_file_name("app")).write_bytes(b"this is not sqlite " * 100)
    kv = stores(tmp_path)
    with pytest.raises(StoreError, match="key-value store of app 'app'") as info:
        kv.set("default", "k", b"v")
    assert info.value.kind == "other"


def test_a_symlink_in_place_of_the_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    root = tmp_path / "kv"
    root.mkdir()
    (root / app_file_name("app")).symlink_to(target)
    with pytest.raises(StoreError, match="cannot be opened"):
        stores(root).set("default", "k", b"v")
    assert target.read_bytes() == b""


def test_threads_share_the_limits(tmp_path: Path) -> None:
    """8 threads race to write 100 keys each into a store that may hold 300: exactly 300 are kept."""
    kv = stores(tmp_path, limits=KvLimits(max_keys=300, busy_timeout=10))
    refused: list[int] = []

    def writer(n: int) -> None:
        for i in range(100):
            try:
                kv.set("default", f"t{n}-{i}", b"v")
            except StoreError as exc:
                assert "the limit (300)" in exc.message
                refused.append(1)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert kv.usage() == (300, 300 * 1 + sum(len(k) for k in kv.get_keys("default")))
    assert len(kv.get_keys("default")) == 300
    assert len(refused) == 500
    assert kv._open <= KvLimits().connections  # 8 threads, at most 4 connections (file descriptors) per app


def test_a_pool_that_stays_busy_is_a_clean_error(tmp_path: Path) -> None:
    kv = stores(tmp_path, limits=KvLimits(connections=1, busy_timeout=0.2))
    kv.set("default", "k", b"v")
    # The only connection held (as by a thread stuck in a long operation):
    with kv._conn(), pytest.raises(StoreError, match="is busy: all 1 connections in use"):
        kv.get("default", "k")
    assert kv.get("default", "k") == b"v"


def test_a_writer_in_another_process_holding_the_lock_is_a_clean_error(tmp_path: Path) -> None:
    kv = stores(tmp_path, limits=KvLimits(busy_timeout=0.3))
    kv.set("default", "k", b"v")
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(kv.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreError, match="is busy: database is locked"):
            kv.set("default", "k", b"w")
        assert kv.get("default", "k") == b"v"  # readers are not blocked by a writer under WAL
    finally:
        holder.kill()
        holder.wait(timeout=10)
    kv.set("default", "k", b"w")  # the lock died with the process
    assert kv.get("default", "k") == b"w"


def test_a_callers_wait_bounds_the_lock_wait(tmp_path: Path) -> None:
    """The request's time left (``wait``) caps the wait for another process's lock, below busy_timeout."""
    kv = stores(tmp_path, limits=KvLimits(busy_timeout=20))
    kv.set("default", "k", b"v")
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(kv.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with pytest.raises(StoreError, match="is busy"):
            kv.set("default", "k", b"w", wait=0.3)
        assert time.monotonic() - started < 5  # not the 20 s of busy_timeout
    finally:
        holder.kill()
        holder.wait(timeout=10)


_HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(60)
"""


_WRITER = """
import sys
from wasmlet.guest._spin import KeyValueStores, KvLimits
kv = KeyValueStores(sys.argv[1], "app", KvLimits(busy_timeout=20))
for i in range(int(sys.argv[3])):
    kv.set("default", f"{sys.argv[2]}-{i}", sys.argv[2].encode())
    kv.set("default", "shared", sys.argv[2].encode())
"""


def test_processes_share_one_store(tmp_path: Path) -> None:
    """Four processes write at once (as worker processes do); every write lands and the counts agree."""
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), f"p{n}", "40"]) for n in range(4)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    kv = stores(tmp_path)
    keys = kv.get_keys("default")
    assert len(keys) == 4 * 40 + 1
    assert all(kv.get("default", f"p{n}-{i}") == f"p{n}".encode() for n in range(4) for i in range(40))
    assert kv.get("default", "shared") in {b"p0", b"p1", b"p2", b"p3"}
    assert kv.usage() == (161, sum(len(k) for k in keys) + 161 * 2)


def test_a_write_acknowledged_survives_a_killed_process(tmp_path: Path) -> None:
    """The writer is killed (SIGKILL) right after set() returns: the value is there."""
    script = _WRITER + "\nprint('done', flush=True)\nimport time; time.sleep(60)\n"
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path), "k", "3"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "done"
    proc.kill()
    proc.wait(timeout=10)
    kv = stores(tmp_path)
    assert [kv.get("default", f"k-{i}") for i in range(3)] == [b"k"] * 3
