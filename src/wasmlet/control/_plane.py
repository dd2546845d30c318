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
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .._errors import SignatureError
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
from ..signing import TrustStore, module_subject, verify_module
from ._prepare import prepare
from ._state import AppState, DeployItem, StateStore, Version

__all__ = ["ControlPlane", "default_state_dir"]

log = logging.getLogger("wasmlet.control")

Publisher = Callable[[Plan], None]


def default_state_dir() -> Path:
    """``$WASMLET_STATE_DIR``, else ``$XDG_STATE_HOME/wasmlet``, else ``~/.local/state/wasmlet``."""
    explicit = os.environ.get("WASMLET_STATE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(xdg) / "wasmlet"


def _spec(version: Version) -> ComponentSpec:
    return ComponentSpec.from_json(version.spec_json)


class ControlPlane:
    """The one public face of the control side: read the apps, change them, publish the plan.

    The admin API and the CLI call these methods and nothing below them.
    """

    def __init__(self, state: StateStore, settings: EngineSettings, cache_dir: Path,
                 trust: TrustStore | None = None) -> None:
        self.state = state
        self.settings = settings
        self.cache_dir = cache_dir
        self.trust = trust
        self._publish_to: Publisher | None = None  # the workers' supervisor, while it serves
        self._lock = threading.Lock()  # one change at a time
        self._blocked: dict[int, str] = {}  # version id -> why its signature no longer holds
        self._generation = 0

    # Reading -------------------------------------------------------------
    def plan(self) -> Plan:
        components: list[PlannedComponent] = []
        slots: list[Slot] = []
        for app in self.state.apps():
            for version in (app.stable, app.previous, app.canary):
                if version is not None:
                    components.append(PlannedComponent(_spec(version), version.digest, version.component, version.id))
            header = None
            if app.canary_header:
                name, _, value = app.canary_header.partition(":")
                header = (name.strip(), value.strip())
            slots.append(Slot(
                app.app, app.stable.id, app.canary.id if app.canary else None, app.canary_weight, header,
                self._blocked.get(app.stable.id, ""),
            ))
        # Workers apply only newer generations; a re-check that blocks a version
        # changes the plan without changing the state, so the plan has its own counter.
        self._generation = max(self._generation + 1, self.state.generation())
        return Plan(tuple(components), self.settings, str(self.cache_dir), tuple(slots), self._generation)

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

    def apps(self, degraded: Mapping[str, bool] | None = None) -> list[dict[str, Any]]:
        """Every app as the admin API shows it; ``degraded`` is the watchdog's view, by app name."""
        degraded = degraded or {}
        return [self.describe(app, degraded.get(app.app, False)) for app in self.state.apps()]

    def app(self, name: str, degraded: bool = False) -> dict[str, Any]:
        """One app; raises ``UnknownApp``."""
        return self.describe(self.state.app(name), degraded)

    def describe(self, app: AppState, degraded: bool = False) -> dict[str, Any]:
        spec = _spec(app.stable)
        return {
            "name": app.app,
            "route": spec.route,
            "host": spec.host,
            "version": app.stable.id,
            "digest": f"sha256:{app.stable.digest}",
            "module": spec.module_url,
            "state": "revoked" if app.stable.id in self._blocked else ("degraded" if degraded else "serving"),
            "previous": {"version": app.previous.id, "digest": f"sha256:{app.previous.digest}"}
            if app.previous else None,
            "canary": {"version": app.canary.id, "digest": f"sha256:{app.canary.digest}",
                       "weight": app.canary_weight, "header": app.canary_header} if app.canary else None,
            "updated": app.updated,
        }

    # Changing ------------------------------------------------------------
    def deploy(self, text: str, source: str, base_dir: str, canary_weight: int | None = None,
               canary_header: str | None = None) -> dict[str, Any]:
        """Deploy a manifest's components (new versions where they changed)."""
        return self._deploy_specs(parse_manifest(text, source=source, base_dir=base_dir), canary_weight, canary_header)

    def deploy_files(self, paths: list[Path]) -> dict[str, Any]:
        """Deploy several manifests as one change (their routes are assigned together)."""
        return self._deploy_specs([spec for path in paths for spec in load_manifest(path)])

    def _deploy_specs(self, specs: list[ComponentSpec], canary_weight: int | None = None,
                      canary_header: str | None = None) -> dict[str, Any]:
        with self._lock:
            names = {s.qualified_name for s in specs}
            others = [_spec(a.stable) for a in self.state.apps() if a.app not in names]
            routed = [s for s in assign_routes([*others, *specs]) if s.qualified_name in names]
            prepared = prepare(routed, self.settings, self.cache_dir, self.trust)
            items = [
                DeployItem(p.spec.qualified_name, p.spec.to_json(), p.digest, p.component)
                for p in prepared
            ]
            results = self.state.deploy(items, canary_weight, canary_header)
            self._publish()
            for result in results:
                log.info("deploy %s: version %d%s", result.app, result.version,
                         "" if result.changed else " (unchanged)")
            return {
                "generation": self.state.generation(),
                "results": [{"app": r.app, "version": r.version, "changed": r.changed} for r in results],
            }

    def _change(self, operation: Callable[[str], object], app: str) -> dict[str, Any]:
        with self._lock:
            operation(app)
            self._publish()
            return self.describe(self.state.app(app))

    def rollback(self, app: str) -> dict[str, Any]:
        return self._change(self.state.rollback, app)

    def promote(self, app: str) -> dict[str, Any]:
        return self._change(self.state.promote, app)

    def abort(self, app: str) -> dict[str, Any]:
        return self._change(self.state.abort, app)

    def delete(self, app: str) -> None:
        with self._lock:
            self.state.delete(app)
            self._publish()

    def recheck_signatures(self) -> bool:
        """Re-verify every live version if the trust folder changed (rotation, revocation).

        A version whose chain no longer holds is blocked (503 ``revoked``) until a
        new version is deployed; one that holds again is unblocked. True if anything changed.
        """
        if self.trust is None or not self.trust.reload_if_changed():
            return False
        with self._lock:
            blobs = BlobStore(self.cache_dir)
            blocked: dict[int, str] = {}
            for app in self.state.apps():
                for version in (app.stable, app.canary, app.previous):
                    if version is None:
                        continue
                    subject = module_subject(_spec(version).module_url, app.app)
                    try:
                        verify_module(blobs.get(version.digest), self.trust, subject)
                    except SignatureError as exc:
                        blocked[version.id] = f"{exc.reason}: {exc}"
                        log.warning("app=%s version %d: signature no longer valid: %s", app.app, version.id, exc)
            if blocked == self._blocked:
                return False
            self._blocked = blocked
            self._publish()
            return True

    def _publish(self) -> None:
        if self._publish_to is not None:
            self._publish_to(self.plan())
