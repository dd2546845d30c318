"""What ``wasmlet lattice hosts|apps|drain|apply`` show and do, from any machine that reaches NATS.

These commands are lattice clients, not members: they read the desired state
from the bucket, listen to the heartbeats for ``JOIN_WAIT`` seconds, and
compute the placement exactly as every host does (``compute``), so
``lattice apps`` says what runs where, what should, and for a pending app
which constraint no host meets.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from .._errors import LatticeError
from ..plan import ComponentSpec, LatticeLink, load_priority_classes
from ._agent import compute
from ._connection import Connection
from ._members import JOIN_WAIT, HostRecord, observe
from ._state import LatticeState

__all__ = ["LatticeClient"]


class LatticeClient:
    """A connection to a lattice for the ``wasmlet lattice`` commands (use as a context manager)."""

    def __init__(self, link: LatticeLink, timeout: float = 10.0) -> None:
        self.connection = Connection(link, "wasmlet lattice client")
        self.timeout = timeout
        self.state: LatticeState | None = None
        self._folder = tempfile.TemporaryDirectory(prefix="wasmlet-lattice-client-")

    def __enter__(self) -> LatticeClient:
        self.connection.start(self.timeout)
        try:
            # A client keeps no module bytes: the folder is only the interface's.
            self.state = LatticeState(self.connection, Path(self._folder.name), None)
        except BaseException:
            self.connection.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.connection.close()
        self._folder.cleanup()

    def _state(self) -> LatticeState:
        assert self.state is not None
        return self.state

    def hosts(self) -> list[dict[str, Any]]:
        doc, _ = self._state().snapshot()
        rows = []
        for name, record in observe(self.connection, JOIN_WAIT).items():
            node = record.node
            rows.append({
                "name": name, "zone": node.zone, "labels": dict(node.labels),
                "taints": [str(t) for t in node.taints], "memory": node.memory, "apps_capacity": node.pods,
                "listen": record.listen, "admin": record.admin, "serving": sorted(record.serving),
                "drained": name in doc.drained, "up_seconds": round(time.time() - record.started, 1),
            })
        for name in doc.drained:
            if all(row["name"] != name for row in rows):
                rows.append({"name": name, "drained": True, "serving": [], "down": True})
        return rows

    def apps(self, hosts: dict[str, HostRecord] | None = None) -> list[dict[str, Any]]:
        state = self._state()
        doc, _ = state.snapshot()
        hosts = hosts if hosts is not None else observe(self.connection, JOIN_WAIT)
        specs: dict[str, ComponentSpec] = {}
        broken: dict[str, str] = {}
        apps = state.apps()
        for app in apps:
            try:
                specs[app.app] = ComponentSpec.from_json(app.stable.spec_json)
            except Exception as exc:
                broken[app.app] = f"its stored spec does not load ({type(exc).__name__})"
        placed = compute(specs, hosts, doc.drained, doc.priority_classes)
        rows = []
        for app in apps:
            spec = specs.get(app.app)
            rows.append({
                "app": app.app, "version": app.stable.number, "replicas": spec.placement.replicas if spec else None,
                "placed": list(placed.result.hosts_of(app.app)),
                "serving": sorted(h for h, record in hosts.items() if app.app in record.serving),
                "pending": broken.get(app.app) or placed.result.pending.get(app.app),
                "route": spec.route if spec else None,
            })
        return rows

    def drain(self, host: str, drained: bool = True, wait: float = 60.0) -> dict[str, Any]:
        """Mark ``host`` drained (or not); with ``wait``, return once its apps run elsewhere (``LatticeError``
        after ``wait`` seconds, naming what is still there)."""
        state = self._state()
        before = observe(self.connection, JOIN_WAIT)
        moving = sorted(before[host].serving) if host in before else []
        changed = state.drain(host, drained)
        if not drained or wait <= 0:
            return {"host": host, "drained": drained, "changed": changed, "moved": []}
        deadline = time.monotonic() + wait
        while True:
            hosts = observe(self.connection, JOIN_WAIT / 2)
            left = sorted(hosts[host].serving) if host in hosts else []
            desired = {row["app"]: row for row in self.apps(hosts)}
            unserved = [app for app in moving if app in desired and not desired[app]["pending"]
                        and not any(app in r.serving for name, r in hosts.items() if name != host)]
            if not left and not unserved:
                return {"host": host, "drained": True, "changed": changed, "moved": moving}
            if time.monotonic() > deadline:
                raise LatticeError(f"{host} is drained in the desired state, but after {wait:g}s it still serves "
                                   f"{', '.join(left) or 'nothing'}; not yet served elsewhere: "
                                   f"{', '.join(unserved) or 'none'}")

    def apply(self, path: Path) -> list[str]:
        """Record the ``PriorityClass`` documents of a YAML stream (other kinds are skipped)."""
        classes = load_priority_classes(path)
        if classes:
            self._state().set_priority_classes(classes)
        return [c.name for c in classes]

