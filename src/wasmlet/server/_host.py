"""The runtime side of a plan, in one worker process: engine, apps, router.

``apply`` moves a running host to a newer plan: versions it already holds
are kept as they are, new ones are loaded from the precompiled cache, and the
router is replaced by one assignment, which is atomic for the event loop that
reads it. A request that has already picked its ``App`` finishes on it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
from pathlib import Path

from ..engine import BlobStore, EpochTicker, ModuleCache, build_engine
from ..guest import Handler, Linkers, build_handler, remove_scratch_root
from ..plan import ComponentSpec, Plan, PlannedComponent, Slot
from ..telemetry import observe_cache
from ._router import Route, Router

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


def _header(slot: Slot) -> tuple[bytes, bytes] | None:
    if slot.header is None:
        return None
    return slot.header[0].lower().encode("latin-1"), slot.header[1].encode("latin-1")


class Host:
    """Everything a worker needs to answer requests for a plan."""

    def __init__(self, plan: Plan) -> None:
        self.engine = build_engine(plan.engine)
        self.ticker = EpochTicker(self.engine, plan.engine.epoch_tick)
        self._linkers = Linkers(self.engine)
        self._cache = ModuleCache(self.engine, plan.engine, Path(plan.cache_dir), observer=observe_cache)
        self._blobs = BlobStore(Path(plan.cache_dir))
        self._versions: dict[tuple[int, str], App] = {}
        self.apps: dict[str, App] = {}  # the stable version of each app, by name
        self.router: Router[LiveSlot] = Router([])
        self.generation = -1
        self.apply(plan)

    def apply(self, plan: Plan) -> None:
        """Serve ``plan``; raise (serving the old plan still) if a version cannot be loaded."""
        versions: dict[tuple[int, str], App] = {}
        for planned in plan.components:
            key = (planned.version, planned.spec.qualified_name)
            versions[key] = self._versions.get(key) or self._load(planned)
        routes: list[Route[LiveSlot]] = []
        stable_apps: dict[str, App] = {}
        for slot in plan.live_slots():
            stable = versions[(slot.stable, slot.app)]
            canary = versions[(slot.canary, slot.app)] if slot.canary is not None else None
            live = LiveSlot(stable, canary, slot.weight, _header(slot), slot.blocked)
            assert stable.spec.route is not None
            routes.append(Route(stable.spec.route, stable.spec.host, live))
            stable_apps[slot.app] = stable
        self._versions = versions
        self.apps = stable_apps
        self.router = Router(routes)  # one assignment: requests see the old router or the new one
        self.generation = plan.generation

    def _load(self, planned: PlannedComponent) -> App:
        spec = planned.spec
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

