"""``compute``: the placement every host computes alike from the desired state and the heartbeats (pure)."""

from __future__ import annotations

import json
import time

from tests.lattice.conftest import ECHO

from wasmlet.lattice import HostRecord, compute
from wasmlet.plan import ComponentSpec, Node, PriorityClass, parse_manifest


def _spec(name: str, traits: list[dict[str, object]] | None = None) -> ComponentSpec:
    component: dict[str, object] = {"name": "web", "type": "wasm", "properties": {"moduleURL": str(ECHO)}}
    if traits:
        component["traits"] = traits
    text = json.dumps({"apiVersion": "core.oam.dev/v1beta1", "kind": "Application", "metadata": {"name": name},
                       "spec": {"components": [component]}})
    (spec,) = parse_manifest(text)
    return spec


def _host(name: str, serving: dict[str, int] | None = None, **labels: str) -> HostRecord:
    return HostRecord(node=Node(name=name, labels=labels), instance="a" * 32, seq=1, started=time.time(),
                      serving=serving or {})


def test_an_unknown_priority_class_leaves_the_app_pending_with_the_reason() -> None:
    specs = {"shop/web": _spec("shop", [{"type": "priority", "properties": {"className": "gold"}}])}
    placed = compute(specs, {"a": _host("a")}, [], {"wasm-critical": PriorityClass(name="wasm-critical", value=1)})
    assert placed.result.hosts_of("shop/web") == ()
    assert "no PriorityClass named 'gold'" in placed.result.pending["shop/web"]


def test_a_drained_host_gets_nothing_and_what_hosts_serve_is_kept() -> None:
    specs = {"shop/web": _spec("shop"), "blog/web": _spec("blog")}
    hosts = {"a": _host("a", {"shop/web": 1}), "b": _host("b"), "c": _host("c")}
    placed = compute(specs, hosts, ["c"], {})
    assert placed.result.hosts_of("shop/web") == ("a",)  # stability: a serves it, a keeps it
    assert "c" not in placed.result.hosts_of("blog/web")
    drained = compute(specs, hosts, ["a", "c"], {})
    assert drained.result.hosts_of("shop/web") == ("b",)


def test_every_host_computes_the_same_placement_whatever_the_order() -> None:
    specs = {f"app{i}/web": _spec(f"app{i}", [{"type": "scaler", "properties": {"replicas": 2}}]) for i in range(6)}
    hosts = {name: _host(name, zone=name[0]) for name in ("a1", "b1", "a2", "b2")}
    one = compute(specs, hosts, [], {})
    two = compute(dict(reversed(list(specs.items()))), dict(reversed(list(hosts.items()))), [], {})
    assert one.result == two.result
