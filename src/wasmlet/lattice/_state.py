"""``LatticeState``: the control plane's state backend over the lattice's JetStream key-value bucket.

Same interface and rules as ``StateStore`` (``wasmlet.control.StateBackend``),
so every host's ``ControlPlane`` and admin API work unchanged, against the one
desired state all hosts share (``_desired`` for the document).

Writes are optimistic: read the document and its revision from the stream
leader, apply the change, write it back with ``update(last=revision)``; if
another host wrote in between, JetStream refuses (wrong last sequence) and the
change is made again on the newer document, up to ``ATTEMPTS`` times. A call
returns only once JetStream has acknowledged the write, which it does once the
stream's quorum (R1: the server; R3: two of three) has stored it. The module
bytes of a deploy are put in the object store (``_modules``) and the version
records written before the document that names them.

Reads come from a copy kept current by a notice each writer publishes on
``PREFIX.desired`` (core NATS) and by polling (``poll``) as a safety net: a
host sees another host's change within milliseconds, or a second at most.

A document from the bucket that does not validate is refused: the last valid
one stays in force, the refusal is logged and counted
(``wasmlet_lattice_rejected{kind="state"}``), and the next change is written
over it. A desired state deleted from the bucket is treated the same way: a
host never drops every app because a key vanished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import nats.js.errors
from pydantic import ValidationError

from .._errors import LatticeError, NoCanary, NothingToRollBack, StateError, UnknownApp
from ..control import (
    AppState,
    DeployItem,
    DeployResult,
    Version,
    canonical_spec_json,
    parse_deploy_arguments,
    validate_app_name,
)
from ..engine import BlobStore
from ..plan import PriorityClass
from ..telemetry import LATTICE_REJECTED
from ._connection import Connection
from ._desired import (
    DESIRED_KEY,
    KEEP_RETIRED,
    AppEntry,
    DesiredState,
    InvalidDocument,
    VersionEntry,
    VersionRecord,
    decode_desired,
    decode_record,
    encode,
    record_key,
)
from ._modules import Modules

__all__ = ["ATTEMPTS", "LatticeState"]

log = logging.getLogger("wasmlet.lattice")

R = TypeVar("R")
ATTEMPTS = 10  # writes tried before a change gives up (the document kept changing under it)
FIRST_READ = 30.0  # seconds a joining host keeps trying to read the desired state


class _Conflict(Exception):
    pass


@dataclasses.dataclass
class _Latest:
    doc: DesiredState
    revision: int  # the revision to write over (that of the refused document, if the last one was refused)


class LatticeState:
    """The desired state of the lattice; see the module docstring. Thread-safe."""

    def __init__(self, connection: Connection, directory: Path, cache_dir: Path | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._conn = connection
        self._lock = threading.RLock()
        self._doc = DesiredState()
        self._revision = 0  # of self._doc
        self._refused = 0  # the newest revision refused (invalid), if newer than self._revision
        self._records: dict[int, VersionRecord | str] = {}  # version id -> record, or why it does not load
        self.modules = Modules(connection, BlobStore(self.directory, durable=True), cache_dir)
        self.listeners: list[Callable[[], None]] = []  # told (on the lattice's loop) when the document changed
        self._notice = f"{connection.link.prefix}.desired"
        self._conn.call(self._subscribe(), what="subscribe to desired-state notices")
        deadline = time.monotonic() + FIRST_READ
        while True:  # the first read, as the buckets' opening, may meet a stream still electing its leader
            try:
                self.refresh()
                break
            except LatticeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    # Reading the bucket ------------------------------------------------------
    async def _subscribe(self) -> None:
        async def noticed(msg: object) -> None:
            await self.poll()

        await self._conn.nc.subscribe(self._notice, cb=noticed)

    async def _fetch(self) -> tuple[DesiredState | None, int, str]:
        """The latest document from the stream leader: (document or None, revision, why it was refused)."""
        kv = self._conn.desired
        assert kv is not None
        try:
            entry = await kv.get(DESIRED_KEY)
        except nats.js.errors.KeyNotFoundError as exc:
            revision = getattr(getattr(exc, "entry", None), "revision", None) or 0
            return (None, revision, "the key was deleted") if revision else (DesiredState(), 0, "")
        try:
            return decode_desired(entry.value or b""), entry.revision or 0, ""
        except InvalidDocument as exc:
            return None, entry.revision or 0, str(exc)

    async def poll(self) -> None:
        """Bring the copy up to date (on the lattice's loop); tell the listeners if it changed."""
        try:
            doc, revision, why = await self._fetch()
        except Exception as exc:  # NATS away: the copy stays, the next poll tries again
            log.debug("lattice: cannot read the desired state: %s", exc)
            return
        if self._accept(doc, revision, why):
            for listener in list(self.listeners):
                listener()

    def _accept(self, doc: DesiredState | None, revision: int, why: str) -> bool:
        with self._lock:
            if revision and revision <= max(self._revision, self._refused):
                return False
            if doc is None:
                self._refused = revision
                LATTICE_REJECTED.labels("state").inc()
                log.error("lattice: refused the desired state at revision %d (%s); still serving revision %d",
                          revision, why, self._revision)
                return False
            if revision == 0 and self._revision:
                return False
            changed = doc != self._doc
            self._doc, self._revision = doc, revision
            return changed

    def sync(self, timeout: float = 3.0) -> None:
        """``poll`` from a caller's thread (the agent's safety net); a lattice that does not answer is skipped."""
        with contextlib.suppress(LatticeError):
            self._conn.call(self.poll(), timeout, "read the desired state")

    def refresh(self) -> None:
        """Read the latest document now (from a caller's thread)."""
        self._accept(*self._conn.call(self._fetch(), what="read the desired state"))

    def snapshot(self) -> tuple[DesiredState, int]:
        with self._lock:
            return self._doc, self._revision

    @property
    def refused(self) -> int:
        """The newest revision refused as invalid (0: none since the last valid one)."""
        with self._lock:
            return self._refused if self._refused > self._revision else 0

    # Writing -----------------------------------------------------------------
    def _latest(self) -> _Latest:
        doc, revision, why = self._conn.call(self._fetch(), what="read the desired state")
        self._accept(doc, revision, why)
        if doc is None:  # refused: the change is made on the last valid document, written over the bad one
            with self._lock:
                return _Latest(self._doc.model_copy(deep=True), revision)
        return _Latest(doc.model_copy(deep=True), revision)

    async def _write(self, data: bytes, revision: int) -> int:
        kv = self._conn.desired
        assert kv is not None
        try:
            if revision == 0:
                return await kv.create(DESIRED_KEY, data)
            return await kv.update(DESIRED_KEY, data, last=revision)
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise _Conflict from exc

    def _mutate(self, what: str, change: Callable[[DesiredState], R]) -> R:
        """Apply ``change`` (which edits the document in place and returns its result) and write it,
        revision-checked; ``change`` raising changes nothing. ``StateError`` passes through."""
        for attempt in range(ATTEMPTS):
            latest = self._latest()
            before = latest.doc.model_copy(deep=True)
            result = change(latest.doc)
            if latest.doc == before:
                return result
            latest.doc.generation = before.generation + 1
            _prune(latest.doc)
            data = encode(latest.doc)
            try:  # never write what every host would refuse
                decode_desired(data)
            except InvalidDocument as exc:
                raise StateError(f"{what}: refused: {exc}") from exc
            limit = self._conn.nc.max_payload
            if len(data) > limit:
                raise StateError(f"{what}: the desired state would be {len(data)} bytes, more than one NATS message "
                                 f"carries (max_payload {limit}); delete apps, or raise max_payload on the servers")
            try:
                revision = self._conn.call(self._write(data, latest.revision), what=what)
            except _Conflict:
                time.sleep(0.01 * (attempt + 1))
                continue
            except LatticeError as exc:
                raise LatticeError(f"{exc}; the change may or may not have been recorded: check with "
                                   "`wasmlet apps`") from exc
            with self._lock:
                if revision > self._revision:
                    self._doc, self._revision = latest.doc, revision
            self._conn.spawn(self._announce(revision))
            for listener in list(self.listeners):
                listener()
            return result
        raise LatticeError(f"{what}: the desired state changed {ATTEMPTS} times under this change; nothing was "
                           "changed, try again")

    async def _announce(self, revision: int) -> None:
        with contextlib.suppress(Exception):
            await self._conn.nc.publish(self._notice, str(revision).encode())

    def _new_version(self, item: DeployItem, spec: str) -> tuple[int, str]:
        """Write the version record of ``item``: (its stream sequence, the version's id; its key)."""
        try:
            record = VersionRecord(app=item.app, spec_json=spec, digest=item.digest, component=item.component,
                                   created=time.time())
        except ValidationError as exc:
            raise StateError(f"{item.app}: cannot be recorded in the lattice: "
                             f"{'; '.join(e['msg'] for e in exc.errors())}") from exc
        key = record_key(secrets.token_hex(16))
        kv = self._conn.desired
        assert kv is not None
        revision = self._conn.call(kv.put(key, encode(record)), what=f"record a version of {item.app}")
        with self._lock:
            self._records[revision] = record
        return revision, key

    # The StateBackend interface ---------------------------------------------
    def deploy(self, items: list[DeployItem], canary_weight: int | None = None,
               canary_header: str | None = None) -> list[DeployResult]:
        """As ``StateStore.deploy``: one atomic change for every item; see its docstring for the rules."""
        canary, weight, header = parse_deploy_arguments(items, canary_weight, canary_header)
        prepared: list[tuple[DeployItem, str]] = []
        seen: set[str] = set()
        for index, item in enumerate(items):
            where = f"items[{index}]"
            validate_app_name(item.app, f"{where}.app")
            if item.app in seen:
                raise StateError(f"{where}.app: {item.app!r} appears twice in one deploy")
            seen.add(item.app)
            prepared.append((item, canonical_spec_json(item.spec_json, f"{where}.spec_json")))
        # The bytes first: a version is never recorded that a host could not fetch.
        for item, _ in prepared:
            self.modules.upload(item.digest)
        made: dict[tuple[str, str, str, bool], tuple[int, str]] = {}  # written by an earlier attempt: reused

        def version_for(item: DeployItem, spec: str) -> tuple[int, str]:
            key = (item.app, spec, item.digest, item.component)
            if key not in made:
                made[key] = self._new_version(item, spec)
            return made[key]

        def change(doc: DesiredState) -> list[DeployResult]:
            now = time.time()
            return [self._deploy_one(doc, item, spec, canary, weight, header, now, version_for)
                    for item, spec in prepared]

        return self._mutate("deploy", change)

    def _deploy_one(self, doc: DesiredState, item: DeployItem, spec: str, canary: bool, weight: int,
                    header: str | None, now: float,
                    version_for: Callable[[DeployItem, str], tuple[int, str]]) -> DeployResult:
        def same(vid: int | None) -> bool:
            if vid is None:
                return False
            entry = doc.versions[vid]
            record = self._record(vid, entry)
            return (isinstance(record, VersionRecord) and (record.spec_json, entry.digest, entry.component)
                    == (spec, item.digest, item.component))

        def insert() -> int:
            vid, key = version_for(item, spec)
            number = max((v.number for v in doc.versions.values() if v.app == item.app), default=0) + 1
            doc.versions[vid] = VersionEntry(app=item.app, number=number, key=key, digest=item.digest,
                                             component=item.component, created=now)
            return vid

        def result(vid: int, changed: bool) -> DeployResult:
            return DeployResult(item.app, vid, changed, doc.versions[vid].number)

        row = doc.apps.get(item.app)
        if row is None:
            if canary:
                raise StateError(
                    f"{item.app}: the first deploy of an app cannot be a canary (there is no stable version yet)")
            row = AppEntry(stable=insert(), updated=now)
            doc.apps[item.app] = row
            return result(row.stable, True)
        if not canary:
            if same(row.stable):
                if row.canary is None:
                    return result(row.stable, False)
            else:
                row.previous, row.stable = row.stable, insert()
            row.canary, row.canary_weight, row.canary_header, row.updated = None, 0, None, now
            return result(row.stable, True)
        if same(row.stable):
            return result(row.stable, False)
        if same(row.canary):
            assert row.canary is not None
            if (row.canary_weight, row.canary_header) == (weight, header):
                return result(row.canary, False)
        else:
            row.canary = insert()
        row.canary_weight, row.canary_header, row.updated = weight, header, now
        return result(row.canary, True)

    def _row(self, doc: DesiredState, app: str) -> AppEntry:
        validate_app_name(app)
        row = doc.apps.get(app)
        if row is None:
            raise UnknownApp(app)
        return row

    def _change_app(self, app: str, what: str, edit: Callable[[AppEntry], None]) -> AppState:
        def change(doc: DesiredState) -> None:
            edit(self._row(doc, app))
            doc.apps[app].updated = time.time()

        self._mutate(f"{what} of {app}", change)
        return self.app(app)

    def promote(self, app: str) -> AppState:
        def edit(row: AppEntry) -> None:
            if row.canary is None:
                raise NoCanary(app)
            row.previous, row.stable = row.stable, row.canary
            row.canary, row.canary_weight, row.canary_header = None, 0, None

        return self._change_app(app, "promote", edit)

    def abort(self, app: str) -> AppState:
        def edit(row: AppEntry) -> None:
            if row.canary is None:
                raise NoCanary(app)
            row.canary, row.canary_weight, row.canary_header = None, 0, None

        return self._change_app(app, "abort", edit)

    def rollback(self, app: str) -> AppState:
        def edit(row: AppEntry) -> None:
            if row.previous is None:
                raise NothingToRollBack(app)
            row.stable, row.previous = row.previous, row.stable
            row.canary, row.canary_weight, row.canary_header = None, 0, None

        return self._change_app(app, "rollback", edit)

    def delete(self, app: str) -> None:
        def change(doc: DesiredState) -> None:
            self._row(doc, app)
            del doc.apps[app]

        self._mutate(f"delete of {app}", change)

    def apps(self) -> list[AppState]:
        doc, _ = self.snapshot()
        return [self._state(doc, name) for name in sorted(doc.apps)]

    def app(self, app: str) -> AppState:
        validate_app_name(app)
        doc, _ = self.snapshot()
        if app not in doc.apps:
            raise UnknownApp(app)
        return self._state(doc, app)

    def generation(self) -> int:
        return self.snapshot()[0].generation

    def history(self, app: str, limit: int = 20) -> list[Version]:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise StateError(f"limit: expected a positive integer, got {limit!r}")
        validate_app_name(app)
        doc, _ = self.snapshot()
        ids = sorted((vid for vid, v in doc.versions.items() if v.app == app), reverse=True)[:limit]
        if not ids:
            raise UnknownApp(app)
        return [self._version(doc, vid) for vid in ids]

    def close(self) -> None:
        """The connection is the lattice's to close (``Lattice.close``)."""

    # Lattice-only changes ----------------------------------------------------
    def drain(self, host: str, drained: bool = True) -> bool:
        """Mark ``host`` drained (nothing placed on it) or not; True if that changed anything."""
        def change(doc: DesiredState) -> bool:
            if drained and host not in doc.drained:
                doc.drained = sorted([*doc.drained, host])
                return True
            if not drained and host in doc.drained:
                doc.drained = [h for h in doc.drained if h != host]
                return True
            return False

        return self._mutate(f"drain of {host}", change)

    def set_priority_classes(self, classes: list[PriorityClass]) -> bool:
        """Add or replace these ``PriorityClass``es; True if that changed anything."""
        def change(doc: DesiredState) -> bool:
            before = dict(doc.priority_classes)
            for cls in classes:
                doc.priority_classes[cls.name] = cls
            return before != doc.priority_classes

        return self._mutate("priority classes", change)

    # Versions ----------------------------------------------------------------
    def _record(self, vid: int, entry: VersionEntry) -> VersionRecord | str:
        with self._lock:
            cached = self._records.get(vid)
        if cached is not None:
            return cached
        kv = self._conn.desired
        assert kv is not None
        try:
            found = self._conn.call(kv.get(entry.key), what=f"read version {vid}")
            record: VersionRecord | str = decode_record(found.value or b"")
            if isinstance(record, VersionRecord) and (record.app, record.digest) != (entry.app, entry.digest):
                record = f"its record {entry.key} names {record.app} sha256:{record.digest[:12]}"
        except nats.js.errors.KeyNotFoundError:
            record = f"its record {entry.key} is missing from the bucket"
        except InvalidDocument as exc:
            record = f"its record {entry.key} does not validate: {exc}"
        except LatticeError as exc:  # not cached: the next read tries again
            return f"its record {entry.key} cannot be read now: {exc}"
        if isinstance(record, str):
            LATTICE_REJECTED.labels("version").inc()
            log.error("lattice: version %d: %s", vid, record)
        with self._lock:
            self._records[vid] = record
        return record

    def _version(self, doc: DesiredState, vid: int) -> Version:
        entry = doc.versions[vid]
        record = self._record(vid, entry)
        # A record that does not load gives a spec that does not either: the version is shown and
        # planned as failed (``load_spec`` names the reason), and every other app is served.
        spec = record.spec_json if isinstance(record, VersionRecord) else json.dumps({"unusable": record})
        return Version(vid, entry.app, spec, entry.digest, entry.component, entry.created, entry.number)

    def _state(self, doc: DesiredState, name: str) -> AppState:
        row = doc.apps[name]
        return AppState(
            app=name,
            stable=self._version(doc, row.stable),
            previous=None if row.previous is None else self._version(doc, row.previous),
            canary=None if row.canary is None else self._version(doc, row.canary),
            canary_weight=row.canary_weight,
            canary_header=row.canary_header,
            updated=row.updated,
        )


def _prune(doc: DesiredState) -> None:
    """Keep every live version and the ``KEEP_RETIRED`` newest others of each app (and of deleted apps).

    Version numbers never repeat: the newest version of an app is always kept, and
    a new one is numbered after it.
    """
    live = {vid for row in doc.apps.values() for vid in (row.stable, row.previous, row.canary) if vid is not None}
    by_app: dict[str, list[int]] = {}
    for vid, entry in doc.versions.items():
        by_app.setdefault(entry.app, []).append(vid)
    for ids in by_app.values():
        ids.sort(reverse=True)
        retired = [vid for vid in ids[1:] if vid not in live]
        for vid in retired[KEEP_RETIRED:]:
            del doc.versions[vid]
