"""The control plane: deploys, rollbacks and canaries on a running host.

Every change follows the same order, so that a failure changes nothing and
an acknowledgement means the change is durable and served:

1. everything that can fail on bad input (manifest, fetch, signature,
   compile, link checks) runs first, with the running versions untouched;
2. the change is committed to the state store (SQLite, ``synchronous=FULL``);
3. the new plan is published to the workers (``publish``, the supervisor's),
   which returns once every worker serves it.

A plan holds every version a worker keeps warm: each app's stable version,
its previous one (so a rollback needs no compile and no load) and its canary.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from .._errors import ControlPlaneBusy, UnknownApp
from ..engine import BlobStore
from ..plan import (
    ComponentSpec,
    EngineSettings,
    Plan,
    PlannedComponent,
    Slot,
    assign_routes,
    load_manifest,
    parse_manifest,
)
from ..signing import TrustStore
from ._backend import StateBackend
from ._grants import FilePolicy
from ._prepare import prepare
from ._restore import check_restored, load_spec, prune, verify_signatures
from ._state import AppState, DeployItem, Version
from ._views import AppView, CanaryView, DeployReport, DeployResultView, Role, VersionRef, VersionView

__all__ = ["ControlPlane"]

log = logging.getLogger("wasmlet.control")

Publisher = Callable[[Plan], None]


def _spec(version: Version) -> ComponentSpec:
    return ComponentSpec.from_json(version.spec_json)


def _module_url(version: Version) -> str:
    """The version's moduleURL for a listing; a stored spec that no longer reads is said so, not raised."""
    try:
        return _spec(version).module_url
    except ValueError:  # pydantic's ValidationError, or JSON that is not JSON
        return "(stored spec unreadable)"


class ControlPlane:
    """The one public face of the control side: read the apps, change them, publish the plan.

    The admin API and the CLI call these methods and nothing below them.
    """

    lock_timeout = 5.0  # seconds a change waits for another before ``ControlPlaneBusy``

    def __init__(self, state: StateBackend, settings: EngineSettings, cache_dir: Path,
                 trust: TrustStore | None = None, allow_files: Sequence[Path] = ()) -> None:
        self.state = state
        self.settings = settings
        self.cache_dir = cache_dir
        self.trust = trust
        # Module bytes of every recorded version, kept with the state (the cache is disposable).
        self.blobs = BlobStore(state.directory, durable=True)
        # Which host files manifests may mount or read (_grants); the host's own folders never.
        self.files = FilePolicy.of([state.directory, cache_dir, trust.directory if trust else None], allow_files)
        self._failed: dict[int, str] = {}  # version id -> why it cannot be served (restore found it broken)
        self._publish_to: Publisher | None = None  # the workers' supervisor, while it serves
        self._lock = threading.Lock()  # one change at a time; taken through _locked(), never waited on unbounded
        self._holder = ("", 0.0)  # what holds the lock, since when (time.monotonic())
        self._blocked: dict[int, str] = {}  # version id -> why its signature no longer holds
        self._generation = 0

    # Reading -------------------------------------------------------------
    def plan(self) -> Plan:
        components: list[PlannedComponent] = []
        slots: list[Slot] = []
        for app in self.state.apps():
            stable = load_spec(app.stable)
            if isinstance(stable, str):
                continue  # no route to serve it on; restore() named it
            components.append(PlannedComponent(stable, app.stable.digest, app.stable.component, app.stable.id))
            warm: set[int] = set()  # a failed or blocked canary or previous is not planned
            for version in (app.previous, app.canary):
                spec = load_spec(version) if version is not None else ""
                if version is not None and not isinstance(spec, str) and not self._unservable(version.id):
                    components.append(PlannedComponent(spec, version.digest, version.component, version.id))
                    warm.add(version.id)
            header = None
            if app.canary_header:
                name, _, value = app.canary_header.partition(":")
                header = (name.strip(), value.strip())
            slots.append(Slot(
                app.app, app.stable.id, app.canary.id if app.canary and app.canary.id in warm else None,
                app.canary_weight, header, self._blocked.get(app.stable.id, ""),
            ))
        # Workers apply only newer generations; a re-check that blocks a version
        # changes the plan without changing the state, so the plan has its own counter.
        self._generation = max(self._generation + 1, self.state.generation())
        return Plan(tuple(components), self.settings, str(self.cache_dir), tuple(slots), self._generation,
                    blob_root=str(self.state.directory))

    def _unservable(self, version_id: int) -> bool:
        return version_id in self._failed or version_id in self._blocked

    def restore(self) -> list[str]:
        """Check every version the state holds before it is served again (``_restore``):
        spec, module bytes (filled into the durable store from an older layout), mounts and,
        under ``--trust``, signatures. Returns one line per version that will not be served."""
        with self._locked("restore of the saved state"):
            apps = self.state.apps()
            verdicts = check_restored(apps, self.blobs, BlobStore(self.cache_dir), self.trust, self.files)
            self._failed, self._blocked = verdicts.failed, verdicts.blocked
            removed = prune(apps, self.blobs)
            if removed:
                log.info("removed %d module blob(s) no version needs from %s", removed, self.blobs.root)
            for line in verdicts.problems:
                log.error("%s", line)
            return verdicts.problems

    @contextlib.contextmanager
    def publishing_to(self, publish: Publisher) -> Iterator[None]:
        """While the block runs, every committed change is published with ``publish`` (the supervisor's)."""
        self._publish_to = publish
        try:
            yield
        finally:
            self._publish_to = None

    def has_apps(self) -> bool:
        return bool(self.state.apps())

    def apps(self, degraded: Mapping[str, bool] | None = None) -> list[AppView]:
        """Every app as the admin API shows it; ``degraded`` is the watchdog's view, by app name."""
        degraded = degraded or {}
        return [self.describe(app, degraded.get(app.app, False)) for app in self.state.apps()]

    def app(self, name: str, degraded: bool = False) -> AppView:
        """One app; raises ``UnknownApp``."""
        return self.describe(self.state.app(name), degraded)

    def describe(self, app: AppState, degraded: bool = False) -> AppView:
        spec = load_spec(app.stable)
        if isinstance(spec, str):  # a broken row is shown as failed, not a 500 for every app
            route, host, module = None, None, ""
        else:
            route, host, module = spec.route, spec.host, spec.module_url
        return AppView(
            name=app.app,
            route=route,
            host=host,
            version=app.stable.number,
            digest=f"sha256:{app.stable.digest}",
            module=module,
            state="revoked" if app.stable.id in self._blocked else "failed" if app.stable.id in self._failed
            else ("degraded" if degraded else "serving"),
            previous=VersionRef(version=app.previous.number, digest=f"sha256:{app.previous.digest}")
            if app.previous else None,
            canary=CanaryView(version=app.canary.number, digest=f"sha256:{app.canary.digest}",
                              weight=app.canary_weight, header=app.canary_header) if app.canary else None,
            updated=app.updated,
        )

    def history(self, name: str, limit: int = 20) -> list[VersionView]:
        """The app's versions, newest first (``wasmlet history``); raises ``UnknownApp``."""
        live: dict[int, Role] = {}
        with contextlib.suppress(UnknownApp):  # a deleted app still has its history
            app = self.state.app(name)
            roles: tuple[tuple[Version | None, Role], ...] = (
                (app.stable, "stable"), (app.previous, "previous"), (app.canary, "canary"))
            live = {v.id: role for v, role in roles if v is not None}
        return [
            VersionView(version=v.number, digest=f"sha256:{v.digest}", module=_module_url(v), created=v.created,
                        role=live.get(v.id, "retired"))
            for v in self.state.history(name, limit)
        ]

    # Changing ------------------------------------------------------------
    def deploy(self, text: str, source: str, base_dir: str, canary_weight: int | None = None,
               canary_header: str | None = None) -> DeployReport:
        """Deploy a manifest's components (new versions where they changed); the admin API's verb,
        so host files only in ``--allow-files`` folders."""
        return self._deploy_specs(parse_manifest(text, source=source, base_dir=base_dir), canary_weight, canary_header,
                                  operator=False)

    def deploy_files(self, paths: list[Path]) -> DeployReport:
        """Deploy several manifests as one change (their routes are assigned together): the
        operator's (``serve MANIFEST...``, ``--watch``), so each may also use its own folder."""
        return self._deploy_specs([spec for path in paths for spec in load_manifest(path)], operator=True)

    def _deploy_specs(self, specs: list[ComponentSpec], canary_weight: int | None = None,
                      canary_header: str | None = None, operator: bool = False) -> DeployReport:
        with self._locked("deploy of " + ", ".join(sorted({s.qualified_name for s in specs}))):
            names = {s.qualified_name for s in specs}
            others = [s for a in self.state.apps() if a.app not in names
                      for s in [load_spec(a.stable)] if not isinstance(s, str)]
            routed = [s for s in assign_routes([*others, *specs]) if s.qualified_name in names]
            self.files.check(routed, operator)  # before a byte is read

            def guard(spec: ComponentSpec, real: Path) -> None:
                self.files.check_module(spec, real, operator)

            # The bytes are kept (fsynced) with the state before the versions are committed.
            prepared = prepare(routed, self.settings, self.cache_dir, self.trust, keep=self.blobs, guard=guard)
            items = [
                DeployItem(p.spec.qualified_name, p.spec.to_json(), p.digest, p.component)
                for p in prepared
            ]
            results = self.state.deploy(items, canary_weight, canary_header)
            for result in results:  # just fetched, verified and kept: whatever restore found is fixed
                self._failed.pop(result.version, None)
                self._blocked.pop(result.version, None)
            self._publish()
            for result in results:
                log.info("deploy %s: version %d%s", result.app, result.number,
                         "" if result.changed else " (unchanged)")
            return DeployReport(
                generation=self.state.generation(),
                results=[DeployResultView(app=r.app, version=r.number, changed=r.changed) for r in results],
            )

    def _change(self, operation: Callable[[str], object], app: str) -> AppView:
        with self._locked(f"{getattr(operation, '__name__', 'change')} of {app}"):
            operation(app)
            self._publish()
            return self.describe(self.state.app(app))

    def rollback(self, app: str) -> AppView:
        return self._change(self.state.rollback, app)

    def promote(self, app: str) -> AppView:
        return self._change(self.state.promote, app)

    def abort(self, app: str) -> AppView:
        return self._change(self.state.abort, app)

    def delete(self, app: str) -> None:
        with self._locked(f"delete of {app}"):
            self.state.delete(app)
            try:
                self._publish()
            finally:  # the delete is durable: its key-value store goes, whatever the workers said
                self._remove_store(app.partition("/")[0])

    def _remove_store(self, spin_app: str) -> None:
        """Remove the Spin key-value file of ``spin_app`` (``<state>/kv``) once none of its components
        is deployed (they share it); a failure is logged, the delete stands. A rollback, a new version
        or a canary never comes here: the same app keeps its data."""
        if any(a.app.partition("/")[0] == spin_app for a in self.state.apps()):
            return
        from ..guest import remove_app_store  # Spin's store: loaded with the first delete, not at start

        kv = self.state.directory / "kv"
        try:
            removed = remove_app_store(kv, spin_app)
        except (OSError, ValueError) as exc:
            log.error("delete of %s: its key-value store in %s was not removed: %s", spin_app, kv, exc)
            return
        if removed:
            log.info("delete of %s: removed its key-value store (%s) from %s", spin_app, ", ".join(removed), kv)

    def recheck_signatures(self) -> bool:
        """Re-verify every live version if the trust folder changed (rotation, revocation).

        A version whose chain no longer holds is blocked (503 ``revoked``) until a
        new version is deployed; one that holds again is unblocked. True if anything changed.
        """
        # Called every second on the supervisor's loop: never waits for a change under way
        # (which verifies what it deploys); the trust folder is looked at once the lock is free.
        if self.trust is None or not self._lock.acquire(blocking=False):
            return False
        try:
            if not self.trust.reload_if_changed():
                return False
            blocked = verify_signatures(self.state.apps(), self.blobs, self.trust, skip=self._failed)
            if blocked == self._blocked:
                return False
            self._blocked = blocked
            self._publish()
            return True
        finally:
            self._lock.release()

    @contextlib.contextmanager
    def _locked(self, operation: str) -> Iterator[None]:
        """The change lock, waited for ``lock_timeout`` seconds at most (``ControlPlaneBusy`` after that).

        A change can take long (an OCI pull, a compile, a trial start bounded by
        the component's timeout); another admin call answers "busy, try again"
        rather than hanging behind it (issue 14: a deploy that never returned
        held every other admin call).
        """
        started = time.monotonic()
        if not self._lock.acquire(timeout=self.lock_timeout):
            holder, since = self._holder
            raise ControlPlaneBusy(operation, holder or "another change", time.monotonic() - since,
                                   self.lock_timeout)
        self._holder = (operation, started)
        try:
            yield
        finally:
            self._holder = ("", 0.0)
            self._lock.release()

    def _publish(self) -> None:
        if self._publish_to is not None:
            self._publish_to(self.plan())
