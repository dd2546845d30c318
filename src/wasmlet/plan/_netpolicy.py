"""Network policies from an app's egress allow-list: what the cluster enforces at the pod.

wasmlet enforces ``allowedOutboundHosts`` per guest (``_egress``, then after
DNS in the guest sandbox). A Kubernetes user also wants the cluster to
enforce it at the pod, with a ``networking.k8s.io/v1`` ``NetworkPolicy`` and,
on Calico, a ``projectcalico.org/v3`` ``NetworkPolicy`` (the seed's
``wasm-to-db``). Both are plain functions of the parsed patterns here.

How each pattern shape becomes a layer-3/4 rule (``egress_rules``):

- **address or CIDR** (``10.1.2.3``, ``10.0.0.0/8``, ``[::1]``): that block
  (``ipBlock.cidr``; Calico ``destination.nets``), exactly. Blocks of the
  same protocol and ports are merged where they are adjacent
  (``ipaddress.collapse_addresses``: the same addresses, fewer rules).
- **name** (``db``, ``api.example.com``) and **wildcard name**
  (``*.example.com``): a NetworkPolicy cannot name a DNS name (neither
  Kubernetes' nor Calico's open-source one). A name mapped with ``peers``
  (``db`` -> ``tier=database``) becomes a pod selector: the pods behind that
  name. An unmapped one is refused (``PolicyError``), unless
  ``unmapped="any-address"``: then any address on the pattern's ports, which
  is wider than the guest's rule, and ``notes`` say so.
- **any host** (``*``) with ports: any address (``0.0.0.0/0`` and ``::/0``)
  on those ports: what the guest may reach, exactly. With any port too
  (``*://*:*``, ``https://*:*``) it is all egress: refused unless
  ``allow_all=True``, never emitted silently.
- **names under** ``.wasmlet`` (cross-app calls, docs/lattice.md): no rule;
  they go over the lattice's NATS, which the hosts' own policy allows.
- **ports**: one port, a range ``A..B`` (``B`` excluded, as Spin writes it;
  ``port: A, endPort: B-1`` in Kubernetes, ``"A:B-1"`` in Calico, both
  inclusive), or ``*`` (every port).
- **scheme**: ``udp`` is UDP, ``*`` is TCP and UDP (any port: any protocol),
  every other scheme (``http``, ``https``, ``postgres``...) is TCP.

A pod runs a wasmlet host and every guest placed on it, so the cluster sees
one pod for all of them: the policies of the apps a host runs add up (that
is how NetworkPolicies combine), and the per-guest boundary stays wasmlet's.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from ._egress import AllowedHost

__all__ = [
    "DEFAULT_POD_LABELS",
    "MAX_EGRESS_RULES",
    "EgressRule",
    "PolicyError",
    "calico_network_policy",
    "egress_rules",
    "kubernetes_network_policy",
    "parse_labels",
]

# The label the seed's Calico policy selects (application == 'wasm'); the DaemonSet's pods carry it.
DEFAULT_POD_LABELS: tuple[tuple[str, str], ...] = (("application", "wasm"),)
# Each rule is an iptables/eBPF rule on every node a wasmlet pod runs on, and the object must fit
# etcd's 1.5 MiB; an allow-list past this is written with ranges and wildcards instead.
MAX_EGRESS_RULES = 500
INTERNAL_SUFFIX = ".wasmlet"  # cross-app calls: http://APP.COMPONENT.wasmlet (guest/_wasi_http.py)
_ANYWHERE = ("0.0.0.0/0", "::/0")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")

Unmapped = Literal["refuse", "any-address"]


class PolicyError(ValueError):
    """One allow-list entry a policy cannot express; ``index`` is its place in the list."""

    def __init__(self, index: int, message: str) -> None:
        self.index = index
        super().__init__(message)


@dataclasses.dataclass(frozen=True, order=True)
class EgressRule:
    """Traffic a pod may send: to a CIDR or to pods with labels, with a protocol, to ports."""

    cidrs: tuple[str, ...] = ()  # ipBlock/nets; empty with no labels: anywhere
    labels: tuple[tuple[str, str], ...] = ()  # a pod selector (the pods behind a mapped name)
    protocol: str | None = "TCP"  # None: every protocol (then ports is None)
    ports: tuple[int, int] | None = None  # [low, high), as AllowedHost.ports; None: every port

    @property
    def anywhere(self) -> bool:
        return not self.cidrs and not self.labels


def parse_labels(text: str) -> tuple[tuple[str, str], ...]:
    """``KEY=VALUE[,KEY=VALUE...]`` as label pairs (``ValueError`` saying what is wrong)."""
    pairs: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not key:
            raise ValueError(f"{text!r}: expected KEY=VALUE[,KEY=VALUE...], such as tier=database")
        _check_label(key, value, text)
        pairs[key] = value
    return tuple(sorted(pairs.items()))


def _check_label(key: str, value: str, text: str) -> None:
    # Kubernetes label syntax (apimachinery validation): a name of <= 63 [A-Za-z0-9._-] characters
    # with an optional DNS prefix; a value likewise, or empty. Quotes would break Calico selectors.
    name = _LABEL_NAME
    prefix, _, short = key.rpartition("/")
    if not short or not name.fullmatch(short) or (prefix and not _LABEL_PREFIX.fullmatch(prefix)):
        raise ValueError(f"{text!r}: {key!r} is not a label key")
    if not name.fullmatch(value):
        raise ValueError(f"{text!r}: {value!r} is not a label value (at most 63 of A-Z a-z 0-9 - _ .)")


def _protocols(pattern: AllowedHost) -> tuple[str | None, ...]:
    if pattern.scheme is None:
        return (None,) if pattern.ports is None else ("TCP", "UDP")
    return ("UDP",) if pattern.scheme == "udp" else ("TCP",)


def _peer_key(pattern: AllowedHost) -> str:
    return pattern.host if pattern.kind == "name" else "*" + pattern.host  # "subdomain": host is ".suffix"


def egress_rules(patterns: Sequence[AllowedHost], peers: Mapping[str, tuple[tuple[str, str], ...]] | None = None,
                 *, unmapped: Unmapped = "refuse", allow_all: bool = False,
                 notes: list[str] | None = None) -> list[EgressRule]:
    """The rules ``patterns`` make (module docstring); ``PolicyError`` for one they cannot.

    ``peers`` maps a name pattern as written (``db``, ``*.example.com``) to the labels of the
    pods behind it. Widened rules and skipped entries are described in ``notes`` when given.
    """
    peers = {key.lower().rstrip("."): value for key, value in (peers or {}).items()}
    notes = notes if notes is not None else []
    rules: set[EgressRule] = set()
    for index, pattern in enumerate(patterns):
        protocols = _protocols(pattern)
        if pattern.kind in ("name", "subdomain"):
            if (pattern.host + ".").endswith(INTERNAL_SUFFIX + ".") or pattern.host == INTERNAL_SUFFIX:
                notes.append(f"{pattern.original}: a cross-app call over the lattice, no pod-level rule")
                continue
            labels = peers.get(_peer_key(pattern))
            if labels is not None:
                rules.update(EgressRule(labels=labels, protocol=p, ports=pattern.ports) for p in protocols)
                continue
            if unmapped == "refuse":
                raise PolicyError(index, (
                    f"{pattern.original!r} names a host by DNS name, which a NetworkPolicy cannot express; "
                    f"map it to the pods behind it (--peer {_peer_key(pattern)}=LABEL=VALUE), write its "
                    "addresses (a CIDR), or allow its ports to any address (--unmapped any-address)"))
            notes.append(f"{pattern.original}: widened to any address on its ports (a policy cannot name a host)")
            cidrs: tuple[str, ...] = _ANYWHERE
        elif pattern.kind == "any":
            cidrs = _ANYWHERE
        else:
            assert pattern.network is not None
            cidrs = (str(pattern.network),)
        if cidrs == _ANYWHERE and pattern.ports is None:
            if not allow_all:
                raise PolicyError(index, (
                    f"{pattern.original!r} allows every port of every address: the policy would allow all "
                    "egress; name the ports (https://*:443), or pass --allow-all-egress to emit that"))
            notes.append(f"{pattern.original}: ALL egress is allowed (--allow-all-egress)")
            cidrs = ()
        for protocol in protocols:
            rules.update(EgressRule(cidrs=(cidr,), protocol=protocol, ports=pattern.ports) for cidr in cidrs)
            if not cidrs:
                rules.add(EgressRule(protocol=protocol, ports=pattern.ports))
    merged = _collapse(rules)
    if len(merged) > MAX_EGRESS_RULES:
        raise PolicyError(-1, (
            f"the allow-list makes {len(merged)} egress rules, more than the {MAX_EGRESS_RULES} a policy "
            "should carry; write ranges (10.0.0.0/8) or wildcards (https://*:443) instead"))
    return merged


def _collapse(rules: Iterable[EgressRule]) -> list[EgressRule]:
    """Merge the CIDR rules of one protocol and ports into as few blocks as cover the same addresses."""
    blocks: dict[tuple[str | None, tuple[int, int] | None], list[Any]] = {}
    out: list[EgressRule] = []
    for rule in rules:
        if rule.cidrs:
            blocks.setdefault((rule.protocol, rule.ports), []).extend(
                ipaddress.ip_network(c) for c in rule.cidrs)
        else:
            out.append(rule)
    for (protocol, ports), networks in blocks.items():
        for version in (4, 6):
            same = [n for n in networks if n.version == version]
            out.extend(EgressRule(cidrs=(str(n),), protocol=protocol, ports=ports)
                       for n in ipaddress.collapse_addresses(same))
    if any(r.anywhere and r.protocol is None for r in out):
        return [EgressRule(protocol=None)]  # all egress covers every other rule
    return sorted(out, key=_order)


def _order(rule: EgressRule) -> tuple[Any, ...]:
    """Selectors first, then blocks by address (IPv4 first), then protocol and ports: a stable output."""
    blocks = [(n.version, int(n.network_address), n.prefixlen) for n in map(ipaddress.ip_network, rule.cidrs)]
    return rule.labels, blocks, rule.protocol or "", rule.ports or (0, 0)


def _selector(labels: Iterable[tuple[str, str]]) -> str:
    """Calico's selector syntax: ``key == 'value'`` joined with ``&&``."""
    text = " && ".join(f"{key} == '{value}'" for key, value in labels)
    return text or "all()"


def _metadata(name: str, namespace: str | None, annotations: Mapping[str, str]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    if annotations:
        metadata["annotations"] = dict(annotations)
    return metadata


def _k8s_ports(rule: EgressRule) -> list[dict[str, Any]] | None:
    if rule.protocol is None:
        return None
    port: dict[str, Any] = {"protocol": rule.protocol}
    if rule.ports is not None:
        low, high = rule.ports
        port["port"] = low
        if high - low > 1:
            port["endPort"] = high - 1  # inclusive (NetworkPolicyPort.endPort)
    return [port]


def kubernetes_network_policy(name: str, rules: Sequence[EgressRule],
                              pod_labels: Iterable[tuple[str, str]] = DEFAULT_POD_LABELS,
                              namespace: str | None = None,
                              annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A ``networking.k8s.io/v1`` ``NetworkPolicy``: egress from the pods with ``pod_labels`` only by ``rules``.

    No rule: no egress at all (an Egress policy with an empty list denies everything).
    """
    egress: list[dict[str, Any]] = []
    for rule in rules:
        entry: dict[str, Any] = {}
        if rule.labels:
            entry["to"] = [{"podSelector": {"matchLabels": dict(rule.labels)}}]
        elif rule.cidrs:
            entry["to"] = [{"ipBlock": {"cidr": cidr}} for cidr in rule.cidrs]
        ports = _k8s_ports(rule)
        if ports:
            entry["ports"] = ports
        egress.append(entry)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(name, namespace, annotations or {}),
        "spec": {"podSelector": {"matchLabels": dict(pod_labels)}, "policyTypes": ["Egress"], "egress": egress},
    }


def calico_network_policy(name: str, rules: Sequence[EgressRule],
                          pod_labels: Iterable[tuple[str, str]] = DEFAULT_POD_LABELS,
                          namespace: str | None = None,
                          annotations: Mapping[str, str] | None = None,
                          explicit_deny: bool = True) -> dict[str, Any]:
    """A Calico ``projectcalico.org/v3`` ``NetworkPolicy`` of the same rules.

    ``explicit_deny``: the seed's ``wasm-to-db`` shape, ``action: Allow`` rules, then
    ``action: Deny`` with ``destination: {}`` (a rule of a policy with a lower ``order``, such
    as a Kubernetes NetworkPolicy's 1000, is matched first). Without it, only the Allow rules:
    Calico drops what no policy of the tier matches, and Calico stops at the first Deny, so
    the policies of several apps on the same pods add up only without it (docs/kubernetes.md).
    """
    egress: list[dict[str, Any]] = []
    for rule in rules:
        entry: dict[str, Any] = {"action": "Allow"}
        if rule.protocol is not None:
            entry["protocol"] = rule.protocol
        destination: dict[str, Any] = {}
        if rule.labels:
            destination["selector"] = _selector(rule.labels)
        elif rule.cidrs:
            destination["nets"] = list(rule.cidrs)
        if rule.ports is not None:
            low, high = rule.ports
            destination["ports"] = [low if high - low == 1 else f"{low}:{high - 1}"]  # Calico ranges: inclusive
        if destination:
            entry["destination"] = destination
        egress.append(entry)
    if explicit_deny and not any(r.anywhere and r.protocol is None for r in rules):
        egress.append({"action": "Deny", "destination": {}})
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicy",
        "metadata": _metadata(name, namespace, annotations or {}),
        "spec": {"selector": _selector(pod_labels), "types": ["Egress"], "egress": egress},
    }
