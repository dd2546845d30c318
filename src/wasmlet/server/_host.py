"""The runtime side of a plan, in one worker process: engine, apps, router."""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path

from .._deploy import Plan
from ..engine import EpochTicker, ModuleCache, build_engine
from ..guest import Handler, Linkers, build_handler
from ..guest._stdio import remove_scratch_root
from ..manifest import ComponentSpec
from ..registry import BlobStore
from ..telemetry import observe_cache
from ._router import Route, Router

__all__ = ["App", "Host"]

log = logging.getLogger("wasmlet.host")


@dataclasses.dataclass(frozen=True)
class App:
    """One deployed component as the server sees it."""

    name: str  # application/component
    digest: str
    spec: ComponentSpec
    handler: Handler

    @property
    def max_body_size(self) -> int:
        return self.spec.max_body_size


class Host:
    """Everything a worker needs to answer requests for a plan."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.engine = build_engine(plan.engine)
        self.ticker = EpochTicker(self.engine, plan.engine.epoch_tick)
        linkers = Linkers(self.engine)
        cache = ModuleCache(self.engine, plan.engine, Path(plan.cache_dir), observer=observe_cache)
        blobs = BlobStore(Path(plan.cache_dir))
        self.apps: dict[str, App] = {}
        routes: list[Route[App]] = []
        for planned in plan.components:
            spec = planned.spec
            name = spec.qualified_name
            # A missing or corrupt artifact is rebuilt from the verified blob.
            compiled = cache.load(planned.digest, functools.partial(blobs.get, planned.digest), name,
                                  component=planned.component)
            assert spec.route is not None
            app = App(name, planned.digest, spec, build_handler(spec, compiled, linkers))
            self.apps[name] = app
            routes.append(Route(spec.route, spec.host, app))
        self.router: Router[App] = Router(routes)

    def start(self) -> None:
        self.ticker.start()

    def close(self) -> None:
        self.ticker.stop()
        remove_scratch_root()
