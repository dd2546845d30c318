"""The runtime side of a plan, in one worker process: engine, apps, router.

``apply`` moves a running host to a newer plan: versions it already holds
are kept as they are, new ones are loaded from the precompiled cache, and the
router is replaced by one assignment, which is atomic for the event loop that
reads it. A request that has already picked its ``App`` finishes on it.

One version that cannot be loaded (its bytes gone, its artifact refused, a
mount missing) never stops the others (issue 14, item 6): it is logged,
tagged with its app (``wasmlet logs``), answered with 503 ``unavailable``,
and tried again with the next plan. A version the plan blocks (its signature
no longer holds) is not loaded at all.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING

from .._errors import AppUnavailable
from ..engine import BlobStore, EpochTicker, ModuleCache, build_engine
from ..guest import (
    CgiRequest,
    GuestResult,
    Handler,
    Linkers,
    build_handler,
    preload_http_client,
    remove_scratch_root,
)
from ..plan import ComponentSpec, Plan, PlannedComponent, Slot
from ..telemetry import observe_cache
from ._forward import RemoteRoute
from ._router import Route, Router

if TYPE_CHECKING:
    from ..guest import Extension

__all__ = ["App", "Host", "LiveSlot"]

log = logging.getLogger("wasmlet.host")


@dataclasses.dataclass(frozen=True)
class App:
    """One deployed version of a component, as the server sees it."""

    name: str  # application/component
    digest: str
    spec: ComponentSpec
    handler: Handler
    version: int = 0

    @property
    def max_body_size(self) -> int:
        return self.spec.max_body_size


@dataclasses.dataclass(frozen=True)
class LiveSlot:
    """A route's target: the stable version, and a canary that takes some requests."""

    stable: App
    canary: App | None = None
    weight: int = 0
    header: tuple[bytes, bytes] | None = None  # lower-case name, value
    blocked: str = ""

    def pick(self, headers: list[tuple[bytes, bytes]]) -> App:
        if self.canary is None:
            return self.stable
        if self.header is not None and self.header in headers:
            return self.canary
        return self.canary if random.random() * 100 < self.weight else self.stable


class _Unavailable:
    """The handler of a version that could not be loaded (or is blocked and never run)."""

    abi = "unavailable"

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason

    def handle(self, request: CgiRequest, traceparent: str = "") -> GuestResult:
        raise AppUnavailable(f"{self.name}: not loaded on this host: {self.reason}")


def _header(slot: Slot) -> tuple[bytes, bytes] | None:
    if slot.header is None:
        return None
    return slot.header[0].lower().encode("latin-1"), slot.header[1].encode("latin-1")


def _spin_extensions(blob_root: str) -> list[Extension]:
    """Spin's interfaces for ``wasi:http`` components, made (and imported) for the first such component.

    Spin's key-value: one SQLite file per app under the durable state (none without one).
    """
    from ..guest import KeyValueHost, spin_extension

    return [spin_extension(KeyValueHost(Path(blob_root) / "kv") if blob_root else None)]


class Host:
    """Everything a worker needs to answer requests for a plan."""

    def __init__(self, plan: Plan) -> None:
        self.engine = build_engine(plan.engine)
        self.ticker = EpochTicker(self.engine, plan.engine.epoch_tick)
        self._linkers = Linkers(self.engine, extensions=functools.partial(_spin_extensions, plan.blob_root))
        self._cache = ModuleCache(self.engine, plan.engine, Path(plan.cache_dir), observer=observe_cache)
        self._blobs = BlobStore(Path(plan.cache_dir))
        self._versions: dict[tuple[int, str], App] = {}
        self.apps: dict[str, App] = {}  # the stable version of each app, by name
        self.servable: frozenset[str] = frozenset()  # see apply()
        self.router: Router[LiveSlot | RemoteRoute] = Router([])
        self.generation = -1
        self.apply(plan)

    def apply(self, plan: Plan) -> None:
        """Serve ``plan``: every version that loads, and 503 ``unavailable`` for one that does not."""
        # Module bytes for a missing or refused artifact: the state's durable copy under serve.
        self._blobs = BlobStore(Path(plan.blob_root or plan.cache_dir), durable=bool(plan.blob_root))
        blocked = {(slot.stable, slot.app) for slot in plan.live_slots() if slot.blocked}
        versions: dict[tuple[int, str], App] = {}
        unavailable: set[tuple[int, str]] = set()
        for planned in plan.components:
            key = (planned.version, planned.spec.qualified_name)
            app = self._versions.get(key)
            if app is None and key in blocked:
                app = self._unavailable(planned, "blocked by the control plane")
                unavailable.add(key)
            elif app is None:
                try:
                    app = self._load(planned)
                except Exception as exc:  # whatever one version does, the others are served
                    log.error("app=%s version %d cannot be loaded; serving it as 503 unavailable, the other "
                              "apps as usual: %s", planned.spec.qualified_name, planned.version, exc,
                              extra={"app": planned.spec.qualified_name})
                    app = self._unavailable(planned, str(exc))
                    unavailable.add(key)
            versions[key] = app
        routes: list[Route[LiveSlot | RemoteRoute]] = []
        stable_apps: dict[str, App] = {}
        for slot in plan.live_slots():
            stable = versions[(slot.stable, slot.app)]
            canary = versions.get((slot.canary, slot.app)) if slot.canary is not None else None
            if canary is not None and (slot.canary, slot.app) in unavailable:
                canary = None  # the stable version takes all of the app's requests
            live = LiveSlot(stable, canary, slot.weight, _header(slot), slot.blocked)
            assert stable.spec.route is not None
            routes.append(Route(stable.spec.route, stable.spec.host, live))
            stable_apps[slot.app] = stable
        # Apps other hosts of the lattice run: routed here, answered there (_forward).
        routes += [Route(r.route, r.host, RemoteRoute(r)) for r in plan.remote if r.app not in stable_apps]
        # An unavailable version is not kept: the next plan tries to load it again.
        self._versions = {key: app for key, app in versions.items() if key not in unavailable}
        self.apps = stable_apps
        # What other hosts may forward here: apps whose stable version loaded and is not blocked.
        self.servable = frozenset(slot.app for slot in plan.live_slots()
                                  if not slot.blocked and (slot.stable, slot.app) not in unavailable)
        self.router = Router(routes)  # one assignment: requests see the old router or the new one
        self.generation = plan.generation

    @staticmethod
    def _unavailable(planned: PlannedComponent, reason: str) -> App:
        name = planned.spec.qualified_name
        return App(name, planned.digest, planned.spec, _Unavailable(name, reason), planned.version)

    def _load(self, planned: PlannedComponent) -> App:
        spec = planned.spec
        if spec.capabilities.allowed_outbound_hosts:  # its first outbound request must not pay the import
            preload_http_client()
        # A missing or corrupt artifact is rebuilt from the verified blob.
        compiled = self._cache.load(planned.digest, functools.partial(self._blobs.get, planned.digest),
                                    spec.qualified_name, component=planned.component)
        return App(spec.qualified_name, planned.digest, spec, build_handler(spec, compiled, self._linkers),
                   planned.version)

    def start(self) -> None:
        self.ticker.start()

    def close(self) -> None:
        self.ticker.stop()
        remove_scratch_root()

