"""An app's key-value store on one host: one SQLite file per app, with stated limits.

Pure storage: no wasmtime here (``_keyvalue`` binds it to ``fermyon:spin/key-value``).

* **Isolation.** Each app has its own file, ``ROOT/<app>.sqlite``, and a
  store object only ever opens its own: app A cannot name B's keys. The file
  name is the app name with every byte outside ``[a-z0-9-]`` escaped as
  ``_XX`` (``_`` included), so it never holds ``/``, ``.`` or NUL and no two
  apps share a file; manifest app names (RFC 1123 labels) map to themselves.
* **Durability.** WAL journal with ``synchronous=FULL``: a ``set`` or
  ``delete`` has reached the disk (the WAL is fsynced) when the call returns
  (https://www.sqlite.org/pragma.html#pragma_synchronous).
* **Several processes and threads.** Each app has a small pool of
  connections per process (``KvLimits.connections``; a connection serves one
  thread at a time), so open files stay bounded however many threads serve;
  writers take the write lock up front (``BEGIN IMMEDIATE``) so the limit check and the write
  are one transaction, and wait at most ``KvLimits.busy_timeout`` for
  another writer (worker processes share the file) before failing with
  ``StoreError``.
* **Limits** (``KvLimits``): key and value size, keys and bytes per app (keys
  plus values, counted in a ``usage`` row kept in the same transaction as the
  write), so ``get_keys`` is bounded by ``max_keys`` too.
* **Deleted with the app** (``remove_app_store``, called by the control plane
  once the delete is durable). A store object remembers the file it opened
  (device, inode): once that file is gone it never makes a new one (an
  in-flight request of the deleted app keeps its open connections, on the
  unlinked file, and gets ``other`` for anything needing a new one), and
  ``stale`` tells ``KeyValueHost`` to start a re-deployed app on a new, empty file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

__all__ = [
    "DEFAULT_LABEL", "DEFAULT_LIMITS", "KeyValueStores", "KvLimits", "StoreError", "app_file_name",
    "remove_app_store",
]

DEFAULT_LABEL = "default"
_KEEP = re.compile(r"[a-z0-9-]")
_MAX_FILE_STEM = 120

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS kv (label TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, "
    "PRIMARY KEY (label, key)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS usage (id INTEGER PRIMARY KEY CHECK (id = 0), keys INTEGER NOT NULL, "
    "bytes INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO usage (id, keys, bytes) VALUES (0, 0, 0)",
)
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class KvLimits:
    """What one app may keep. Sizes are bytes (a key counts as its UTF-8 encoding)."""

    max_key: int = 256
    max_value: int = 1 << 20
    max_keys: int = 10_000  # per app, all labels; also bounds get-keys
    max_bytes: int = 64 << 20  # per app: keys plus values
    max_open: int = 64  # stores open at once in one request (store-table-full past it)
    busy_timeout: float = 2.0  # seconds a write waits for another writer (another worker process)
    connections: int = 4  # SQLite connections per app and process; more threads wait for one


DEFAULT_LIMITS = KvLimits()


class StoreError(Exception):
    """A key-value operation refused; ``kind`` is the WIT error case (``other``, ``no-such-store``, ...)."""

    def __init__(self, kind: str, message: str = "") -> None:
        super().__init__(message or kind)
        self.kind = kind
        self.message = message


def app_file_name(app: str) -> str:
    """The database file of ``app``: injective, and safe as one path component."""
    if not app:
        raise ValueError("an app name is required for its key-value store")
    stem = "".join(c if _KEEP.fullmatch(c) else "".join(f"_{b:02x}" for b in c.encode()) for c in app)
    if len(stem) > _MAX_FILE_STEM:  # long names: a prefix to read, the hash to tell them apart
        stem = f"{stem[:64]}_{hashlib.sha256(app.encode()).hexdigest()}"
    return f"{stem}.sqlite"


# The database and what SQLite keeps beside it (https://www.sqlite.org/tempfiles.html).
_SUFFIXES = ("", "-wal", "-shm", "-journal")


def remove_app_store(root: Path | str, app: str) -> list[str]:
    """Remove ``app``'s key-value file and SQLite's companions from ``root``; the names removed.

    Only ever inside ``root``: the name is ``app_file_name`` (one path
    component), ``root`` is opened with ``O_NOFOLLOW`` (a symlink in its place
    is refused) and each file is unlinked relative to it, which removes a
    symlink, never what it points to. A connection still open on the file (an
    in-flight request) keeps reading the unlinked file; nothing reaches it
    afterwards. ``OSError`` if ``root`` cannot be opened or a file not removed
    (a missing one is fine).
    """
    name = app_file_name(app)
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return []  # no app ever had a store here
    removed = []
    try:
        for suffix in _SUFFIXES:
            try:
                os.unlink(name + suffix, dir_fd=fd)
            except FileNotFoundError:
                continue
            removed.append(name + suffix)
        if removed:
            os.fsync(fd)  # the removal itself survives a crash
    finally:
        os.close(fd)
    return removed


class KeyValueStores:
    """The key-value stores of one app, in ``root/<app>.sqlite``; the file is made on first use.

    Labels other than ``labels`` (default: only ``"default"``) are
    ``no-such-store``. Thread-safe: an operation borrows a connection from the app's pool.
    """

    def __init__(self, root: Path | str, app: str, limits: KvLimits = DEFAULT_LIMITS,
                 labels: frozenset[str] = frozenset({DEFAULT_LABEL})) -> None:
        self.root = Path(root)
        self.app = app
        self.limits = limits
        self.labels = labels
        self.path = self.root / app_file_name(app)
        self._idle: list[sqlite3.Connection] = []
        self._open = 0  # connections made and not closed, idle or in use
        self._cond = threading.Condition()
        self._file: tuple[int, int] | None = None  # (st_dev, st_ino) of the file first opened

    def stale(self) -> bool:
        """True once the file this object opened is gone or replaced (the app was deleted)."""
        if self._file is None:
            return False
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._file

    # -- connections --------------------------------------------------------------------------

    @contextmanager
    def _conn(self, wait: float | None = None) -> Iterator[sqlite3.Connection]:
        """A connection of this app's pool, for one operation (at most ``limits.connections`` at once).

        ``wait``: the most this operation may wait, for a connection and then
        for SQLite's locks (the caller's deadline); ``limits.busy_timeout`` at most.
        """
        wait = self.limits.busy_timeout if wait is None else max(0.0, min(wait, self.limits.busy_timeout))
        deadline = time.monotonic() + wait
        conn = self._checkout(deadline)
        try:
            left = max(0.0, deadline - time.monotonic())
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(left * 1000)}")
            except sqlite3.Error as exc:
                raise StoreError("other", f"key-value store of app {self.app!r}: {exc}") from exc
            yield conn
        finally:
            broken = conn.in_transaction  # a failed ROLLBACK: never hand it to the next caller
            if broken:
                conn.close()
            with self._cond:
                if broken:
                    self._open -= 1
                else:
                    self._idle.append(conn)
                self._cond.notify()

    def _checkout(self, deadline: float) -> sqlite3.Connection:
        with self._cond:
            while not self._idle and self._open >= self.limits.connections:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StoreError("other", f"key-value store of app {self.app!r} is busy: all "
                                     f"{self.limits.connections} connections in use")
                self._cond.wait(left)
            if self._idle:
                return self._idle.pop()
            self._open += 1
        try:
            return self._connect()
        except BaseException:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise

    def _connect(self) -> sqlite3.Connection:
        conn = None
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Created owner-only before SQLite opens it: values may be secrets. O_NOFOLLOW: a
            # symlink planted in its place is refused, not followed. Created only the first time:
            # once this object's file is gone, the app was deleted and is not brought back.
            flags = os.O_RDWR | os.O_NOFOLLOW | (os.O_CREAT if self._file is None else 0)
            fd = os.open(self.path, flags, 0o600)
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if self._file is not None and (st.st_dev, st.st_ino) != self._file:
                raise OSError(f"{self.path} is not the file this app opened (the app was deleted)")
            self._file = (st.st_dev, st.st_ino)
            # check_same_thread=False: a pooled connection serves one thread at a time, not always the same one.
            conn = sqlite3.connect(self.path, timeout=self.limits.busy_timeout, isolation_level=None,
                                   check_same_thread=False)
            self._use_wal(conn)
            conn.execute("PRAGMA synchronous=FULL")
            self._write_with(conn, lambda c: [c.execute(statement) for statement in _SCHEMA])
        except (OSError, sqlite3.Error, StoreError) as exc:
            if conn is not None:
                conn.close()
            reason = exc.message if isinstance(exc, StoreError) else str(exc)
            raise StoreError("other", f"key-value store of app {self.app!r} cannot be opened: {reason}") from exc
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        # Switching a new database to WAL takes a lock for which SQLite does not call the busy
        # handler, so connections opening a new store at once (threads, or worker processes) get
        # "database is locked" at once rather than after busy_timeout: try again until then.
        deadline = time.monotonic() + self.limits.busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(0.002)

    def close(self) -> None:
        """Close the idle connections (the owner is done with the app; a later call opens new ones)."""
        with self._cond:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for conn in idle:
            conn.close()

    # -- the operations of fermyon:spin/key-value --------------------------------------------

    def check_label(self, label: str) -> None:
        if label not in self.labels:
            raise StoreError("no-such-store", f"no key-value store {label!r} (this host has: "
                             f"{', '.join(sorted(self.labels))})")

    def _key(self, key: str) -> str:
        size = len(key.encode())
        if size > self.limits.max_key:
            raise StoreError("other", f"key-value: the key is {size} bytes, more than the limit of "
                             f"{self.limits.max_key}")
        return key

    def get(self, label: str, key: str, wait: float | None = None) -> bytes | None:
        self.check_label(label)
        row = self._run(lambda c: c.execute("SELECT value FROM kv WHERE label = ? AND key = ?",
                                            (label, self._key(key))).fetchone(), wait)
        return None if row is None else bytes(row[0])

    def exists(self, label: str, key: str, wait: float | None = None) -> bool:
        self.check_label(label)
        row = self._run(lambda c: c.execute("SELECT 1 FROM kv WHERE label = ? AND key = ?",
                                            (label, self._key(key))).fetchone(), wait)
        return row is not None

    def get_keys(self, label: str, wait: float | None = None) -> list[str]:
        self.check_label(label)
        rows = self._run(lambda c: c.execute("SELECT key FROM kv WHERE label = ? ORDER BY key LIMIT ?",
                                             (label, self.limits.max_keys)).fetchall(), wait)
        return [str(r[0]) for r in rows]

    def set(self, label: str, key: str, value: bytes, wait: float | None = None) -> None:
        self.check_label(label)
        self._key(key)
        if len(value) > self.limits.max_value:
            raise StoreError("other", f"key-value: the value is {len(value)} bytes, more than the limit of "
                             f"{self.limits.max_value}")
        self._write(lambda c: self._set(c, label, key, bytes(value)), wait)

    def delete(self, label: str, key: str, wait: float | None = None) -> None:
        self.check_label(label)
        self._key(key)
        self._write(lambda c: self._delete(c, label, key), wait)

    def usage(self) -> tuple[int, int]:
        """(keys, bytes) the app holds, over all labels."""
        row = self._run(lambda c: c.execute("SELECT keys, bytes FROM usage WHERE id = 0").fetchone())
        return int(row[0]), int(row[1])

    # -- internals ----------------------------------------------------------------------------

    def _set(self, c: sqlite3.Connection, label: str, key: str, value: bytes) -> None:
        size = len(key.encode())
        old = c.execute("SELECT length(value) FROM kv WHERE label = ? AND key = ?", (label, key)).fetchone()
        keys, used = c.execute("SELECT keys, bytes FROM usage WHERE id = 0").fetchone()
        new_keys = keys + (old is None)
        new_bytes = used - (0 if old is None else size + old[0]) + size + len(value)
        if new_keys > self.limits.max_keys:
            raise StoreError("other", f"key-value: app {self.app!r} holds {keys} keys, the limit "
                             f"({self.limits.max_keys}); delete some first")
        if new_bytes > self.limits.max_bytes:
            raise StoreError("other", f"key-value: this write would make app {self.app!r} hold {new_bytes} "
                             f"bytes, more than the limit of {self.limits.max_bytes}")
        c.execute("INSERT INTO kv (label, key, value) VALUES (?, ?, ?) "
                  "ON CONFLICT (label, key) DO UPDATE SET value = excluded.value", (label, key, value))
        c.execute("UPDATE usage SET keys = ?, bytes = ? WHERE id = 0", (new_keys, new_bytes))

    def _delete(self, c: sqlite3.Connection, label: str, key: str) -> None:
        old = c.execute("SELECT length(value) FROM kv WHERE label = ? AND key = ?", (label, key)).fetchone()
        if old is None:
            return
        size = len(key.encode()) + old[0]
        c.execute("DELETE FROM kv WHERE label = ? AND key = ?", (label, key))
        c.execute("UPDATE usage SET keys = keys - 1, bytes = bytes - ? WHERE id = 0", (size,))

    def _run(self, op: Callable[[sqlite3.Connection], T], wait: float | None = None) -> T:
        try:
            with self._conn(wait) as conn:
                return op(conn)
        except sqlite3.Error as exc:
            raise StoreError("other", f"key-value store of app {self.app!r}: {exc}") from exc

    def _write(self, op: Callable[[sqlite3.Connection], object], wait: float | None = None) -> None:
        with self._conn(wait) as conn:
            self._write_with(conn, op)

    def _write_with(self, conn: sqlite3.Connection, op: Callable[[sqlite3.Connection], object]) -> None:
        """``op`` in one write transaction: the limit checks and the write see the same state."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError("other", f"key-value store of app {self.app!r} is busy: {exc}") from exc
        try:
            op(conn)
            conn.execute("COMMIT")
        except BaseException as exc:
            with suppress(sqlite3.Error):  # a connection that cannot even roll back: the error below says why
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError("other", f"key-value store of app {self.app!r}: {exc}") from exc
            raise
