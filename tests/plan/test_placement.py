"""``place``: Kubernetes scheduling semantics over a lattice of hosts, as a pure function (no sockets)."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.fuzz._fuzz import fuzz

from wasmlet.plan import (
    ZONE_LABEL,
    Node,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    Placement,
    PlacementResult,
    SpreadConstraint,
    Taint,
    Toleration,
    Workload,
    load_nodes,
    load_priority_classes,
    parse_manifest,
    place,
)

SEED = Path(__file__).resolve().parents[1] / "fixtures" / "seed-stream.yaml"
Mi = 1 << 20
WASM_TAINT = Taint(key="wasm", value="true", effect="NoSchedule")
TOLERATE_WASM = Toleration(key="wasm", operator="Equal", value="true", effect="NoSchedule")
ON_WASM_NODES = (NodeSelectorTerm(requirements=(NodeSelectorRequirement(key="node-type", values=("wasm",)),)),)


def host(name: str, zone: str | None = None, labels: Mapping[str, str] | None = None,
         taints: Iterable[Taint] = (), memory: int | None = None, pods: int | None = None) -> Node:
    all_labels = dict(labels or {})
    if zone is not None:
        all_labels[ZONE_LABEL] = zone
    return Node(name=name, labels=all_labels, taints=tuple(taints), memory=memory, pods=pods)


def app(name: str, replicas: int = 1, memory: int = 128 * Mi, priority: int = 0, preempts: bool = True,
        **placement: object) -> Workload:
    return Workload(name=name, memory=memory, priority=priority, preempts=preempts,
                    placement=Placement(replicas=replicas, **placement))  # type: ignore[arg-type]


def spread(max_skew: int = 1, key: str = ZONE_LABEL, **more: object) -> tuple[SpreadConstraint, ...]:
    return (SpreadConstraint(max_skew=max_skew, topology_key=key, **more),)  # type: ignore[arg-type]


def seed_hosts() -> list[Node]:
    """The seed's wasm-node-01 beside two ordinary hosts."""
    return [host("wasm-node-01", labels={"node-type": "wasm"}, taints=[WASM_TAINT]), host("node-02"), host("node-03")]


def moves(before: PlacementResult, after: PlacementResult) -> int:
    """Replicas stopped on a host where they ran (for apps in both results)."""
    return sum(len(set(hosts) - set(after.hosts_of(name))) for name, hosts in before.assignments.items()
               if name in after.assignments)


def zones_of(result: PlacementResult, name: str, nodes: list[Node]) -> Counter[str | None]:
    by_name = {n.name: n for n in nodes}
    return Counter(by_name[h].zone for h in result.hosts_of(name))


# Selector, taints and tolerations ------------------------------------------------------------

def test_seed_app_that_neither_selects_nor_tolerates_is_pending_with_the_scheduler_reason() -> None:
    result = place([app("image-processor/resizer", node_selector=ON_WASM_NODES)], seed_hosts())
    assert result.hosts_of("image-processor/resizer") == ()
    assert result.pending == {"image-processor/resizer":
                              "0/3 hosts: 1 has taint wasm=true:NoSchedule not tolerated, 2 lack label node-type=wasm"}


def test_selector_and_toleration_put_the_app_on_the_wasm_node() -> None:
    result = place([app("image-processor/resizer", node_selector=ON_WASM_NODES, tolerations=(TOLERATE_WASM,))],
                   seed_hosts())
    assert result.assignments == {"image-processor/resizer": ("wasm-node-01",)}
    assert result.pending == {}
    assert result.apps_on("wasm-node-01") == ("image-processor/resizer",)


def test_the_taint_keeps_apps_that_do_not_tolerate_it_off() -> None:
    result = place([app("a/web", replicas=3)], seed_hosts())
    assert result.hosts_of("a/web") == ("node-02", "node-03")
    assert result.pending["a/web"] == ("2/3 replicas placed; 0/3 hosts: 2 already run a replica, "
                                       "1 has taint wasm=true:NoSchedule not tolerated")


@pytest.mark.parametrize(("toleration", "tolerated"), [
    (Toleration(key="wasm", operator="Equal", value="true", effect="NoSchedule"), True),
    (Toleration(key="wasm", operator="Exists"), True),  # any value, any effect
    (Toleration(operator="Exists"), True),  # no key: every taint
    (Toleration(key="wasm", operator="Equal", value="true"), True),  # no effect: every effect
    (Toleration(key="wasm", operator="Equal", value="false"), False),
    (Toleration(key="wasm", operator="Exists", effect="NoExecute"), False),
    (Toleration(key="other", operator="Exists"), False),
])
def test_toleration_operators_match_as_in_kubernetes(toleration: Toleration, tolerated: bool) -> None:
    result = place([app("a/web", tolerations=(toleration,))],
                   [host("wasm-node-01", labels={"node-type": "wasm"}, taints=[WASM_TAINT])])
    assert result.hosts_of("a/web") == (("wasm-node-01",) if tolerated else ())


def test_prefer_no_schedule_is_only_a_preference() -> None:
    soft = Taint(key="spot", value="true", effect="PreferNoSchedule")
    nodes = [host("a", taints=[soft]), host("b")]
    assert place([app("x/web")], nodes).hosts_of("x/web") == ("b",)
    assert place([app("x/web", replicas=2)], nodes).hosts_of("x/web") == ("a", "b")  # used when needed
    assert place([app("x/web")], [host("a", taints=[soft])]).hosts_of("x/web") == ("a",)


def test_no_execute_keeps_new_replicas_off_and_moves_running_ones() -> None:
    evict = Taint(key="drain", effect="NoExecute")
    before = place([app("x/web")], [host("a"), host("b")])
    (running,) = before.hosts_of("x/web")
    other = "b" if running == "a" else "a"
    nodes = [host(running, taints=[evict]), host(other)]
    after = place([app("x/web")], nodes, previous=before)
    assert after.hosts_of("x/web") == (other,)
    assert moves(before, after) == 1


def test_a_cordon_moves_replicas_too() -> None:
    # Unlike Kubernetes' NoSchedule, a replica on a host that gains an untolerated taint moves at
    # once: that is how a host is drained (the module docstring says why).
    before = place([app("x/web")], [host("a")])
    after = place([app("x/web")], [host("a", taints=[WASM_TAINT]), host("b")], previous=before)
    assert after.hosts_of("x/web") == ("b",)


def test_node_affinity_operators() -> None:
    nodes = [host("a", labels={"tier": "3", "gpu": "yes"}), host("b", labels={"tier": "1"}), host("c")]

    def hosts(*requirements: NodeSelectorRequirement) -> tuple[str, ...]:
        term = NodeSelectorTerm(requirements=requirements)
        return place([app("x/y", replicas=3, node_selector=(term,))], nodes).hosts_of("x/y")

    assert hosts(NodeSelectorRequirement(key="tier", operator="Gt", values=("2",))) == ("a",)
    assert hosts(NodeSelectorRequirement(key="tier", operator="Lt", values=("2",))) == ("b",)
    assert hosts(NodeSelectorRequirement(key="gpu", operator="DoesNotExist")) == ("b", "c")
    assert hosts(NodeSelectorRequirement(key="tier", operator="NotIn", values=("1",))) == ("a", "c")
    assert hosts(NodeSelectorRequirement(key="tier", operator="Exists"),
                 NodeSelectorRequirement(key="gpu", operator="Exists")) == ("a",)
    either = (NodeSelectorTerm(requirements=(NodeSelectorRequirement(key="gpu", operator="Exists"),)),
              NodeSelectorTerm(requirements=(NodeSelectorRequirement(key="tier", values=("1",)),)))
    assert place([app("x/y", replicas=3, node_selector=either)], nodes).hosts_of("x/y") == ("a", "b")
    reason = place([app("x/y", replicas=3, node_selector=either)], nodes).pending["x/y"]
    assert reason == ("2/3 replicas placed; 0/3 hosts: 2 already run a replica, "
                      "1 matches none of the 2 node affinity terms")


# Capacity and priority -----------------------------------------------------------------------

def test_memory_and_pods_capacity() -> None:
    nodes = [host("a", memory=256 * Mi), host("b", pods=1)]
    result = place([app("x/big", memory=200 * Mi, replicas=2), app("x/small", memory=100 * Mi, replicas=2)], nodes)
    assert result.hosts_of("x/big") == ("a", "b")
    assert result.hosts_of("x/small") == ()
    assert result.pending["x/small"] == "0/2 hosts: 1 has less than 100Mi of memory free, 1 has no free app slot (pods)"


def test_priority_displaces_a_lower_priority_app_when_capacity_runs_out() -> None:
    nodes = [host("wasm-node-01", memory=256 * Mi)]
    batch = app("batch/thumbnails", memory=200 * Mi)
    before = place([batch], nodes)
    assert before.hosts_of("batch/thumbnails") == ("wasm-node-01",)
    critical = app("image-processor/resizer", memory=128 * Mi, priority=1_000_000)
    after = place([batch, critical], nodes, previous=before)
    assert after.hosts_of("image-processor/resizer") == ("wasm-node-01",)
    assert after.hosts_of("batch/thumbnails") == ()
    assert after.pending == {"batch/thumbnails": "preempted by image-processor/resizer (priority 1000000); "
                                                 "0/1 hosts: 1 has less than 200Mi of memory free"}


def test_a_displaced_app_moves_where_it_still_fits() -> None:
    nodes = [host("a", memory=256 * Mi), host("b", memory=256 * Mi, labels={"fast": "yes"})]
    fast = (NodeSelectorTerm(requirements=(NodeSelectorRequirement(key="fast", operator="Exists"),)),)
    batch = app("batch/job", memory=200 * Mi)
    before = place([batch], [nodes[1]])  # b was the only host then
    after = place([batch, app("rt/api", memory=200 * Mi, priority=1000, node_selector=fast)], nodes, previous=before)
    assert after.assignments == {"batch/job": ("a",), "rt/api": ("b",)}
    assert after.pending == {}
    assert moves(before, after) == 1


def test_preemption_takes_the_cheapest_victims() -> None:
    nodes = [host("a", memory=256 * Mi), host("b", memory=256 * Mi)]
    low, mid = app("low/x", memory=200 * Mi, priority=1), app("mid/x", memory=200 * Mi, priority=50)
    before = PlacementResult(assignments={"low/x": ("b",), "mid/x": ("a",)}, pending={})
    after = place([low, mid, app("top/x", memory=200 * Mi, priority=100)], nodes, previous=before)
    assert after.assignments == {"low/x": (), "mid/x": ("a",), "top/x": ("b",)}
    assert after.pending["low/x"].startswith("preempted by top/x (priority 100); ")


def test_no_displacement_without_preemption_or_between_equals() -> None:
    nodes = [host("a", memory=256 * Mi)]
    before = place([app("old/x", memory=200 * Mi)], nodes)
    polite = app("new/x", memory=200 * Mi, priority=1_000_000, preempts=False)  # preemptionPolicy: Never
    after = place([app("old/x", memory=200 * Mi), polite], nodes, previous=before)
    assert after.hosts_of("old/x") == ("a",)
    assert after.pending == {"new/x": "0/1 hosts: 1 has less than 200Mi of memory free"}
    equal = place([app("old/x", memory=200 * Mi), app("aaa/x", memory=200 * Mi)], nodes, previous=before)
    assert equal.hosts_of("old/x") == ("a",)  # same priority: first come, first served


def test_without_previous_higher_priority_is_placed_first() -> None:
    nodes = [host("a", pods=1)]
    result = place([app("zzz/low"), app("aaa/high", priority=10)], nodes)
    assert result.assignments == {"aaa/high": ("a",), "zzz/low": ()}
    assert result.pending == {"zzz/low": "0/1 hosts: 1 has no free app slot (pods)"}


# Spread across zones ------------------------------------------------------------------------

def three_zones(per_zone: int = 2) -> list[Node]:
    return [host(f"{z}-{i}", zone=z) for z in ("eu-1a", "eu-1b", "eu-1c") for i in range(per_zone)]


def test_zone_spread_with_max_skew_one() -> None:
    nodes = three_zones()
    for replicas, expected in [(3, [1, 1, 1]), (4, [2, 1, 1]), (6, [2, 2, 2])]:
        result = place([app("x/web", replicas=replicas, spread=spread(1))], nodes)
        assert sorted(zones_of(result, "x/web", nodes).values(), reverse=True) == expected
        assert "x/web" not in result.pending


def test_zone_spread_refuses_what_would_exceed_the_skew() -> None:
    nodes = [*three_zones(1), host("eu-1a-extra", zone="eu-1a")]
    result = place([app("x/web", replicas=4, spread=spread(1))], nodes)  # the 4th would make 2/1/1: fine
    assert sorted(zones_of(result, "x/web", nodes).values()) == [1, 1, 2]
    nodes = [host("a1", zone="a"), host("a2", zone="a"), host("a3", zone="a"), host("b1", zone="b")]
    result = place([app("x/web", replicas=4, spread=spread(1))], nodes)
    assert zones_of(result, "x/web", nodes) == Counter({"a": 2, "b": 1})
    assert result.pending["x/web"] == ("3/4 replicas placed; 0/4 hosts: 3 already run a replica, "
                                       f"1 would exceed maxSkew 1 across {ZONE_LABEL}")


def test_a_host_without_the_zone_label_is_not_used_for_a_hard_spread() -> None:
    nodes = [host("a", zone="a"), host("nowhere")]
    result = place([app("x/web", replicas=2, spread=spread(1))], nodes)
    assert result.hosts_of("x/web") == ("a",)
    assert result.pending["x/web"].endswith(f"1 lacks label {ZONE_LABEL} to spread by")
    soft = place([app("x/web", replicas=2, spread=spread(1, when_unsatisfiable="ScheduleAnyway"))], nodes)
    assert soft.hosts_of("x/web") == ("a", "nowhere")


def test_schedule_anyway_prefers_balance_but_places_everything() -> None:
    nodes = [host("a1", zone="a"), host("a2", zone="a"), host("a3", zone="a"), host("b1", zone="b")]
    result = place([app("x/web", replicas=4, spread=spread(1, when_unsatisfiable="ScheduleAnyway"))], nodes)
    assert len(result.hosts_of("x/web")) == 4
    two = place([app("x/web", replicas=2, spread=spread(1, when_unsatisfiable="ScheduleAnyway"))], nodes)
    assert zones_of(two, "x/web", nodes) == Counter({"a": 1, "b": 1})


def test_taint_policy_decides_whether_a_tainted_zone_holds_the_others_back() -> None:
    # Kubernetes' default (nodeTaintsPolicy: Ignore): zone c, all tainted, still counts with 0 replicas.
    nodes = [host("a1", zone="a"), host("a2", zone="a"), host("b1", zone="b"), host("b2", zone="b"),
             host("c1", zone="c", taints=[WASM_TAINT])]
    ignore = place([app("x/web", replicas=4, spread=spread(1))], nodes)
    assert len(ignore.hosts_of("x/web")) == 2
    assert "would exceed maxSkew 1" in ignore.pending["x/web"]
    honor = place([app("x/web", replicas=4, spread=spread(1, node_taints_policy="Honor"))], nodes)
    assert len(honor.hosts_of("x/web")) == 4


def test_affinity_policy_decides_whether_an_unselected_zone_holds_the_others_back() -> None:
    wasm = {"node-type": "wasm"}
    nodes = [host("a1", zone="a", labels=wasm), host("a2", zone="a", labels=wasm), host("b1", zone="b", labels=wasm),
             host("c1", zone="c")]
    honor = place([app("x/web", replicas=3, node_selector=ON_WASM_NODES, spread=spread(1))], nodes)
    assert honor.hosts_of("x/web") == ("a1", "a2", "b1")  # zone c has no host the app selects: not a domain
    ignore = place([app("x/web", replicas=3, node_selector=ON_WASM_NODES,
                        spread=spread(1, node_affinity_policy="Ignore"))], nodes)
    assert len(ignore.hosts_of("x/web")) == 2
    assert "1 would exceed maxSkew 1" in ignore.pending["x/web"]


def test_min_domains_counts_missing_zones_as_empty() -> None:
    nodes = [host("a1", zone="a"), host("a2", zone="a"), host("b1", zone="b"), host("b2", zone="b")]
    result = place([app("x/web", replicas=4, spread=spread(1, min_domains=3))], nodes)
    assert len(result.hosts_of("x/web")) == 2  # with fewer than 3 zones the global minimum is 0
    assert len(place([app("x/web", replicas=4, spread=spread(1))], nodes).hosts_of("x/web")) == 4


# Stability --------------------------------------------------------------------------------------

def busy_lattice() -> tuple[list[Workload], list[Node]]:
    nodes = [host(f"{z}-{i}", zone=z, memory=1024 * Mi) for z in "abc" for i in range(4)]
    workloads = [app(f"app{i}/c", replicas=1 + i % 3, memory=(64 + 32 * (i % 4)) * Mi, priority=i % 2,
                     spread=spread(1) if i % 2 else ()) for i in range(20)]
    return workloads, nodes


def test_a_host_joining_moves_nothing() -> None:
    workloads, nodes = busy_lattice()
    before = place(workloads, nodes)
    after = place(workloads, [*nodes, host("d-0", zone="d", memory=1024 * Mi)], previous=before)
    assert moves(before, after) == 0
    assert after.assignments == before.assignments  # every app was fully placed already


def test_a_host_leaving_moves_only_its_replicas() -> None:
    workloads, nodes = busy_lattice()
    before = place(workloads, nodes)
    gone = "b-1"
    on_it = before.apps_on(gone)
    assert on_it  # the scenario must have something to move
    after = place(workloads, [n for n in nodes if n.name != gone], previous=before)
    assert moves(before, after) == len(on_it)
    for name in on_it:
        assert len(after.hosts_of(name)) == len(before.hosts_of(name))  # re-placed elsewhere
    assert after.pending == {}


def test_scale_down_gives_back_the_most_crowded_zone_first() -> None:
    nodes = [host("a1", zone="a"), host("a2", zone="a"), host("b1", zone="b")]
    before = PlacementResult(assignments={"x/web": ("a1", "a2", "b1")}, pending={})
    after = place([app("x/web", replicas=2, spread=spread(1))], nodes, previous=before)
    assert zones_of(after, "x/web", nodes) == Counter({"a": 1, "b": 1})


def test_a_healed_partition_gives_back_the_surplus_the_same_way_everywhere() -> None:
    nodes = three_zones()
    web = app("x/web", replicas=3, spread=spread(1))
    left = place([web], nodes[:3])  # each side placed all three replicas with the hosts it saw
    right = place([web], nodes[3:])
    union = {"x/web": [*left.hosts_of("x/web"), *right.hosts_of("x/web")]}
    assert len(set(union["x/web"])) > 3  # more replicas than asked while apart
    healed = place([web], nodes, previous=union)
    assert len(healed.hosts_of("x/web")) == 3
    assert set(healed.hosts_of("x/web")) <= set(union["x/web"])  # kept, not moved
    assert sorted(zones_of(healed, "x/web", nodes).values()) == [1, 1, 1]
    shuffled = dict(union)
    shuffled["x/web"] = list(reversed(union["x/web"]))
    assert place([web], list(reversed(nodes)), previous=shuffled) == healed


def test_previous_on_hosts_or_apps_that_are_gone_is_ignored() -> None:
    previous = {"x/web": ["dead-host", "a"], "deleted/app": ["a"]}
    result = place([app("x/web", replicas=2)], [host("a"), host("b")], previous=previous)
    assert result.assignments == {"x/web": ("a", "b")}
    with pytest.raises(TypeError, match="host names"):
        place([app("x/web")], [host("a")], previous={"x/web": "a"})


def test_scaled_to_zero_is_placed_nowhere_and_not_pending() -> None:
    result = place([app("x/web", replicas=0)], [host("a")], previous={"x/web": ["a"]})
    assert result.assignments == {"x/web": ()} and result.pending == {}


def test_no_hosts_at_all() -> None:
    assert place([app("x/web")], []).pending == {"x/web": "0/0 hosts: no live host in the lattice"}


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="two hosts are named 'a'"):
        place([app("x/web")], [host("a"), host("a", zone="z")])
    with pytest.raises(ValueError, match="two workloads are named 'x/web'"):
        place([app("x/web"), app("x/web", replicas=2)], [host("a")])


def test_the_result_round_trips_through_json() -> None:
    workloads, nodes = busy_lattice()
    result = place(workloads, nodes)
    assert PlacementResult.model_validate_json(result.model_dump_json()) == result


# The seed, end to end ---------------------------------------------------------------------------

def test_the_seed_stream_places_as_the_seed_means_it() -> None:
    text = SEED.read_text(encoding="utf-8")
    nodes = [*load_nodes(SEED), host("node-02", memory=512 * Mi)]
    classes = load_priority_classes(SEED)
    (spec,) = parse_manifest(text)
    as_written = place([Workload.from_spec(spec, classes)], nodes)
    # The Application as written neither selects nor tolerates the Wasm node: it lands on the other one.
    assert as_written.hosts_of("image-processor/resizer") == ("node-02",)

    traits = """
      traits:
        - type: affinity
          properties:
            nodeAffinity: {required: {nodeSelectorTerms: [{matchExpressions: [{key: node-type, operator: In,
                                                                              values: [wasm]}]}]}}
            tolerations: [{key: wasm, operator: Equal, value: "true", effect: NoSchedule}]
        - type: priority
          properties: {className: wasm-critical}
"""
    with_traits = text.replace('            value: "85"\n', '            value: "85"\n' + traits.lstrip("\n"), 1)
    (spec,) = parse_manifest(with_traits)
    workload = Workload.from_spec(spec, classes)
    assert workload.priority == 1_000_000
    result = place([workload], nodes)
    assert result.assignments == {"image-processor/resizer": ("wasm-node-01",)}


# Determinism ---------------------------------------------------------------------------------

def test_same_answer_for_shuffled_inputs() -> None:
    workloads, nodes = busy_lattice()
    previous = place(workloads[:10], nodes[:7])
    expected = place(workloads, nodes, previous=previous)
    rng = random.Random(12)
    for _ in range(20):
        shuffled_nodes = [Node(name=n.name, labels=dict(rng.sample(sorted(n.labels.items()), len(n.labels))),
                               taints=n.taints, memory=n.memory, pods=n.pods) for n in rng.sample(nodes, len(nodes))]
        items = sorted(previous.assignments.items())
        shuffled_previous = {name: rng.sample(list(hosts), len(hosts)) for name, hosts in rng.sample(items, len(items))}
        assert place(rng.sample(workloads, len(workloads)), shuffled_nodes, previous=shuffled_previous) == expected


def test_ties_are_broken_by_a_stable_hash_of_app_and_host() -> None:
    nodes = [host("a"), host("b"), host("c")]
    chosen: Counter[str] = Counter()
    for i in range(30):
        name = f"app{i}/c"
        (picked,) = place([app(name)], nodes).hosts_of(name)
        best = max(nodes, key=lambda n: hashlib.sha256(f"{name}\0{n.name}".encode()).digest()[:8]).name
        assert picked == best
        chosen[picked] += 1
    assert len(chosen) == 3  # not the first host by name every time


def test_every_process_computes_the_same_placement() -> None:
    # str hashes (and so set order) differ between processes with different PYTHONHASHSEED;
    # the hosts of a lattice are such processes.
    script = (
        "from tests.plan.test_placement import busy_lattice\n"
        "from wasmlet.plan import place\n"
        "w, n = busy_lattice()\n"
        "print(place(w, n, previous=place(w[:7], n[3:])).model_dump_json())\n"
    )
    root = Path(__file__).resolve().parents[2]
    outputs = {
        subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True,
                       timeout=60, env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1
    workloads, nodes = busy_lattice()
    assert outputs.pop().strip() == place(workloads, nodes, previous=place(workloads[:7], nodes[3:])).model_dump_json()


_TAINTS = [WASM_TAINT, Taint(key="spot", effect="PreferNoSchedule"), Taint(key="drain", effect="NoExecute")]
_TOLERATIONS = [TOLERATE_WASM, Toleration(key="spot", operator="Exists"), Toleration(operator="Exists")]


@st.composite
def lattices(draw: st.DrawFn) -> tuple[list[Workload], list[Node]]:
    names = draw(st.lists(st.sampled_from([f"h{i}" for i in range(8)]), unique=True, max_size=7))
    nodes = [Node(
        name=name,
        labels={**({ZONE_LABEL: z} if (z := draw(st.sampled_from(["a", "b", "c", None]))) else {}),
                **({"node-type": "wasm"} if draw(st.booleans()) else {})},
        taints=tuple(draw(st.lists(st.sampled_from(_TAINTS), unique=True, max_size=2))),
        memory=draw(st.sampled_from([None, 256 * Mi, 512 * Mi])),
        pods=draw(st.sampled_from([None, 1, 2, 3])),
    ) for name in names]
    workloads = [Workload(
        name=f"app{i}/c",
        memory=draw(st.sampled_from([64 * Mi, 128 * Mi, 200 * Mi])),
        priority=draw(st.sampled_from([0, 100, 1_000_000])),
        preempts=draw(st.booleans()),
        placement=Placement(
            replicas=draw(st.integers(0, 4)),
            node_selector=ON_WASM_NODES if draw(st.booleans()) else (),
            tolerations=tuple(draw(st.lists(st.sampled_from(_TOLERATIONS), unique=True, max_size=2))),
            spread=draw(st.sampled_from([(), spread(1), spread(2), spread(1, when_unsatisfiable="ScheduleAnyway"),
                                         spread(1, node_taints_policy="Honor")])),
        ),
    ) for i in range(draw(st.integers(0, 6)))]
    return workloads, nodes


def check_invariants(workloads: list[Workload], nodes: list[Node], result: PlacementResult) -> None:
    by_name = {n.name: n for n in nodes}
    memory: Counter[str] = Counter()
    pods: Counter[str] = Counter()
    assert sorted(result.assignments) == sorted(w.name for w in workloads)
    for w in workloads:
        hosts = result.hosts_of(w.name)
        assert len(hosts) == len(set(hosts)) <= w.replicas
        assert (len(hosts) < w.replicas) == (w.name in result.pending)
        for name in hosts:
            node = by_name[name]
            assert w.placement.selects(node.labels)
            assert all(w.placement.tolerates(t) for t in node.taints if t.effect != "PreferNoSchedule")
            memory[name] += w.memory
            pods[name] += 1
    for node in nodes:
        assert node.memory is None or memory[node.name] <= node.memory
        assert node.pods is None or pods[node.name] <= node.pods
    for reason in result.pending.values():
        assert f"0/{len(nodes)} hosts: " in reason


@fuzz(300)
@given(lattices(), st.randoms(use_true_random=False))
def test_placement_properties(lattice: tuple[list[Workload], list[Node]], rng: random.Random) -> None:
    workloads, nodes = lattice
    result = place(workloads, nodes)
    check_invariants(workloads, nodes, result)
    # Fresh placements hold every hard spread constraint.
    for w in workloads:
        for c in w.placement.spread:
            if c.when_unsatisfiable != "DoNotSchedule":
                continue
            eligible = {n.labels[ZONE_LABEL] for n in nodes if ZONE_LABEL in n.labels
                        and w.placement.selects(n.labels)
                        and (c.node_taints_policy == "Ignore" or all(
                            w.placement.tolerates(t) for t in n.taints if t.effect != "PreferNoSchedule"))}
            counts = Counter(next(n.zone for n in nodes if n.name == h) for h in result.hosts_of(w.name))
            if eligible:
                assert max(counts.values(), default=0) - min(counts[z] for z in eligible) <= c.max_skew
    # Order never matters.
    assert place(rng.sample(workloads, len(workloads)), rng.sample(nodes, len(nodes))) == result
    # Fed back as previous, the result is a fixed point: nothing moves, the reasons stay.
    assert place(workloads, nodes, previous=result) == result
    # A host joining moves nothing.
    joined = place(workloads, [*nodes, Node(name="new", labels={ZONE_LABEL: "c"})], previous=result)
    check_invariants(workloads, [*nodes, Node(name="new", labels={ZONE_LABEL: "c"})], joined)
    assert moves(result, joined) == 0


@fuzz(200)
@given(lattices(), st.data())
def test_placement_with_any_previous(lattice: tuple[list[Workload], list[Node]], data: st.DataObject) -> None:
    workloads, nodes = lattice
    names = [n.name for n in nodes] + ["gone"]
    previous = {w.name: data.draw(st.lists(st.sampled_from(names), max_size=5)) for w in workloads}
    result = place(workloads, nodes, previous=previous)
    check_invariants(workloads, nodes, result)
    for reason in result.pending.values():
        assert reason.startswith(("preempted by ", "0/", f"{reason.split('/')[0]}/"))
    shuffled = {name: list(reversed(hosts)) for name, hosts in reversed(list(previous.items()))}
    assert place(list(reversed(workloads)), list(reversed(nodes)), previous=shuffled) == result
