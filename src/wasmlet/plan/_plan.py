"""The plan: the one document the control side writes and every worker reads.

A plan lists every version a worker must hold warm (each app's stable
version, its previous one for an instant rollback, and its canary) and how
traffic is split among them. It is plain data with one JSON codec
(``Plan.to_json``/``Plan.from_json``), written to a file the workers watch.
"""

from __future__ import annotations

from pydantic import ConfigDict, TypeAdapter
from pydantic.dataclasses import dataclass

from ._engine import EngineSettings
from ._spec import ComponentSpec

__all__ = ["LatticeLink", "Plan", "PlannedComponent", "RemoteApp", "Slot"]

_STRICT = ConfigDict(extra="forbid")


@dataclass(frozen=True, config=_STRICT)
class PlannedComponent:
    """One version of one component, ready in the cache."""

    spec: ComponentSpec
    digest: str  # sha256 hex of the module bytes; what is recorded and reported
    component: bool = False  # a component-model binary (wasi:cli), not a core module (WAGI)
    version: int = 0  # the control plane's version id (0 outside it)


@dataclass(frozen=True, config=_STRICT)
class Slot:
    """What one app serves: its stable version, and a canary taking some of the traffic."""

    app: str  # app/component
    stable: int  # version ids, as in PlannedComponent.version
    canary: int | None = None
    weight: int = 0  # percent of requests the canary answers
    header: tuple[str, str] | None = None  # requests with this header (name, value) go to the canary
    blocked: str = ""  # why the app is refused (a signature revoked after deploy), or ""


@dataclass(frozen=True, config=_STRICT)
class LatticeLink:
    """How a worker reaches the lattice (``wasmlet serve --lattice``): NATS, as NATS users connect.

    Workers forward requests for apps this host does not run, and answer those
    forwarded to the apps it does, over NATS request/reply (``docs/lattice.md``).
    """

    servers: tuple[str, ...]  # nats:// or tls:// URLs, user:password@ allowed
    host: str  # this host's name in the lattice
    prefix: str = "wasmlet"  # the first token of every subject
    creds: str = ""  # a NATS .creds file (JWT and NKey seed)
    user: str = ""
    password: str = ""
    token: str = ""
    tls_ca: str = ""  # PEM files
    tls_cert: str = ""
    tls_key: str = ""


@dataclass(frozen=True, config=_STRICT)
class RemoteApp:
    """An app the lattice runs on other hosts: this host routes its requests there."""

    app: str  # app/component
    route: str
    host: str | None = None  # the Host header the route matches, as for a local app
    max_body_size: int = 0  # what the serving hosts accept; a larger body is refused here (413)
    timeout: float = 30.0  # the app's own deadline; the forward's is this plus a margin
    hosts: tuple[str, ...] = ()  # where it is placed (for messages; NATS queue groups choose)


@dataclass(frozen=True, config=_STRICT)
class Plan:
    """Every version a worker must hold warm, and how traffic is split among them.

    ``generation`` increases with every change the control plane makes; a worker
    applies a plan only if it is newer than the one it serves.
    """

    components: tuple[PlannedComponent, ...]
    engine: EngineSettings
    cache_dir: str
    slots: tuple[Slot, ...] = ()
    generation: int = 0
    # The folder whose blobs/sha256/ holds every planned module's bytes: the state
    # folder under `wasmlet serve` (durable, unlike the cache); "" for the cache's.
    blob_root: str = ""
    # Past one machine (``serve --lattice``): how workers reach the lattice, and the apps
    # other hosts run. None and () for a single host, whose plans are unchanged.
    lattice: LatticeLink | None = None
    remote: tuple[RemoteApp, ...] = ()

    def live_slots(self) -> tuple[Slot, ...]:
        """The slots; a plan without any serves each component as its own stable version."""
        if self.slots:
            return self.slots
        return tuple(Slot(c.spec.qualified_name, c.version) for c in self.components)

    def to_json(self) -> str:
        return _PLAN_CODEC.dump_json(self, by_alias=True).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> Plan:
        return _PLAN_CODEC.validate_json(text)


_PLAN_CODEC: TypeAdapter[Plan] = TypeAdapter(Plan)
