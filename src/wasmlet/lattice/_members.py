"""Who is in the lattice: heartbeats on ``PREFIX.hosts.TOKEN``, and the table of live hosts they make.

``TOKEN`` is the host's name as one NATS subject token (``host_token``): a name is
a Kubernetes ``Node`` name, an RFC 1123 subdomain such as EKS's
``ip-10-0-1-2.eu-west-1.compute.internal``, and in a subject each ``.`` would start
a new token, so the heartbeat would not match ``PREFIX.hosts.*`` and the host
would never be seen. Each ``.`` is written ``_`` instead: ``_`` is valid in a NATS
token and never in a subdomain, so the mapping is one-to-one and reversed
(``host_of_token``) on receipt; a name without dots is its own token.

Every host publishes a ``HostRecord`` every ``HEARTBEAT_EVERY`` seconds (core
NATS, not JetStream: heartbeats must keep flowing while a JetStream stream
elects a new leader after a NATS server died, which takes seconds) and
listens to everyone's. A host is live while its heartbeats arrive; one
silent for ``FORGET_AFTER`` seconds is forgotten (so within ``FORGET_AFTER``
of its last heartbeat, plus at most one tick of the agent), and one that
says it is leaving (``serve`` stopping) is forgotten at once.

A record carries the host's placement identity (a Kubernetes ``Node``: name,
labels, taints, capacity), where it listens, and what it serves now (app ->
stable version id): the ``previous`` placement every host computes from.

What arrives is checked before it is used: size, JSON, schema, the name
against the subject it came on. A host's name is held by one *instance* (a
random id each process picks) at a time: a heartbeat for a live host's name
from another instance is refused as spoofed, and counted
(``wasmlet_lattice_rejected{kind="spoofed-heartbeat"}``), until the holder
has been silent ``FORGET_AFTER`` seconds (a real restart after ``kill -9``
waits that long to be accepted). Heartbeats of one instance must count up
(``seq``), so a replayed one is ignored. This defends against mistakes and
replays, not against a member that forges everything: who may publish what
is NATS's to enforce (per-host publish permissions, ``docs/lattice.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable

from nats.aio.msg import Msg
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from .._errors import LatticeError
from ..plan import Node
from ..telemetry import LATTICE_HOSTS, LATTICE_REJECTED
from ._connection import Connection

__all__ = [
    "FORGET_AFTER",
    "HEARTBEAT_EVERY",
    "JOIN_WAIT",
    "HostRecord",
    "Live",
    "Members",
    "host_of_token",
    "host_token",
    "hosts_subject",
    "observe",
]

log = logging.getLogger("wasmlet.lattice")

HEARTBEAT_EVERY = 0.5  # seconds between heartbeats
FORGET_AFTER = 3.0  # seconds of silence after which a host is forgotten
JOIN_WAIT = 1.2  # seconds a joining host listens before it places anything (two heartbeats of every host)
MAX_RECORD = 64 * 1024  # bytes of one heartbeat
_INSTANCE = re.compile(r"^[0-9a-f]{32}$")
# A Node name: an RFC 1123 subdomain of at most 253 characters (as wasmlet.plan's Node checks it).
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def host_token(name: str) -> str:
    """``name`` (an RFC 1123 subdomain) as one NATS subject token: ``.`` -> ``_``; ValueError for any other name.

    NATS subjects: tokens are separated by ``.``; ``*``, ``>`` and whitespace are
    wildcards or separators (https://docs.nats.io/nats-concepts/subjects).
    """
    if len(name) > 253 or not _SUBDOMAIN.fullmatch(name):
        raise ValueError(f"host name {name[:100]!r}{'...' if len(name) > 100 else ''}: expected a lower-case "
                         "RFC 1123 subdomain (a-z, 0-9, '-' and '.', at most 253 characters)")
    return name.replace(".", "_")


def host_of_token(token: str) -> str:
    """The host name ``token`` stands for (``host_token`` reversed); ValueError if it stands for none."""
    name = token.replace("_", ".")
    if "." in token or host_token(name) != token:  # host_token raises for a name that is no subdomain
        raise ValueError(f"subject token {token[:100]!r} names no host")
    return name


def hosts_subject(prefix: str, name: str = "*") -> str:
    """``PREFIX.hosts.TOKEN`` for the host ``name``; ``PREFIX.hosts.*`` (every host) for ``*``."""
    return f"{prefix}.hosts.{'*' if name == '*' else host_token(name)}"


def _sender(subject: str) -> str:
    """The host a heartbeat's subject names, or the raw token (for the log) if it names none."""
    token = subject.rpartition(".")[2]
    try:
        return host_of_token(token)
    except ValueError:
        return token


class HostRecord(BaseModel):
    """One heartbeat."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node: Node
    instance: str = Field(pattern=_INSTANCE.pattern)
    seq: StrictInt = Field(ge=0)
    started: float
    listen: str = Field(default="", max_length=300)  # HTTP ADDR:PORT
    admin: str = Field(default="", max_length=300)  # admin API ADDR:PORT ("" if none)
    serving: dict[str, StrictInt] = Field(default_factory=dict)  # app -> stable version id served now
    leaving: StrictBool = False

    @property
    def name(self) -> str:
        return self.node.name


@dataclasses.dataclass(frozen=True)
class Live:
    record: HostRecord
    seen: float  # time.monotonic() of its last accepted heartbeat

    @property
    def age(self) -> float:
        return time.monotonic() - self.seen


class Members:
    """This host's heartbeats and the table of hosts it hears; see the module docstring."""

    def __init__(self, connection: Connection, node: Node, listen: str = "", admin: str = "") -> None:
        self._conn = connection
        self.node = node
        self.instance = secrets.token_hex(16)
        self.started = time.time()
        self.listen = listen
        self.admin = admin
        self._seq = 0
        self._serving: dict[str, int] = {}
        self._leaving = False
        self._table: dict[str, Live] = {}
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self.on_change: list[Callable[[], None]] = []  # told (on the lattice's loop) when the live set changed
        self._warned: dict[str, float] = {}
        self._rival: Live | None = None  # the last heartbeat of another instance with this host's name

    @property
    def name(self) -> str:
        return self.node.name

    # Lifecycle ------------------------------------------------------------
    def join(self) -> None:
        """Listen, make sure the name is free, then heartbeat; ``LatticeError`` if another live host has it."""
        self._conn.call(self._join(), JOIN_WAIT + 10, "join the lattice")

    async def _join(self) -> None:
        nc = self._conn.nc
        await nc.subscribe(hosts_subject(self._conn.link.prefix), cb=self._heard)
        await asyncio.sleep(JOIN_WAIT)
        holder = self._rival
        if holder is not None and holder.age < FORGET_AFTER and not holder.record.leaving:
            raise LatticeError(
                f"host name {self.name!r} is in use in the lattice by a live host (listening on "
                f"{holder.record.listen or '?'}, last heartbeat {holder.age:.1f}s ago); give this host another "
                f"name (--host-name), or stop the other one and wait {FORGET_AFTER:g}s")
        await self._beat()
        self._task = asyncio.get_running_loop().create_task(self._beating())

    async def _beating(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY)
            await self._beat()
            self._expire()

    async def _beat(self) -> None:
        with self._lock:
            self._seq += 1
            record = HostRecord(node=self.node, instance=self.instance, seq=self._seq, started=self.started,
                                listen=self.listen, admin=self.admin, serving=dict(self._serving),
                                leaving=self._leaving)
        self._accept(record, self_record=True)
        with contextlib.suppress(Exception):  # NATS away: others will forget this host; it keeps serving
            await self._conn.nc.publish(hosts_subject(self._conn.link.prefix, self.name),
                                        record.model_dump_json().encode())

    def set_serving(self, serving: dict[str, int]) -> None:
        with self._lock:
            self._serving = dict(serving)

    def leave(self) -> None:
        """Say this host is leaving: the others re-place its apps at once instead of after ``FORGET_AFTER``."""
        with self._lock:
            self._leaving = True
        with contextlib.suppress(Exception):
            self._conn.call(self._beat(), 2.0, "leave the lattice")

    def stop(self) -> None:
        if self._task is not None:
            self._conn.loop.call_soon_threadsafe(self._task.cancel)

    # Hearing ------------------------------------------------------------
    async def _heard(self, msg: Msg) -> None:
        name = _sender(msg.subject)
        if len(msg.data) > MAX_RECORD:
            self._refuse("heartbeat", name, f"{len(msg.data)} bytes, more than {MAX_RECORD}")
            return
        try:
            record = HostRecord.model_validate_json(msg.data)
        except ValidationError as exc:
            self._refuse("heartbeat", name, "; ".join(e["msg"] for e in exc.errors()[:3]))
            return
        if record.name != name:
            self._refuse("heartbeat", name, f"it names host {record.name!r}")
            return
        if name == self.name and record.instance != self.instance:
            self._rival = Live(record, time.monotonic())
            self._refuse("spoofed-heartbeat", name, "another process announces itself with this host's name")
            return
        if name != self.name:
            self._accept(record)

    def _accept(self, record: HostRecord, self_record: bool = False) -> None:
        changed = False
        with self._lock:
            held = self._table.get(record.name)
            if held is not None and not self_record:
                if held.record.instance != record.instance:
                    if held.age < FORGET_AFTER and not held.record.leaving:
                        spoofed = True
                    else:
                        spoofed = False
                        log.info("lattice: host %s restarted (new instance)", record.name)
                    if spoofed:
                        self._refuse_locked("spoofed-heartbeat", record.name,
                                            f"another instance holds the name (heard {held.age:.1f}s ago)")
                        return
                elif record.seq <= held.record.seq:
                    return  # a replay, or out of order
            before = held.record if held is not None else None
            self._table[record.name] = Live(record, time.monotonic())
            changed = before is None or before.leaving != record.leaving or before.node != record.node or (
                before.serving != record.serving) or before.instance != record.instance
        if changed:
            self._changed()

    def _refuse(self, kind: str, name: str, why: str) -> None:
        with self._lock:
            self._refuse_locked(kind, name, why)

    def _refuse_locked(self, kind: str, name: str, why: str) -> None:
        LATTICE_REJECTED.labels(kind).inc()
        now = time.monotonic()
        if now - self._warned.get(f"{kind}:{name}", -60.0) >= 10.0:  # one line per host and kind every 10 s
            self._warned[f"{kind}:{name}"] = now
            log.warning("lattice: refused a %s for host %s: %s", kind, name[:100], why)

    def _expire(self) -> None:
        with self._lock:
            gone = [name for name, live in self._table.items() if name != self.name and live.age >= FORGET_AFTER]
            for name in gone:
                log.warning("lattice: host %s forgotten (no heartbeat for %.1fs)", name, self._table[name].age)
                del self._table[name]
        if gone:
            self._changed()

    def _changed(self) -> None:
        LATTICE_HOSTS.set(len(self.live()))
        for callback in list(self.on_change):
            callback()

    def live(self) -> dict[str, HostRecord]:
        """The hosts that count: heard within ``FORGET_AFTER`` and not leaving (this host always, while serving)."""
        with self._lock:
            return {name: live.record for name, live in sorted(self._table.items())
                    if name == self.name or (live.age < FORGET_AFTER and not live.record.leaving)}


async def _observe(connection: Connection, seconds: float) -> dict[str, HostRecord]:
    heard: dict[str, HostRecord] = {}

    async def record(msg: Msg) -> None:
        name = _sender(msg.subject)
        if len(msg.data) > MAX_RECORD:
            return
        try:
            found = HostRecord.model_validate_json(msg.data)
        except ValidationError:
            return
        held = heard.get(name)
        if found.name == name and (held is None or (held.instance == found.instance and found.seq > held.seq)):
            heard[name] = found

    sub = await connection.nc.subscribe(hosts_subject(connection.link.prefix), cb=record)
    try:
        await asyncio.sleep(seconds)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return {name: found for name, found in sorted(heard.items()) if not found.leaving}


def observe(connection: Connection, seconds: float = JOIN_WAIT) -> dict[str, HostRecord]:
    """The live hosts heard within ``seconds`` (for ``wasmlet lattice``: a listener, not a member)."""
    return connection.call(_observe(connection, seconds), seconds + 10, "listen to the hosts' heartbeats")
