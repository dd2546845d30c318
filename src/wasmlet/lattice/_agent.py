"""The lattice agent of one host: place, fetch, publish this host's plan.

Whenever the desired state or the live hosts change (and every
``TICK`` seconds regardless), the agent

1. computes ``place`` (``wasmlet.plan``) from the desired state's apps, the
   live hosts' ``Node``s (drained hosts left out) and, as ``previous``, what
   the live hosts' heartbeats say they serve: the same inputs on every host,
   so every host computes the same placement;
2. keeps what this host serves and is no longer placed here until every host
   it moved to says it serves it (make before break, so a drain or a scale
   change fails no request), or ``RETIRE_AFTER`` seconds have passed;
3. gets the module bytes of every version it will serve that it lacks
   (``_modules``), checks them under ``--trust``, and compiles them into the
   cache (once here, not once per worker);
4. hands its workers a plan of its own: the placed apps' versions and slots,
   and a ``RemoteApp`` route for every other app, which workers forward over
   NATS (``wasmlet.server``'s ``_forward``); once the workers serve it, the
   heartbeat says so.

A change made on this host (``ControlPlane``'s publish) runs steps 1 to 4
before the admin API answers, so a deploy answers once this host serves its
part; the other hosts follow within a notice (milliseconds) or a poll.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .._errors import ManifestError, WasmletError
from ..engine import ModuleCache, build_engine
from ..plan import (
    ComponentSpec,
    EngineSettings,
    LatticeLink,
    Node,
    PlacementResult,
    Plan,
    PriorityClass,
    RemoteApp,
    Slot,
    Workload,
    place,
)
from ..signing import TrustStore, module_subject, verify_module
from ..telemetry import LATTICE_FAILOVERS, LATTICE_LOCAL_APPS, LATTICE_PENDING, LATTICE_PLACEMENTS
from ._members import HostRecord, Members
from ._modules import Modules
from ._state import LatticeState

__all__ = ["RETIRE_AFTER", "TICK", "Agent", "Placed", "compute"]

log = logging.getLogger("wasmlet.lattice")

TICK = 0.5  # seconds between reconciliations when nothing prompts one
RETIRE_AFTER = 30.0  # seconds an app moved away is kept at most, waiting for its new hosts to serve it

Publisher = Callable[[Plan], None]


@dataclasses.dataclass(frozen=True)
class Placed:
    """One placement, with what went into it (for ``wasmlet lattice apps``)."""

    result: PlacementResult
    hosts: dict[str, HostRecord]  # live hosts
    drained: tuple[str, ...]
    invalid: dict[str, str]  # app -> why it could not be placed at all (an unknown PriorityClass)


def compute(specs: dict[str, ComponentSpec], hosts: dict[str, HostRecord], drained: list[str],
            classes: dict[str, PriorityClass]) -> Placed:
    """The placement every host computes alike from the same desired state and heartbeats."""
    workloads: list[Workload] = []
    invalid: dict[str, str] = {}
    for name, spec in sorted(specs.items()):
        try:
            workloads.append(Workload.from_spec(spec, classes.values()))
        except ManifestError as exc:
            invalid[name] = "; ".join(message for _, message in exc.problems) or str(exc)
    nodes = [record.node for name, record in hosts.items() if name not in drained]
    previous = {name: [h for h, record in hosts.items() if name in record.serving] for name in specs}
    result = place(workloads, nodes, previous)
    if invalid:
        result = PlacementResult(assignments={**result.assignments, **dict.fromkeys(invalid, ())},
                                 pending={**result.pending, **invalid})
    return Placed(result, hosts, tuple(drained), invalid)


class Agent:
    """See the module docstring."""

    def __init__(self, state: LatticeState, members: Members, link: LatticeLink, settings: EngineSettings,
                 cache_dir: Path, trust: TrustStore | None, full_plan: Callable[[], Plan]) -> None:
        self.state = state
        self.members = members
        self.link = link
        self.settings = settings
        self.cache_dir = cache_dir
        self.trust = trust
        self.modules: Modules = state.modules
        self.modules.cache_dir = cache_dir
        self._full_plan = full_plan
        self.publish: Publisher | None = None
        self._lock = threading.Lock()  # one reconciliation at a time
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._published: Plan | None = None
        self._generation = 0
        self._local: dict[str, float] = {}  # apps this host serves -> since when it is no longer placed here (0)
        self._cache: ModuleCache | None = None
        self._ready: set[str] = set()  # digests fetched, checked and compiled here
        self._blocked: dict[str, str] = {}  # digest -> why --trust refuses it
        self._hosts_before: dict[str, HostRecord] = {}
        self.last: Placed | None = None
        state.listeners.append(self.wake)
        members.on_change.append(self.wake)

    def wake(self) -> None:
        self._wake.set()

    # Running --------------------------------------------------------------
    def start(self, publish: Publisher) -> None:
        self.publish = publish
        self._thread = threading.Thread(target=self._run, name="wasmlet-lattice-agent", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        with self._lock:
            first = self._published
            if first is not None and self.publish is not None:
                try:  # returns once every worker serves it: only then does the heartbeat say so
                    self.publish(first)
                    self.members.set_serving(_serving(first))
                except Exception:
                    log.exception("lattice: the workers did not start serving this host's first plan")
        while not self._stopped.is_set():
            self._wake.wait(TICK)
            self._wake.clear()
            if self._stopped.is_set():
                return
            try:
                self.state.sync()
                self.reconcile()
            except Exception:  # logged; the next tick tries again
                log.exception("lattice: reconciliation failed")

    def on_control_publish(self, full: Plan) -> None:
        """``ControlPlane``'s publisher: a change made on this host is placed and served before it answers."""
        self.reconcile(full)

    # Reconciling ----------------------------------------------------------
    def reconcile(self, full: Plan | None = None) -> Plan:
        with self._lock:
            full = full if full is not None else self._full_plan()
            plan = self._local_plan(full)
            if self._published is not None and _same(plan, self._published):
                return self._published
            self._generation = max(self._generation + 1, full.generation, self._published.generation + 1
                                   if self._published else 0)
            plan = dataclasses.replace(plan, generation=self._generation)
            published = self.publish is not None
            if self.publish is not None:
                self.publish(plan)
            before = {c.spec.qualified_name for c in self._published.components} if self._published else set()
            after = {c.spec.qualified_name for c in plan.components}
            if after - before:
                LATTICE_PLACEMENTS.labels("added").inc(len(after - before))
            if before - after:
                LATTICE_PLACEMENTS.labels("removed").inc(len(before - after))
            self._published = plan
            if published:  # the first plan is announced once the workers serve it (_run)
                self.members.set_serving(_serving(plan))
            return plan

    def _local_plan(self, full: Plan) -> Plan:
        doc, _ = self.state.snapshot()
        stable = {slot.app: slot.stable for slot in full.live_slots()}
        specs = {c.spec.qualified_name: c.spec for c in full.components
                 if stable.get(c.spec.qualified_name) == c.version}
        hosts = self.members.live()
        placed = compute(specs, hosts, doc.drained, doc.priority_classes)
        self.last = placed
        me = self.members.name
        mine = set(placed.result.apps_on(me))
        now = time.monotonic()
        self._count_failovers(hosts, mine)
        for app in list(self._local):
            if app not in specs:
                del self._local[app]  # deleted: nothing to hand over
            elif app in mine:
                self._local[app] = 0.0
            else:
                since = self._local[app] or now
                targets = placed.result.hosts_of(app)
                handed = bool(targets) and all(app in hosts[h].serving for h in targets if h in hosts)
                if handed or now - since > RETIRE_AFTER:
                    del self._local[app]
                else:
                    self._local[app] = since
        for app in mine:
            self._local.setdefault(app, 0.0)
        local = set(self._local)
        LATTICE_LOCAL_APPS.set(len(mine))
        LATTICE_PENDING.set(len(placed.result.pending))
        components = tuple(c for c in full.components if c.spec.qualified_name in local)
        blocked = {c.version: why for c in components if (why := self._prepare(c.spec, c.digest))}
        slots = tuple(
            dataclasses.replace(slot, blocked=slot.blocked or blocked.get(slot.stable, ""))
            for slot in full.live_slots() if slot.app in local
        )
        remote = tuple(
            RemoteApp(app=name, route=spec.route, host=spec.host, max_body_size=spec.max_body_size,
                      timeout=spec.timeout, hosts=placed.result.hosts_of(name))
            for name, spec in sorted(specs.items()) if name not in local and spec.route is not None
        )
        return Plan(components, full.engine, full.cache_dir, slots, full.generation, blob_root=full.blob_root,
                    lattice=self.link, remote=remote)

    def _count_failovers(self, hosts: dict[str, HostRecord], mine: set[str]) -> None:
        gone = {name: record for name, record in self._hosts_before.items() if name not in hosts}
        for record in gone.values():
            for app in record.serving:
                if app in mine and app not in self._local:
                    LATTICE_FAILOVERS.labels(app).inc()
                    log.info("lattice: %s takes over %s from %s, which left the lattice", self.members.name, app,
                             record.name)
        self._hosts_before = hosts

    def _prepare(self, spec: ComponentSpec, digest: str) -> str:
        """Fetch, check (``--trust``) and compile a version placed here; "" if it can be served, else why not."""
        if digest in self._ready:
            return ""
        if digest in self._blocked:
            return self._blocked[digest]
        try:
            self.modules.ensure(digest, spec)
            data = self.modules.blobs.get(digest)
        except WasmletError as exc:  # the worker reports it as unavailable; the next reconciliation tries again
            log.error("lattice: %s: module sha256:%s not available on this host: %s", spec.qualified_name,
                      digest[:12], exc)
            return ""
        if self.trust is not None:
            try:
                self.trust.reload_if_changed()
                verify_module(data, self.trust, module_subject(spec.module_url, spec.qualified_name))
            except WasmletError as exc:
                self._blocked[digest] = f"refused by this host's --trust: {exc}"
                log.error("lattice: %s: %s", spec.qualified_name, self._blocked[digest])
                return self._blocked[digest]
        if self._cache is None:
            engine = build_engine(dataclasses.replace(self.settings, pool_instances=4))
            self._cache = ModuleCache(engine, self.settings, self.cache_dir)
        try:
            self._cache.compile(data, spec.qualified_name)
        except WasmletError as exc:
            log.error("lattice: %s: cannot compile sha256:%s here: %s", spec.qualified_name, digest[:12], exc)
            return ""
        self._ready.add(digest)
        return ""

    def placement_of(self, app: str) -> tuple[str, ...]:
        return self.last.result.hosts_of(app) if self.last else ()

    def local_node(self) -> Node:
        return self.members.node

    def slots(self) -> tuple[Slot, ...]:
        return self._published.slots if self._published else ()


def _serving(plan: Plan) -> dict[str, int]:
    return {slot.app: slot.stable for slot in plan.slots if not slot.blocked}


def _same(a: Plan, b: Plan) -> bool:
    return dataclasses.replace(a, generation=0) == dataclasses.replace(b, generation=0)
