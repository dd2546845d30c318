"""``Lattice``: one host's membership of a lattice, from joining to leaving; and who the host is.

``wasmlet serve --lattice`` uses it in this order (``_serve`` and ``cli``)::

    lattice = Lattice(link, node, state_dir, cache_dir)
    state = lattice.join()              # NATS, buckets, heartbeats; the desired state
    lattice.prefetch()                  # every live version's bytes, before ControlPlane.restore()
    control = ControlPlane(state, ...)  # the same control plane as one host's, over the shared state
    lattice.attach(control)
    plan = lattice.initial_plan()       # what this host's workers start with
    lattice.start(supervisor.publish)   # reconcile from now on
    ... control.publishing_to(lattice.publisher) ...
    lattice.leave(); lattice.close()
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .._errors import ConfigError, LatticeError, WasmletError
from ..control import ControlPlane
from ..plan import ZONE_LABEL, LatticeLink, Node, Plan, PriorityClass, load_nodes, parse_quantity
from ._agent import Agent
from ._connection import Connection
from ._members import Members
from ._state import LatticeState

__all__ = ["Lattice", "host_node"]

log = logging.getLogger("wasmlet.lattice")

_TAINT = re.compile(r"^(?P<key>[^=:]+)(=(?P<value>[^:]*))?:(?P<effect>[A-Za-z]+)$")


def host_node(name: str | None = None, labels: Iterable[str] = (), taints: Iterable[str] = (),
              zone: str | None = None, memory: str | None = None, apps: int | None = None,
              node_file: Path | None = None, default_name: str = "") -> Node:
    """This host's ``Node``: from ``--node FILE`` (a Kubernetes Node, e.g. the seed's ``wasm-node-01``),
    then the flags on top (``--label k=v``, ``--taint k=v:Effect``, ``--zone``, capacity). ``ConfigError``
    names the flag or the file."""
    fields: dict[str, Any] = {}
    if node_file is not None:
        nodes = load_nodes(node_file)
        # The Node named --host-name, or the file's only Node.
        chosen = [n for n in nodes if n.name == name] if name is not None else nodes[:1] if len(nodes) == 1 else []
        if not chosen:
            names = ", ".join(n.name for n in nodes) or "none"
            raise ConfigError(f"--node {node_file}: {'no Node named ' + repr(name) if name else 'expected one Node'}"
                              f" (it has: {names}); choose one with --host-name")
        fields = chosen[0].model_dump()
    if name is not None:
        fields["name"] = name
    fields.setdefault("name", default_name)
    merged = dict(fields.get("labels") or {})
    for item in labels:
        key, equals, value = item.partition("=")
        if not equals:
            raise ConfigError(f"--label {item!r}: expected KEY=VALUE, such as node-type=wasm")
        merged[key] = value
    if zone is not None:
        merged[ZONE_LABEL] = zone
    fields["labels"] = merged
    more = list(fields.get("taints") or ())
    for item in taints:
        match = _TAINT.match(item)
        if not match:
            raise ConfigError(f"--taint {item!r}: expected KEY[=VALUE]:EFFECT, such as wasm=true:NoSchedule")
        more.append({"key": match["key"], "value": match["value"] or "", "effect": match["effect"]})
    fields["taints"] = more
    if memory is not None:
        try:
            fields["memory"] = parse_quantity(memory)
        except ValueError as exc:
            raise ConfigError(f"--capacity-memory: {exc}") from exc
    if apps is not None:
        fields["pods"] = apps
    try:
        return Node.model_validate(fields)
    except ValidationError as exc:
        text = "; ".join(_problem(e["loc"], e["msg"], fields) for e in exc.errors())
        raise ConfigError(f"this host's lattice identity (--host-name, --label, --taint, --zone, --node): {text}") \
            from exc


def _problem(loc: tuple[int | str, ...], message: str, fields: dict[str, Any]) -> str:
    """One problem of this host's ``Node``, quoting a bad name (cut: a flag may hold anything, of any size)."""
    message = message.removeprefix("Value error, ")
    if loc == ("name",) and isinstance(fields.get("name"), str):
        name = fields["name"]
        return f"name {name[:100]!r}{'... (' + str(len(name)) + ' characters)' if len(name) > 100 else ''}: {message}"
    return f"{'.'.join(str(p) for p in loc)}: {message}"


class Lattice:
    """One host in a lattice; see the module docstring."""

    def __init__(self, link: LatticeLink, node: Node, state_dir: Path, cache_dir: Path, replicas: int | None = None,
                 priority_classes: Iterable[PriorityClass] = (), listen: str = "", admin: str = "") -> None:
        self.link = link
        self.node = node
        self.state_dir = state_dir
        self.cache_dir = cache_dir
        self.classes = list(priority_classes)
        self.connection = Connection(link, f"wasmlet host {node.name}", replicas)
        self.members = Members(self.connection, node, listen, admin)
        self.state: LatticeState | None = None
        self.agent: Agent | None = None

    def join(self) -> LatticeState:
        """Connect, open the buckets, read the desired state, and start heartbeats (``LatticeError``)."""
        self.connection.start()
        try:
            self.state = LatticeState(self.connection, self.state_dir, self.cache_dir)
            if self.classes and self.state.set_priority_classes(self.classes):
                log.info("lattice: PriorityClass(es) %s recorded", ", ".join(c.name for c in self.classes))
            self.members.join()
        except BaseException:
            self.connection.close()
            raise
        log.info("lattice: host %s joined %s (desired state generation %d; JetStream replicas %d)",
                 self.node.name, ", ".join(self.link.servers), self.state.generation(), self.connection.replicas)
        return self.state

    def prefetch(self) -> None:
        """The bytes of every live version, fetched now: ``ControlPlane.restore`` checks them, and a
        failover later needs no download."""
        assert self.state is not None
        for app in self.state.apps():
            for version in (app.stable, app.previous, app.canary):
                if version is None:
                    continue
                try:
                    self.state.modules.ensure(version.digest)
                except WasmletError as exc:
                    log.error("lattice: %s version %d: %s", app.app, version.number, exc)

    def attach(self, control: ControlPlane) -> Agent:
        assert self.state is not None
        self.agent = Agent(self.state, self.members, self.link, control.settings, control.cache_dir, control.trust,
                           control.plan)
        return self.agent

    def initial_plan(self) -> Plan:
        """This host's first plan (what its workers start with), placed from what the heartbeats say."""
        if self.agent is None:
            raise LatticeError("attach a control plane first")
        return self.agent.reconcile()

    def start(self, publish: Callable[[Plan], None]) -> None:
        assert self.agent is not None
        self.agent.start(publish)

    @property
    def publisher(self) -> Callable[[Plan], None]:
        assert self.agent is not None
        return self.agent.on_control_publish

    def leave(self) -> None:
        self.members.leave()

    def close(self) -> None:
        if self.agent is not None:
            self.agent.stop()
        self.members.stop()
        self.connection.close()
