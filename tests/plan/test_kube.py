"""The seed's Kubernetes objects (Node, PriorityClass) read from the same YAML stream as manifests."""

from __future__ import annotations

from pathlib import Path

import pytest

from wasmlet import ManifestError
from wasmlet.plan import (
    UNSCHEDULABLE_TAINT,
    Node,
    Placement,
    PriorityClass,
    Taint,
    Workload,
    load_manifest,
    load_nodes,
    load_priority_classes,
    parse_manifest,
    parse_nodes,
    parse_priority_classes,
)

SEED = Path(__file__).resolve().parents[1] / "fixtures" / "seed-stream.yaml"

NODE = """
apiVersion: v1
kind: Node
metadata: {name: edge-1, labels: {topology.kubernetes.io/zone: eu-1a}}
"""


def problems(parse: object, text: str) -> dict[str, str]:
    with pytest.raises(ManifestError) as info:
        parse(text, "cluster.yaml")  # type: ignore[operator]
    assert str(info.value).startswith("cluster.yaml: invalid manifest")
    return dict(info.value.problems)


def test_the_seed_stream_loads_for_every_reader() -> None:
    (node,) = load_nodes(SEED)
    assert node == Node(name="wasm-node-01", labels={"node-type": "wasm"},
                        taints=(Taint(key="wasm", value="true", effect="NoSchedule"),))
    assert (node.memory, node.pods, node.zone) == (None, None, None)  # the seed gives no capacity: no limit
    assert str(node.taints[0]) == "wasm=true:NoSchedule"
    (critical,) = load_priority_classes(SEED)
    assert critical == PriorityClass(name="wasm-critical", value=1_000_000, global_default=False,
                                     preemption_policy="PreemptLowerPriority", description="用于关键Wasm工作负载")
    (spec,) = load_manifest(SEED)  # the NetworkPolicy, fourth, is skipped by all three
    assert spec.qualified_name == "image-processor/resizer"
    assert spec.memory_limit == 128 << 20


def test_capacity_comes_from_status_allocatable_then_capacity() -> None:
    (node,) = parse_nodes(NODE + "status: {allocatable: {memory: 4Gi, pods: '110', cpu: '4'}}")
    assert (node.memory, node.pods, node.zone) == (4 << 30, 110, "eu-1a")
    (node,) = parse_nodes(NODE + "status: {allocatable: {memory: 1Gi}, capacity: {memory: 2Gi, pods: 8}}")
    assert (node.memory, node.pods) == (1 << 30, 8)


def test_a_cordoned_node_gets_the_unschedulable_taint() -> None:
    (node,) = parse_nodes(NODE + "spec: {unschedulable: true}")
    assert node.taints == (UNSCHEDULABLE_TAINT,)
    assert str(UNSCHEDULABLE_TAINT) == "node.kubernetes.io/unschedulable:NoSchedule"


def test_a_node_as_kubectl_prints_it_loads() -> None:
    text = """
apiVersion: v1
kind: Node
metadata:
  name: ip-10-0-1-7.eu-west-1.compute.internal
  uid: 0b2c-11
  annotations: {node.alpha.kubernetes.io/ttl: "0"}
  labels: {kubernetes.io/hostname: ip-10-0-1-7, node-type: wasm}
spec:
  podCIDR: 10.244.1.0/24
  podCIDRs: [10.244.1.0/24]
  providerID: aws:///eu-west-1a/i-0abc
  taints:
    - {key: wasm, value: "true", effect: NoExecute, timeAdded: "2024-01-01T00:00:00Z"}
status:
  allocatable: {memory: 7901Mi, pods: "110", ephemeral-storage: 19Gi}
  conditions: [{type: Ready, status: "True"}]
  nodeInfo: {kubeletVersion: v1.29.0}
"""
    (node,) = parse_nodes(text)
    assert node.name == "ip-10-0-1-7.eu-west-1.compute.internal"
    assert node.taints == (Taint(key="wasm", value="true", effect="NoExecute"),)
    assert node.memory == 7901 << 20


def test_a_node_round_trips_through_json_for_heartbeats() -> None:
    (node,) = parse_nodes(NODE + "spec: {taints: [{key: a, effect: PreferNoSchedule}]}\nstatus: {capacity: {pods: 3}}")
    assert Node.model_validate_json(node.model_dump_json()) == node


def test_node_errors_name_the_document_and_field() -> None:
    text = "kind: Application\n---\n" + NODE + """spec:
  taint: [{key: wasm, effect: NoSchedule}]
---
apiVersion: v1
kind: Node
metadata: {name: Edge_2, labels: {gpu: true, 'a b': x}}
spec: {taints: [{key: wasm, value: "true", effect: NoRun}], unschedulable: "yes"}
status: {allocatable: {memory: lots}}
"""
    found = problems(parse_nodes, text)
    assert found["(document 2) spec.taint"] == "unknown field (check its spelling and case)"
    assert "RFC 1123 subdomain" in found["(document 3) metadata.name"]
    assert "quote values" in found["(document 3) metadata.labels.gpu"]
    assert "expected a label key" in found["(document 3) metadata.labels.a b"]
    assert "'NoSchedule', 'PreferNoSchedule' or 'NoExecute'" in found["(document 3) spec.taints[0].effect"]
    assert "valid boolean" in found["(document 3) spec.unschedulable"]
    assert "expected a quantity such as 128Mi" in found["(document 3) status.allocatable.memory"]


def test_label_keys_and_values_are_checked_as_kubernetes_does() -> None:
    found = problems(parse_nodes, NODE.replace("topology.kubernetes.io/zone: eu-1a", "'-bad': x"))
    assert "expected a label key" in found["metadata.labels.-bad"]
    found = problems(parse_nodes, NODE.replace("eu-1a", "'" + "x" * 64 + "'"))
    assert "expected a label value" in found["metadata.labels.topology.kubernetes.io/zone"]
    with pytest.raises(ValueError, match="node-type"):
        Node(name="edge-1", labels={"node-type": "not ok"})


def test_two_nodes_of_one_name_are_refused() -> None:
    found = problems(parse_nodes, NODE + "---" + NODE)
    assert found == {"(document 2) metadata.name": "Node 'edge-1' is declared twice (also in document 1)"}


def test_other_kinds_are_skipped_and_none_is_an_empty_list() -> None:
    assert parse_nodes(SEED.read_text().split("---")[1]) == []  # the Application alone
    assert parse_priority_classes(NODE) == []


def test_priority_class_errors() -> None:
    base = "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: NAME}\n"
    found = problems(parse_priority_classes, base.replace("NAME", "a") + "value: '1000'\nglobaldefault: true\n")
    assert "valid integer" in found["value"]
    assert found["globaldefault"] == "unknown field (check its spelling and case)"
    found = problems(parse_priority_classes, base.replace("NAME", "system-mine") + "value: 2000000000\n")
    assert "reserved" in found["metadata"]
    assert "less than or equal to 1000000000" in found["value"]
    found = problems(parse_priority_classes, base.replace("NAME", "a") + "value: 1\npreemptionPolicy: Always\n")
    assert "'PreemptLowerPriority' or 'Never'" in found["preemptionPolicy"]
    two = "\n---\n".join(base.replace("NAME", n) + "value: 1\nglobalDefault: true" for n in ("a", "b"))
    found = problems(parse_priority_classes, two)
    assert found == {"(document 2) globalDefault": "only one PriorityClass may be the global default (a, b are)"}


def test_files_that_cannot_be_read_are_reported_with_their_name(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read file"):
        load_nodes(tmp_path / "missing.yaml")
    binary = tmp_path / "node.yaml"
    binary.write_bytes(b"kind: Node\nmetadata: {name: \xff}\n")
    with pytest.raises(ManifestError, match="not UTF-8") as info:
        load_nodes(binary)
    assert info.value.source == str(binary)
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"#" * (2 << 20))
    with pytest.raises(ManifestError, match="larger than"):
        load_priority_classes(huge)


def test_hostile_yaml_is_refused_like_a_manifest() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefg", "bcdefgh", strict=True))
    found = problems(parse_nodes, bomb)
    assert any("aliases are expanded" in message for message in found.values())
    found = problems(parse_priority_classes, "kind: PriorityClass\nkind: Node\n")
    assert any("duplicate key" in message for message in found.values())


def test_a_workload_takes_its_priority_from_the_named_class() -> None:
    (spec,) = parse_manifest(SEED.read_text())
    classes = load_priority_classes(SEED)
    assert Workload.from_spec(spec, classes).priority == 0  # no priority trait, no global default
    critical = spec.__class__(**{**spec.__dict__, "placement": Placement(priority_class="wasm-critical")})
    workload = Workload.from_spec(critical, classes)
    assert (workload.name, workload.memory, workload.priority, workload.preempts) == (
        "image-processor/resizer", 128 << 20, 1_000_000, True)
    default = PriorityClass(name="everyday", value=10, global_default=True, preemption_policy="Never")
    workload = Workload.from_spec(spec, [*classes, default])
    assert (workload.priority, workload.preempts) == (10, False)
    with pytest.raises(ManifestError, match="no PriorityClass named 'wasm-critical' \\(known: none\\)"):
        Workload.from_spec(critical, [])
