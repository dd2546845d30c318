"""``place``: which hosts of a lattice run which apps, as a pure function of what is wanted and who is there.

Semantics (those of the Kubernetes scheduler, so users know them already)
--------------------------------------------------------------------------
The unit placed is a component (``Workload``, named ``app/component``); it
runs on at most one replica per host, so ``replicas`` is a number of hosts.
A host can take a replica when, in this order (the first that fails is the
reason given):

1. it meets the node selector (``nodeAffinity.required``: terms ORed, their
   requirements ANDed);
2. every taint of effect ``NoSchedule`` or ``NoExecute`` on it is tolerated
   (``PreferNoSchedule`` only ranks the host last);
3. every ``DoNotSchedule`` spread constraint holds once the replica is
   there: the host has the ``topologyKey`` label, and its domain's count of
   this app's replicas, plus one, minus the smallest count over the eligible
   domains is at most ``maxSkew`` (Kubernetes' ``PodTopologySpread``, with
   ``minDomains``, ``nodeAffinityPolicy`` and ``nodeTaintsPolicy``);
4. it has room: the ``memoryLimit`` of its replicas stays within its memory,
   their number within its ``pods``.

Apps are placed in order of priority (highest first, then by name). Among the
hosts that can take a replica, the one chosen has the fewest untolerated
``PreferNoSchedule`` taints, then the least ``ScheduleAnyway`` skew, then the
emptiest domain, then the least load (the larger of its memory and pod use,
in thousandths), then the highest rendezvous hash ``sha256(app, host)``.

Priority and preemption. When no host has room, an app whose class allows it
(``preemptionPolicy: PreemptLowerPriority``, the default) displaces replicas
of strictly lower priority that ``previous`` had on a host, choosing the host
whose victims have the lowest highest priority, then the fewest victims. A
displaced app is re-placed elsewhere if it can be; if not, it is pending
with the reason ``preempted by APP (priority N); ...``.

Stability. Given ``previous`` (what ran where), an app keeps each host it
had while that host is alive, still meets the selector and taints, and has
room; it only gets new hosts for the replicas it lacks, and gives back the
surplus after a scale-down (from the most crowded domain first). So a host
joining moves nothing, and a host leaving moves only its replicas (and what
they displace by priority). Unlike Kubernetes' ``IgnoredDuringExecution``, a
replica on a host that no longer meets its selector or gains a taint it does
not tolerate (even ``NoSchedule``) moves at once: a Wasm replica starts in
milliseconds, and that is how a host is cordoned or drained. Spread is
checked when a replica is placed, and kept replicas are not moved to repair
it (Kubernetes leaves that to the descheduler).

An app not fully placed gets a reason naming, host by host, the first
constraint that host fails, as the scheduler's FailedScheduling event does:
``0/3 hosts: 1 has taint wasm=true:NoSchedule not tolerated, 2 lack label
node-type=wasm``.

How the hosts of a lattice agree: the same function, the same inputs
---------------------------------------------------------------------
Every host computes ``place`` itself, and they agree because it is
deterministic: inputs are sorted by name, ties are broken by a sha256 of
names, nothing depends on dict or set order, clocks or randomness. The
inputs must be the same on every host: the desired state as stored in the
JetStream key-value bucket, the live hosts as their heartbeats there say,
and ``previous`` as the assignments the hosts report running in those same
heartbeats (never a host's private memory, which a host that just joined
would not have). A host then starts what the result gives it and stops the
rest.

The alternative, one reconciler elected through a KV lease, was not chosen:
it adds a lease protocol to get right (expiry, fencing a deposed leader that
still writes), and while the leader is dead nothing is re-placed until its
lease expires, which adds the lease time to every failover. Computing
placement everywhere costs little (apps x replicas x hosts steps), needs no
coordination beyond the heartbeats the lattice has anyway, and lets any host
answer "what runs where, and why is this app pending" from its own view.
Two hosts reading the bucket a heartbeat apart may disagree for that long;
the result is a replica briefly run twice or started late, never lost
desired state.

In a network partition, each side places with the hosts it can see: each
side gives every app its full replica count, so an app may run on more
replicas than asked until the partition heals; then the heartbeats of both
sides meet in ``previous`` and the surplus is given back by the same
deterministic rule on every host. Desired-state writes (deploy, rollback,
drain) need a JetStream quorum: the side without a majority of the NATS
servers keeps serving what it runs but cannot change it, and nothing is
acknowledged that the quorum has not stored.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from .._errors import ManifestError
from ._kube import Node, PriorityClass, priority_of
from ._scheduling import Placement, SpreadConstraint, Taint
from ._spec import ComponentSpec

__all__ = ["PlacementResult", "Workload", "place"]


@dataclass(frozen=True)
class Workload:
    """One component to place: its name (``app/component``), memory per replica and placement.

    ``priority`` is the value of its ``PriorityClass``; ``preempts`` is false
    for a class with ``preemptionPolicy: Never``.
    """

    name: str
    memory: int = 0
    placement: Placement = field(default_factory=Placement)
    priority: int = 0
    preempts: bool = True

    @property
    def replicas(self) -> int:
        return self.placement.replicas

    @classmethod
    def from_spec(cls, spec: ComponentSpec, priority_classes: Iterable[PriorityClass] = ()) -> Workload:
        """The workload of a component: its memory request is its ``memoryLimit``.

        The priority is that of the class its ``priority`` trait names, else of
        the ``globalDefault`` class, else 0. Raises ``ManifestError`` for a class
        no ``PriorityClass`` defines (Kubernetes refuses such a pod too).
        """
        classes = {c.name: c for c in priority_classes}
        try:
            found = priority_of(spec.placement.priority_class, classes)
        except KeyError:
            known = ", ".join(sorted(classes)) or "none"
            raise ManifestError(spec.source, [(
                f"component {spec.name}: traits[type=priority].properties.className",
                f"no PriorityClass named {spec.placement.priority_class!r} (known: {known})",
            )]) from None
        return cls(name=spec.qualified_name, memory=spec.memory_limit, placement=spec.placement,
                   priority=found.value if found else 0,
                   preempts=found is None or found.preemption_policy == "PreemptLowerPriority")


class PlacementResult(BaseModel):
    """Each app's hosts (sorted; every app given is listed, with no hosts if it got none), and why some are short.

    A pydantic model, so it can be published as JSON (``model_dump_json``) and read back.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    assignments: dict[str, tuple[str, ...]]
    pending: dict[str, str]  # app -> reason, for every app with fewer hosts than replicas

    def hosts_of(self, app: str) -> tuple[str, ...]:
        return self.assignments.get(app, ())

    def apps_on(self, host: str) -> tuple[str, ...]:
        return tuple(app for app, hosts in self.assignments.items() if host in hosts)


def _rank(app: str, host: str) -> int:
    """Rendezvous hash: the same on every host and every run (``hash()`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(f"{app}\0{host}".encode()).digest()[:8], "big")


def _size(value: int) -> str:
    for unit, factor in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if value >= factor and value % factor == 0:
            return f"{value // factor}{unit}"
    return str(value)


class _Lattice:
    """Capacity in use: replicas placed (committed) and replicas ``previous`` still holds a place for (reserved).

    ``memory`` and ``pods`` are running sums of both, so a capacity check costs
    no walk over what a host runs.
    """

    def __init__(self, nodes: list[Node]) -> None:
        self.memory = dict.fromkeys((n.name for n in nodes), 0)
        self.pods = dict.fromkeys((n.name for n in nodes), 0)
        self.reserved: dict[str, dict[str, tuple[int, int]]] = {n.name: {} for n in nodes}  # app -> (prio, mem)
        self.preempted: dict[str, Workload] = {}  # app -> the first app that displaced one of its replicas

    def reserve(self, node: Node, w: Workload) -> None:
        self.reserved[node.name][w.name] = (w.priority, w.memory)
        self.memory[node.name] += w.memory
        self.pods[node.name] += 1

    def release(self, node: Node, app: str) -> None:
        entry = self.reserved[node.name].pop(app, None)
        if entry is not None:
            self.memory[node.name] -= entry[1]
            self.pods[node.name] -= 1

    def shortage(self, node: Node, w: Workload, without: Iterable[str] = ()) -> str | None:
        """What ``node`` lacks to take a replica of ``w`` (reservations ``without`` evicted): "memory",
        "pods", or ``None`` if it has room."""
        memory, pods = self.memory[node.name], self.pods[node.name]
        reserved = self.reserved[node.name]
        for app in without:
            memory -= reserved[app][1]
            pods -= 1
        if node.memory is not None and memory + w.memory > node.memory:
            return "memory"
        if node.pods is not None and pods + 1 > node.pods:
            return "pods"
        return None

    def load(self, node: Node, w: Workload) -> tuple[int, int]:
        memory, pods = self.memory[node.name], self.pods[node.name]
        shares = [(memory + w.memory) * 1000 // node.memory if node.memory else 0,
                  (pods + 1) * 1000 // node.pods if node.pods else 0]
        return max(shares), pods

    def victims(self, node: Node, w: Workload) -> list[tuple[int, str]] | None:
        """The fewest lowest-priority reserved replicas whose eviction gives ``w`` room, or ``None``."""
        if not w.preempts:
            return None
        lower = sorted((prio, app) for app, (prio, _) in self.reserved[node.name].items() if prio < w.priority)
        for count in range(1, len(lower) + 1):
            if self.shortage(node, w, [app for _, app in lower[:count]]) is None:
                return lower[:count]
        return None

    def commit(self, node: Node, w: Workload, victims: Iterable[tuple[int, str]] = ()) -> None:
        for _, app in victims:
            self.release(node, app)
            self.preempted.setdefault(app, w)
        self.memory[node.name] += w.memory
        self.pods[node.name] += 1


class _View:
    """What one ``Placement`` makes of each host, worked out once per host and shared by every workload
    with that placement (most have the default one)."""

    def __init__(self, placement: Placement, nodes: list[Node]) -> None:
        self.placement = placement
        self.nodes = nodes
        self._verdicts: dict[str, tuple[bool, Taint | None, int]] = {}
        self._domains: dict[SpreadConstraint, list[str]] = {}

    def verdict(self, node: Node) -> tuple[bool, Taint | None, int]:
        """(meets the selector, the first untolerated hard taint, how many PreferNoSchedule are untolerated)."""
        found = self._verdicts.get(node.name)
        if found is None:
            untolerated = sorted((t for t in node.taints if not self.placement.tolerates(t)), key=str)
            found = (self.placement.selects(node.labels),
                     next((t for t in untolerated if t.effect != "PreferNoSchedule"), None),
                     sum(t.effect == "PreferNoSchedule" for t in untolerated))
            self._verdicts[node.name] = found
        return found

    def allowed(self, node: Node) -> bool:
        selects, taint, _ = self.verdict(node)
        return selects and taint is None

    def domains(self, c: SpreadConstraint) -> list[str]:
        """The eligible domains of ``c``: its policies say whether selector and taints rule hosts out."""
        found = self._domains.get(c)
        if found is None:
            found = sorted({
                n.labels[c.topology_key] for n in self.nodes
                if c.topology_key in n.labels
                and (c.node_affinity_policy == "Ignore" or self.verdict(n)[0])
                and (c.node_taints_policy == "Ignore" or self.verdict(n)[1] is None)
            })
            self._domains[c] = found
        return found


# One spread constraint with this workload's replica count per domain and the smallest eligible count.
_Counts = list[tuple[SpreadConstraint, Counter[str | None], int]]


class _Fit:
    """One workload against the hosts."""

    def __init__(self, w: Workload, view: _View) -> None:
        self.w = w
        self.view = view
        self._ranks: dict[str, int] = {}

    def rank(self, node: Node) -> int:
        found = self._ranks.get(node.name)
        if found is None:
            found = self._ranks[node.name] = _rank(self.w.name, node.name)
        return found

    def allowed(self, node: Node) -> bool:
        return self.view.allowed(node)

    def counts(self, placed: list[Node]) -> _Counts:
        """Where the replicas placed so far are, once per step rather than once per host looked at."""
        out: _Counts = []
        for c in self.w.placement.spread:
            counts = Counter(n.labels.get(c.topology_key) for n in placed)
            domains = self.view.domains(c)
            least = min((counts[d] for d in domains), default=0)
            if c.min_domains is not None and len(domains) < c.min_domains:
                least = 0
            out.append((c, counts, least))
        return out

    @staticmethod
    def skew(node: Node, c: SpreadConstraint, counts: Counter[str | None], least: int) -> int | None:
        """The skew with one more replica on ``node`` (``None`` if it lacks the topology label)."""
        domain = node.labels.get(c.topology_key)
        return None if domain is None else counts[domain] + 1 - least

    def spread_failure(self, node: Node, spread: _Counts) -> tuple[str, str] | None:
        for c, counts, least in spread:
            if c.when_unsatisfiable != "DoNotSchedule":
                continue
            skew = self.skew(node, c, counts, least)
            if skew is None:
                return (f"lacks label {c.topology_key} to spread by", f"lack label {c.topology_key} to spread by")
            if skew > c.max_skew:
                text = f"would exceed maxSkew {c.max_skew} across {c.topology_key}"
                return text, text
        return None

    def score(self, node: Node, spread: _Counts, lattice: _Lattice) -> tuple[int, int, int, tuple[int, int],
                                                                              int, str]:
        soft = hard = 0
        for c, counts, least in spread:
            skew = self.skew(node, c, counts, least)
            if c.when_unsatisfiable == "ScheduleAnyway":
                soft += skew if skew is not None else 1 << 20
            else:
                hard += skew or 0
        return (self.view.verdict(node)[2], soft, hard, lattice.load(node, self.w), -self.rank(node), node.name)

    def failure(self, node: Node, placed: list[Node], spread: _Counts, lattice: _Lattice) -> tuple[str, str]:
        """The first constraint ``node`` fails for one more replica, for one host and for several."""
        if any(n.name == node.name for n in placed):
            return "already runs a replica", "already run a replica"
        selects, taint, _ = self.view.verdict(node)
        if not selects:
            terms = self.w.placement.node_selector
            if len(terms) == 1:
                first = next(r for r in terms[0].requirements if not r.matches(node.labels))
                return first.failure()
            return (f"matches none of the {len(terms)} node affinity terms",
                    f"match none of the {len(terms)} node affinity terms")
        if taint is not None:
            return f"has taint {taint} not tolerated", f"have taint {taint} not tolerated"
        failed = self.spread_failure(node, spread)
        if failed is not None:
            return failed
        short = lattice.shortage(node, self.w)
        if short == "memory":
            size = _size(self.w.memory)
            return f"has less than {size} of memory free", f"have less than {size} of memory free"
        if short == "pods":
            return "has no free app slot (pods)", "have no free app slot (pods)"
        return "cannot take it", "cannot take it"  # not reached: a host with none of the above is chosen


def _unique(names: Iterable[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"two {what} are named {name!r}; names must be unique")
        seen.add(name)


def _crowd(w: Workload, node: Node, kept: list[Node]) -> tuple[int, int, str]:
    """How crowded ``node``'s spread domains are among ``kept``, then how low it ranks: the surplus goes first."""
    count = 0
    for c in w.placement.spread:
        domain = node.labels.get(c.topology_key)
        if domain is not None:
            count += sum(1 for n in kept if n.labels.get(c.topology_key) == domain)
    return count, -_rank(w.name, node.name), node.name


def _trim(w: Workload, kept: list[Node]) -> list[Node]:
    """At most ``replicas`` of ``kept`` (after a scale-down, or a partition healed)."""
    kept = list(kept)
    while len(kept) > w.replicas:
        drop = max(kept, key=lambda n: _crowd(w, n, kept))
        kept = [n for n in kept if n.name != drop.name]
    return kept


def place(desired: Iterable[Workload], hosts: Iterable[Node],
          previous: PlacementResult | Mapping[str, Iterable[str]] | None = None) -> PlacementResult:
    """Place every workload of ``desired`` on ``hosts``; see the module docstring for the rules.

    ``previous`` is what ran where (a ``PlacementResult``, or app name -> host
    names); apps and hosts in it that are no longer given are ignored. The
    result depends only on the values given, never on their order. Raises
    ``ValueError`` if two workloads or two hosts share a name.
    """
    workloads = sorted(desired, key=lambda w: (-w.priority, w.name))
    nodes = sorted(hosts, key=lambda n: n.name)
    _unique((w.name for w in workloads), "workloads")
    _unique((n.name for n in nodes), "hosts")
    by_name = {n.name: n for n in nodes}
    before = previous.assignments if isinstance(previous, PlacementResult) else (previous or {})

    lattice = _Lattice(nodes)
    views: dict[Placement, _View] = {}
    fits = {w.name: _Fit(w, views.setdefault(w.placement, _View(w.placement, nodes))) for w in workloads}
    kept: dict[str, list[Node]] = {}
    for w in workloads:
        had = before.get(w.name, ())
        if isinstance(had, str):
            raise TypeError(f"previous[{w.name!r}] must be host names, not the string {had!r}")
        valid = [by_name[h] for h in sorted(set(had)) if h in by_name and fits[w.name].allowed(by_name[h])]
        kept[w.name] = _trim(w, valid)
        for node in kept[w.name]:
            lattice.reserve(node, w)

    placements: dict[str, list[Node]] = {}
    for w in workloads:
        fit = fits[w.name]
        for node in kept[w.name]:
            lattice.release(node, w.name)
        placed: list[Node] = []
        for node in kept[w.name]:
            if lattice.shortage(node, w) is None:
                lattice.commit(node, w)
                placed.append(node)
            elif (victims := lattice.victims(node, w)) is not None:
                lattice.commit(node, w, victims)
                placed.append(node)
        while len(placed) < w.replicas:
            taken = {n.name for n in placed}
            spread = fit.counts(placed)
            candidates = [n for n in nodes if n.name not in taken and fit.allowed(n)
                          and fit.spread_failure(n, spread) is None]
            roomy = [n for n in candidates if lattice.shortage(n, w) is None]
            if roomy:
                node = min(roomy, key=lambda n: fit.score(n, spread, lattice))
                lattice.commit(node, w)
            else:
                options = [(max(v)[0], len(v), fit.score(n, spread, lattice), n, v) for n in candidates
                           if (v := lattice.victims(n, w)) is not None]
                if not options:
                    break
                *_, node, victims = min(options, key=lambda o: o[:3])
                lattice.commit(node, w, victims)
            placed.append(node)
        placements[w.name] = placed
    # Reasons are read off the final state, so they stay the same when the result is fed back as `previous`.
    pending = {w.name: _reason(fits[w.name], nodes, placements[w.name], lattice)
               for w in workloads if len(placements[w.name]) < w.replicas}
    return PlacementResult(
        assignments={name: tuple(sorted(n.name for n in placements[name])) for name in sorted(placements)},
        pending=dict(sorted(pending.items())),
    )


def _reason(fit: _Fit, nodes: list[Node], placed: list[Node], lattice: _Lattice) -> str:
    w = fit.w
    spread = fit.counts(placed)
    groups: Counter[tuple[str, str]] = Counter(fit.failure(n, placed, spread, lattice) for n in nodes)
    parts = [f"{count} {one if count == 1 else many}" for (one, many), count in sorted(groups.items())]
    text = f"0/{len(nodes)} hosts: " + (", ".join(parts) if parts else "no live host in the lattice")
    if placed:
        text = f"{len(placed)}/{w.replicas} replicas placed; {text}"
    by = lattice.preempted.get(w.name)
    if by is not None:
        text = f"preempted by {by.name} (priority {by.priority}); {text}"
    return text
