"""The control plane's durable state: app versions, what each app serves, and a generation.

One SQLite database, ``<state dir>/state.db``, in WAL mode with ``synchronous=FULL``:
a mutating method returns only after its transaction has committed, and a
committed transaction survives the process being killed (and, with FULL, the
machine losing power). One process owns a state directory at a time: the store
holds an exclusive ``flock`` on ``<state dir>/lock`` for its whole life.

Tables::

    versions(id, app, number, spec_json, digest, component, created)   every version ever deployed
    apps(app, stable, previous, canary, canary_weight, canary_header, updated)
    meta(key, value)                                            the generation

A version has two numbers. ``id`` comes from ``AUTOINCREMENT`` and is unique
across the host: it is the key the ``apps`` table, the plan and the workers use.
``number`` counts the versions of one app (1, 2, 3...): it is what people see
(``wasmlet apps``, ``deploy``, the admin API), so a new app starts at version 1
whatever else the host runs. Neither is ever reused, not even after the app is
deleted: ``delete`` removes the app's row and keeps its version rows, ``history``
still lists them, and a later deploy of the same name starts a fresh app (a new
version, no previous) whose numbers continue after the old ones. A database
from before per-app numbers keeps the numbers it showed (``number = id``).

``spec_json`` is stored in canonical form (sorted keys, compact separators),
so two documents that differ only in key order or whitespace are the same spec.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from .._errors import NoCanary, NothingToRollBack, StateError, StateLocked, UnknownApp, UnknownVersion

log = logging.getLogger("wasmlet.control")

# Files wasmlet keeps beside state.db: their presence means state was expected here.
_COMPANIONS = ("admin-token", "blobs", "logs", "state.db-wal")

__all__ = [
    "AppState",
    "DeployItem",
    "DeployResult",
    "NoCanary",
    "NothingToRollBack",
    "SCHEMA_VERSION",
    "StateError",
    "StateLocked",
    "StateStore",
    "UnknownApp",
    "UnknownVersion",
    "Version",
    "canonical_spec_json",
    "parse_canary_header",
    "parse_deploy_arguments",
    "validate_app_name",
]


@dataclasses.dataclass(frozen=True)
class Version:
    id: int  # unique across the host: the key of the plan and of the workers' loaded versions
    app: str
    spec_json: str
    digest: str
    component: bool
    created: float
    number: int  # the app's own version number, 1, 2, 3...: what people see


@dataclasses.dataclass(frozen=True)
class AppState:
    app: str
    stable: Version
    previous: Version | None
    canary: Version | None
    canary_weight: int
    canary_header: str | None
    updated: float


@dataclasses.dataclass(frozen=True)
class DeployItem:
    app: str  # "app/component"
    spec_json: str
    digest: str
    component: bool


@dataclasses.dataclass(frozen=True)
class DeployResult:
    app: str
    version: int  # the version the app now has for this item (stable, or canary for a canary deploy): its id
    changed: bool
    number: int  # the same version's per-app number, what people see


# --- validation ------------------------------------------------------------------------------

_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_APP_NAME = re.compile(rf"^{_LABEL}/{_LABEL}$")
# RFC 9110 token (a header field name).
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def validate_app_name(app: object, field: str = "app") -> str:
    """Return ``app`` if it is an ``app/component`` name (two RFC 1123 labels), else raise StateError."""
    if not isinstance(app, str) or not _APP_NAME.match(app):
        raise StateError(f"{field}: expected an 'app/component' name (two lower-case RFC 1123 labels), got {app!r}")
    return app


def _validate_weight(weight: object) -> int:
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
        raise StateError(f"canary_weight: expected an integer from 0 to 100, got {weight!r}")
    return weight


def parse_deploy_arguments(items: object, canary_weight: object,
                           canary_header: object) -> tuple[bool, int, str | None]:
    """Check what every state backend's ``deploy`` is given: at least one item, a canary
    weight of 0-100, a ``Name: value`` header. Return (is a canary, weight, normalised header)."""
    canary = canary_weight is not None or canary_header is not None
    weight = 0 if canary_weight is None else _validate_weight(canary_weight)
    header = None
    if canary_header is not None:
        name, value = parse_canary_header(canary_header)
        header = f"{name}: {value}"
    if not isinstance(items, list | tuple) or not items:
        raise StateError("items: expected at least one component to deploy")
    return canary, weight, header


def parse_canary_header(header: object) -> tuple[str, str]:
    """Split a ``Name: value`` canary header into (name, value); raise StateError naming the field."""
    if not isinstance(header, str) or ":" not in header:
        raise StateError(f"canary_header: expected 'Name: value', got {header!r}")
    name, _, value = header.partition(":")
    value = value.strip(" \t")
    if not _TOKEN.match(name):
        raise StateError(f"canary_header: {name!r} is not a valid header name (an RFC 9110 token)")
    if not value or any(ch in value for ch in "\r\n\0"):
        raise StateError(f"canary_header: expected a non-empty value on one line, got {header!r}")
    return name, value


def canonical_spec_json(spec_json: object, field: str) -> str:
    """A stored spec in one spelling (sorted keys, no spaces), so that equal specs compare equal;
    StateError naming ``field`` for anything that is not a JSON object."""
    if not isinstance(spec_json, str):
        raise StateError(f"{field}: expected a JSON string, got {type(spec_json).__name__}")
    try:
        value = json.loads(spec_json)
    except ValueError as exc:
        raise StateError(f"{field}: not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise StateError(f"{field}: expected a JSON object")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --- schema ----------------------------------------------------------------------------------

# Each migration takes the schema from version i to i + 1; it runs inside the opening transaction
# (one statement per execute: ``executescript`` would commit half-way).
_MIGRATIONS: list[Sequence[str]] = [
    (
        """CREATE TABLE versions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            app TEXT NOT NULL,
            spec_json TEXT NOT NULL,
            digest TEXT NOT NULL,
            component INTEGER NOT NULL CHECK (component IN (0, 1)),
            created REAL NOT NULL
        )""",
        "CREATE INDEX versions_by_app ON versions (app, id)",
        """CREATE TABLE apps (
            app TEXT PRIMARY KEY,
            stable INTEGER NOT NULL REFERENCES versions (id),
            previous INTEGER REFERENCES versions (id),
            canary INTEGER REFERENCES versions (id),
            canary_weight INTEGER NOT NULL DEFAULT 0 CHECK (canary_weight BETWEEN 0 AND 100),
            canary_header TEXT,
            updated REAL NOT NULL
        )""",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        "INSERT INTO meta (key, value) VALUES ('generation', 0)",
    ),
    (
        # Per-app version numbers. Rows written before keep the number they were shown
        # with (their id), so what a log or a script recorded still names the same
        # version; each app's next version continues after its highest number.
        "ALTER TABLE versions ADD COLUMN number INTEGER NOT NULL DEFAULT 0",
        "UPDATE versions SET number = id",
        "CREATE UNIQUE INDEX versions_by_app_number ON versions (app, number)",
    ),
]
SCHEMA_VERSION = len(_MIGRATIONS)

_VERSION_COLUMNS = "id, app, spec_json, digest, component, created, number"


def _version(row: sqlite3.Row | tuple[object, ...]) -> Version:
    vid, app, spec_json, digest, component, created, number = tuple(row)
    assert isinstance(vid, int) and isinstance(app, str) and isinstance(spec_json, str)
    assert isinstance(digest, str) and isinstance(created, float | int) and isinstance(number, int)
    return Version(vid, app, spec_json, digest, bool(component), float(created), number)


@dataclasses.dataclass
class _Row:
    """An ``apps`` row being edited in a transaction."""

    app: str
    stable: int
    previous: int | None
    canary: int | None
    canary_weight: int
    canary_header: str | None


class StateStore:
    """The durable control-plane state in ``directory``; see the module docstring.

    Thread-safe within one process (every call takes one lock around one connection);
    exclusive across processes (``StateLocked``).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.RLock()
        self._closed = False
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._lock_fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateError(f"cannot use state directory {self.directory}: {exc}") from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise StateLocked(self.directory) from None
        except OSError as exc:
            os.close(self._lock_fd)
            raise StateError(f"cannot lock state directory {self.directory}: {exc}") from exc
        try:
            self._db = self._open()
        except BaseException:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            raise

    def _open(self) -> sqlite3.Connection:
        path = self.directory / "state.db"
        self._say_if_lost(path)
        try:
            # isolation_level=None: no implicit transactions; every write is an explicit BEGIN IMMEDIATE..COMMIT.
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StateError(f"cannot open {path}: {exc}") from exc
        try:
            with contextlib.suppress(OSError):
                os.chmod(path, 0o600)
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StateError(f"{path}: cannot switch to WAL mode (got {mode!r})")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=5000")
            self._migrate(db, path)
            self._fsync_directory()  # the database file's directory entry is durable too
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StateError(f"{path}: {exc}") from exc
        except BaseException:
            db.close()
            raise
        return db

    def _say_if_lost(self, path: Path) -> None:
        """Warn when state.db is missing or empty in a folder that has held state: starting
        empty is then a loss (a deleted or truncated file), not a first start."""
        try:
            size: int | None = path.stat().st_size
        except FileNotFoundError:
            size = None
        except OSError:
            return  # connect() reports it
        if size:
            return
        found = [name for name in _COMPANIONS if (self.directory / name).exists()]
        if found:
            log.warning("%s is %s, but %s has other wasmlet files (%s): the recorded apps are gone; starting "
                        "with none", path, "missing" if size is None else "empty", self.directory, ", ".join(found))

    def _migrate(self, db: sqlite3.Connection, path: Path) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            current = int(db.execute("PRAGMA user_version").fetchone()[0])
            if current > SCHEMA_VERSION:
                raise StateError(
                    f"{path}: schema version {current} was written by a newer wasmlet (this one knows {SCHEMA_VERSION})"
                )
            for index in range(current, SCHEMA_VERSION):
                for statement in _MIGRATIONS[index]:
                    db.execute(statement)
            if current != SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _fsync_directory(self) -> None:
        with contextlib.suppress(OSError):
            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database and release the directory lock (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._db.close()
            finally:
                with contextlib.suppress(OSError):
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise StateError("the state store is closed")
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StateError(f"state database {self.directory / 'state.db'}: {exc}") from exc

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed (durably) on success, rolled back on any exception."""
        with self._reading() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            try:
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    @staticmethod
    def _bump(db: sqlite3.Connection) -> None:
        db.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")

    @staticmethod
    def _get_version(db: sqlite3.Connection, version_id: int) -> Version:
        row = db.execute(f"SELECT {_VERSION_COLUMNS} FROM versions WHERE id = ?", (version_id,)).fetchone()
        if row is None:
            raise UnknownVersion(version_id)
        return _version(row)

    @staticmethod
    def _get_row(db: sqlite3.Connection, app: str) -> _Row | None:
        row = db.execute(
            "SELECT app, stable, previous, canary, canary_weight, canary_header FROM apps WHERE app = ?", (app,)
        ).fetchone()
        return None if row is None else _Row(*row)

    def _require_row(self, db: sqlite3.Connection, app: str) -> _Row:
        validate_app_name(app)
        row = self._get_row(db, app)
        if row is None:
            raise UnknownApp(app)
        return row

    @staticmethod
    def _put_row(db: sqlite3.Connection, row: _Row, now: float) -> None:
        db.execute(
            """INSERT INTO apps (app, stable, previous, canary, canary_weight, canary_header, updated)
               VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (app) DO UPDATE SET stable = excluded.stable, previous = excluded.previous,
                   canary = excluded.canary, canary_weight = excluded.canary_weight,
                   canary_header = excluded.canary_header, updated = excluded.updated""",
            (row.app, row.stable, row.previous, row.canary, row.canary_weight, row.canary_header, now),
        )

    def _state(self, db: sqlite3.Connection, app: str) -> AppState:
        row = db.execute(
            "SELECT app, stable, previous, canary, canary_weight, canary_header, updated FROM apps WHERE app = ?",
            (app,),
        ).fetchone()
        if row is None:
            raise UnknownApp(app)
        name, stable, previous, canary, weight, header, updated = row
        return AppState(
            app=name,
            stable=self._get_version(db, stable),
            previous=None if previous is None else self._get_version(db, previous),
            canary=None if canary is None else self._get_version(db, canary),
            canary_weight=int(weight),
            canary_header=header,
            updated=float(updated),
        )

    # --- mutations ---------------------------------------------------------------------------

    def deploy(
        self,
        items: list[DeployItem],
        canary_weight: int | None = None,
        canary_header: str | None = None,
    ) -> list[DeployResult]:
        """Record a manifest's components in one durable transaction; see the rules below.

        For each item:

        - no canary requested: if the item is the app's stable (same canonical spec and digest),
          nothing changes (``changed=False``), unless a canary is in flight, which is cleared
          (``changed=True``, no new version). Otherwise a new version becomes stable, the old
          stable becomes previous, and any canary is cleared.
        - canary requested (``canary_weight`` and/or ``canary_header``): an item equal to the
          stable is left alone (``changed=False``: a manifest may change one component of many);
          an item equal to the current canary only has its weight/header updated (``changed``
          if they differ); anything else becomes a new version as the canary. An app with no
          stable yet cannot take a canary (StateError).

        The generation goes up by one if anything changed. Nothing is written on any error.
        """
        canary, weight, header = parse_deploy_arguments(items, canary_weight, canary_header)
        prepared: list[tuple[DeployItem, str]] = []
        seen: set[str] = set()
        for index, item in enumerate(items):
            where = f"items[{index}]"
            validate_app_name(item.app, f"{where}.app")
            if item.app in seen:
                raise StateError(f"{where}.app: {item.app!r} appears twice in one deploy")
            seen.add(item.app)
            spec = canonical_spec_json(item.spec_json, f"{where}.spec_json")
            if not isinstance(item.digest, str) or not item.digest:
                raise StateError(f"{where}.digest: expected a non-empty digest string, got {item.digest!r}")
            if not isinstance(item.component, bool):
                raise StateError(f"{where}.component: expected a boolean, got {item.component!r}")
            prepared.append((item, spec))

        results: list[DeployResult] = []
        with self._writing() as db:
            now = time.time()
            changed_any = False
            for item, spec in prepared:
                row = self._get_row(db, item.app)
                result, changed = self._deploy_one(db, row, item, spec, canary, weight, header, now)
                results.append(result)
                changed_any |= changed
            if changed_any:
                self._bump(db)
        return results

    def _deploy_one(
        self,
        db: sqlite3.Connection,
        row: _Row | None,
        item: DeployItem,
        spec: str,
        canary: bool,
        weight: int,
        header: str | None,
        now: float,
    ) -> tuple[DeployResult, bool]:
        def same(version_id: int | None) -> bool:
            if version_id is None:
                return False
            v = self._get_version(db, version_id)
            return (v.spec_json, v.digest, v.component) == (spec, item.digest, item.component)

        def insert() -> int:
            # The app's next number, over every version it ever had (deleted ones too: never reused).
            # Read and written in this IMMEDIATE transaction, so no other writer can take it.
            cursor = db.execute(
                """INSERT INTO versions (app, number, spec_json, digest, component, created)
                   VALUES (?, (SELECT COALESCE(MAX(number), 0) + 1 FROM versions WHERE app = ?), ?, ?, ?, ?)""",
                (item.app, item.app, spec, item.digest, int(item.component), now),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

        def result(version_id: int, changed: bool) -> DeployResult:
            return DeployResult(item.app, version_id, changed, self._get_version(db, version_id).number)

        if row is None:
            if canary:
                raise StateError(
                    f"{item.app}: the first deploy of an app cannot be a canary (there is no stable version yet)"
                )
            row = _Row(item.app, insert(), None, None, 0, None)
            self._put_row(db, row, now)
            return result(row.stable, True), True

        if not canary:
            if same(row.stable):
                if row.canary is None:
                    return result(row.stable, False), False
                row.canary, row.canary_weight, row.canary_header = None, 0, None
            else:
                row.previous, row.stable = row.stable, insert()
                row.canary, row.canary_weight, row.canary_header = None, 0, None
            self._put_row(db, row, now)
            return result(row.stable, True), True

        if same(row.stable):
            return result(row.stable, False), False
        if same(row.canary):
            assert row.canary is not None
            if (row.canary_weight, row.canary_header) == (weight, header):
                return result(row.canary, False), False
        else:
            row.canary = insert()
        row.canary_weight, row.canary_header = weight, header
        self._put_row(db, row, now)
        return result(row.canary, True), True

    def promote(self, app: str) -> AppState:
        """The canary becomes stable; the old stable becomes previous. NoCanary if there is none."""
        with self._writing() as db:
            row = self._require_row(db, app)
            if row.canary is None:
                raise NoCanary(app)
            row.previous, row.stable = row.stable, row.canary
            row.canary, row.canary_weight, row.canary_header = None, 0, None
            self._put_row(db, row, time.time())
            self._bump(db)
            return self._state(db, app)

    def abort(self, app: str) -> AppState:
        """Drop the canary (its version stays in the history). NoCanary if there is none."""
        with self._writing() as db:
            row = self._require_row(db, app)
            if row.canary is None:
                raise NoCanary(app)
            row.canary, row.canary_weight, row.canary_header = None, 0, None
            self._put_row(db, row, time.time())
            self._bump(db)
            return self._state(db, app)

    def rollback(self, app: str) -> AppState:
        """Swap stable and previous (twice is a no-op) and drop any canary. NothingToRollBack without previous."""
        with self._writing() as db:
            row = self._require_row(db, app)
            if row.previous is None:
                raise NothingToRollBack(app)
            row.stable, row.previous = row.previous, row.stable
            row.canary, row.canary_weight, row.canary_header = None, 0, None
            self._put_row(db, row, time.time())
            self._bump(db)
            return self._state(db, app)

    def delete(self, app: str) -> None:
        """Stop serving ``app``: its row goes, its versions stay (``history``). UnknownApp if not deployed."""
        with self._writing() as db:
            self._require_row(db, app)
            db.execute("DELETE FROM apps WHERE app = ?", (app,))
            self._bump(db)

    # --- queries -----------------------------------------------------------------------------

    def apps(self) -> list[AppState]:
        """Every deployed app, sorted by name."""
        with self._reading() as db:
            names = [r[0] for r in db.execute("SELECT app FROM apps ORDER BY app")]
            return [self._state(db, name) for name in names]

    def app(self, app: str) -> AppState:
        with self._reading() as db:
            validate_app_name(app)
            return self._state(db, app)

    def generation(self) -> int:
        """A counter that goes up by one with every committed change (persisted)."""
        with self._reading() as db:
            return int(db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])

    def history(self, app: str, limit: int = 20) -> list[Version]:
        """The app's versions, newest first, deleted apps included. UnknownApp if it never had one."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise StateError(f"limit: expected a positive integer, got {limit!r}")
        with self._reading() as db:
            validate_app_name(app)
            rows = db.execute(
                f"SELECT {_VERSION_COLUMNS} FROM versions WHERE app = ? ORDER BY id DESC LIMIT ?", (app, limit)
            ).fetchall()
            if not rows:
                raise UnknownApp(app)
            return [_version(r) for r in rows]

