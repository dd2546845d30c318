"""Network policies from allow-lists (wasmlet.plan: egress_rules and the two policy kinds).

Each rule shape (host, CIDR, port, scheme) is checked twice: against the policy written out by
hand, and by reading the policy back into addresses/selectors, protocols and port ranges and
comparing that with what the allow-list allows. The seed's wasm-to-db comes out of
postgres://db:5432. Then the attacks: wildcards, allow-all, huge lists, invalid CIDRs.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.kubernetes.conftest import SEED, validate

from wasmlet import ManifestError
from wasmlet.plan import (
    AllowedHost,
    RenderOptions,
    calico_network_policy,
    egress_rules,
    kubernetes_network_policy,
    parse_allowed_host,
    parse_allowed_hosts,
    parse_labels,
    render_app_resources,
)
from wasmlet.plan._netpolicy import MAX_EGRESS_RULES, PolicyError

ANY = ("0.0.0.0/0", "::/0")
Key = tuple[str | None, tuple[int, int] | None]  # protocol (None: all), [low, high) ports (None: all)


# --- reading policies back -------------------------------------------------------------------------
def _view() -> dict[Key, dict[str, Any]]:
    return {}


def _add(view: dict[Key, dict[str, Any]], key: Key, nets: list[str], labels: tuple[tuple[str, str], ...] | None
         ) -> None:
    entry = view.setdefault(key, {"nets": [], "labels": set()})
    entry["nets"].extend(ipaddress.ip_network(n) for n in nets)
    if labels is not None:
        entry["labels"].add(labels)


def _normal(view: dict[Key, dict[str, Any]]) -> dict[Key, tuple[Any, ...]]:
    out = {}
    for key, entry in view.items():
        nets = tuple(sorted(str(n) for v in (4, 6) for n in ipaddress.collapse_addresses(
            [x for x in entry["nets"] if x.version == v])))
        out[key] = (nets, tuple(sorted(entry["labels"])))
    return out


def read_kubernetes(policy: dict[str, Any]) -> dict[Key, tuple[Any, ...]]:
    view = _view()
    for rule in policy["spec"]["egress"]:
        peers = rule.get("to", [{"ipBlock": {"cidr": c}} for c in ANY])
        ports = rule.get("ports") or [{"protocol": None}]
        for port in ports:
            low = port.get("port")
            key: Key = (port["protocol"], None if low is None else (low, port.get("endPort", low) + 1))
            for peer in peers:
                if "ipBlock" in peer:
                    _add(view, key, [peer["ipBlock"]["cidr"]], None)
                else:
                    _add(view, key, [], tuple(sorted(peer["podSelector"]["matchLabels"].items())))
    return _normal(view)


def read_calico(policy: dict[str, Any]) -> dict[Key, tuple[Any, ...]]:
    view = _view()
    for rule in policy["spec"]["egress"]:
        if rule["action"] == "Deny":
            assert rule == {"action": "Deny", "destination": {}} and rule is policy["spec"]["egress"][-1]
            continue
        destination = rule.get("destination", {})
        ports: list[tuple[int, int] | None] = []
        for port in destination.get("ports", [None]):
            if port is None:
                ports.append(None)
            elif isinstance(port, int):
                ports.append((port, port + 1))
            else:
                low, high = port.split(":")
                ports.append((int(low), int(high) + 1))
        labels = None
        if "selector" in destination:
            labels = tuple(sorted(tuple(term.replace("'", "").split(" == ")) for term in
                                  destination["selector"].split(" && ")))
        for port_range in ports:
            key: Key = (rule.get("protocol"), port_range)
            _add(view, key, [] if labels else destination.get("nets", list(ANY)), labels)  # type: ignore[arg-type]
    return _normal(view)


def expected(patterns: list[AllowedHost], peers: dict[str, tuple[tuple[str, str], ...]]) -> dict[Key, Any]:
    """What each pattern allows, by its own fields (not through egress_rules)."""
    view = _view()
    for pattern in patterns:
        protocols: list[str | None] = ["UDP"] if pattern.scheme == "udp" else ["TCP"]
        if pattern.scheme is None:
            protocols = [None] if pattern.ports is None else ["TCP", "UDP"]
        for protocol in protocols:
            key: Key = (protocol, pattern.ports)
            if pattern.kind in ("name", "subdomain"):
                _add(view, key, [], peers[pattern.host if pattern.kind == "name" else "*" + pattern.host])
            elif pattern.kind == "any":
                _add(view, key, list(ANY), None)
            else:
                _add(view, key, [str(pattern.network)], None)
    return _normal(view)


def policies(texts: list[str], peers: dict[str, tuple[tuple[str, str], ...]] | None = None,
             **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    rules = egress_rules(parse_allowed_hosts(texts), peers or {}, **kwargs)
    k8s, calico = kubernetes_network_policy("p", rules), calico_network_policy("p", rules)
    validate(k8s)
    validate(calico)
    return k8s, calico


# --- the seed ---------------------------------------------------------------------------------------
def _app(tmp_path: Path, hosts: list[str], name: str = "image-processor", components: int = 1) -> Path:
    document = {"apiVersion": "core.oam.dev/v1beta1", "kind": "Application", "metadata": {"name": name},
                "spec": {"components": [
                    {"name": f"c{i}", "type": "wasm", "properties": {
                        "moduleURL": "oci://registry.acme.com/wasm/resize:v1.2.0", "memoryLimit": "128Mi",
                        "capabilities": {"allowedOutboundHosts": hosts}}} for i in range(components)]}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _render(path: Path, **kwargs: Any) -> list[dict[str, Any]]:
    return render_app_resources(path.read_text(), str(path), RenderOptions(image="wasmlet:test", **kwargs))


def test_postgres_urls_are_allow_list_entries_already() -> None:
    """The pure parser takes postgres:// (Spin's well-known port 5432): no change to it was needed."""
    pattern = parse_allowed_host("postgres://db:5432")
    assert (pattern.scheme, pattern.kind, pattern.host, pattern.ports) == ("postgres", "name", "db", (5432, 5433))
    assert parse_allowed_host("postgres://db").ports == (5432, 5433)


def test_the_seed_s_wasm_to_db_comes_out_of_postgres_db_5432(tmp_path: Path) -> None:
    seed = next(d for d in yaml.safe_load_all(SEED.read_text()) if d and d["kind"] == "NetworkPolicy")
    manifest = _app(tmp_path, ["postgres://db:5432"])
    objects = _render(manifest, peers={"db": parse_labels("tier=database")}, policy_name="wasm-to-db",
                      explicit_deny=True, policies_only=True)
    calico = next(o for o in objects if o["apiVersion"] == "projectcalico.org/v3")
    assert (calico["apiVersion"], calico["kind"], calico["metadata"]["name"], calico["spec"]) == \
        (seed["apiVersion"], seed["kind"], seed["metadata"]["name"], seed["spec"])
    kubernetes = next(o for o in objects if o["apiVersion"] == "networking.k8s.io/v1")
    assert kubernetes["spec"] == {
        "podSelector": {"matchLabels": {"application": "wasm"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"podSelector": {"matchLabels": {"tier": "database"}}}],
                    "ports": [{"protocol": "TCP", "port": 5432}]}]}
    assert kubernetes["metadata"]["annotations"]["wasmlet.dev/allowed-outbound-hosts"] == '["postgres://db:5432"]'
    for document in objects:
        validate(document)


def test_without_explicit_deny_calico_policies_of_several_apps_add_up(tmp_path: Path) -> None:
    """Calico stops at the first Deny: per-app policies leave it to the tier's default deny."""
    objects = _render(_app(tmp_path, ["postgres://db:5432"]), peers={"db": parse_labels("tier=database")},
                      policies_only=True)
    calico = next(o for o in objects if o["apiVersion"] == "projectcalico.org/v3")
    assert [r["action"] for r in calico["spec"]["egress"]] == ["Allow"]
    assert calico["metadata"]["name"] == "image-processor-egress"


# --- one test per rule shape ------------------------------------------------------------------------
SHAPES: dict[str, tuple[list[str], dict[str, str], list[dict[str, Any]], list[dict[str, Any]]]] = {
    "host": (["https://api.internal"], {"api.internal": "app=api,tier=backend"},
             [{"to": [{"podSelector": {"matchLabels": {"app": "api", "tier": "backend"}}}],
               "ports": [{"protocol": "TCP", "port": 443}]}],
             [{"action": "Allow", "protocol": "TCP",
               "destination": {"selector": "app == 'api' && tier == 'backend'", "ports": [443]}}]),
    "wildcard-host": (["https://*.db.internal:5432"], {"*.db.internal": "tier=database"},
                      [{"to": [{"podSelector": {"matchLabels": {"tier": "database"}}}],
                        "ports": [{"protocol": "TCP", "port": 5432}]}],
                      [{"action": "Allow", "protocol": "TCP",
                        "destination": {"selector": "tier == 'database'", "ports": [5432]}}]),
    "cidr": (["https://10.0.0.0/8:8443"], {},
             [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"protocol": "TCP", "port": 8443}]}],
             [{"action": "Allow", "protocol": "TCP", "destination": {"nets": ["10.0.0.0/8"], "ports": [8443]}}]),
    "address": (["http://[2001:db8::1]:8080", "http://192.0.2.7"], {},
                [{"to": [{"ipBlock": {"cidr": "192.0.2.7/32"}}], "ports": [{"protocol": "TCP", "port": 80}]},
                 {"to": [{"ipBlock": {"cidr": "2001:db8::1/128"}}], "ports": [{"protocol": "TCP", "port": 8080}]}],
                [{"action": "Allow", "protocol": "TCP", "destination": {"nets": ["192.0.2.7/32"], "ports": [80]}},
                 {"action": "Allow", "protocol": "TCP",
                  "destination": {"nets": ["2001:db8::1/128"], "ports": [8080]}}]),
    "port-range": (["https://10.1.0.0/16:8000..8100"], {},
                   [{"to": [{"ipBlock": {"cidr": "10.1.0.0/16"}}],
                     "ports": [{"protocol": "TCP", "port": 8000, "endPort": 8099}]}],
                   [{"action": "Allow", "protocol": "TCP",
                     "destination": {"nets": ["10.1.0.0/16"], "ports": ["8000:8099"]}}]),
    "any-port": (["https://10.1.2.3:*"], {},
                 [{"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}], "ports": [{"protocol": "TCP"}]}],
                 [{"action": "Allow", "protocol": "TCP", "destination": {"nets": ["10.1.2.3/32"]}}]),
    "any-host-one-port": (["https://*:443"], {},
                          [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]},
                           {"to": [{"ipBlock": {"cidr": "::/0"}}], "ports": [{"protocol": "TCP", "port": 443}]}],
                          [{"action": "Allow", "protocol": "TCP",
                            "destination": {"nets": ["0.0.0.0/0"], "ports": [443]}},
                           {"action": "Allow", "protocol": "TCP", "destination": {"nets": ["::/0"], "ports": [443]}}]),
    "scheme-udp": (["udp://10.0.0.53:53"], {},
                   [{"to": [{"ipBlock": {"cidr": "10.0.0.53/32"}}], "ports": [{"protocol": "UDP", "port": 53}]}],
                   [{"action": "Allow", "protocol": "UDP", "destination": {"nets": ["10.0.0.53/32"], "ports": [53]}}]),
    "scheme-any-one-port": (["*://10.0.0.0/24:53"], {},
                            [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
                              "ports": [{"protocol": "TCP", "port": 53}]},
                             {"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
                              "ports": [{"protocol": "UDP", "port": 53}]}],
                            [{"action": "Allow", "protocol": "TCP",
                              "destination": {"nets": ["10.0.0.0/24"], "ports": [53]}},
                             {"action": "Allow", "protocol": "UDP",
                              "destination": {"nets": ["10.0.0.0/24"], "ports": [53]}}]),
    "scheme-any-any-port": (["*://10.0.0.0/24:*"], {},
                            [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}]}],
                            [{"action": "Allow", "destination": {"nets": ["10.0.0.0/24"]}}]),
    "scheme-postgres": (["postgres://10.9.8.7"], {},
                        [{"to": [{"ipBlock": {"cidr": "10.9.8.7/32"}}], "ports": [{"protocol": "TCP", "port": 5432}]}],
                        [{"action": "Allow", "protocol": "TCP",
                          "destination": {"nets": ["10.9.8.7/32"], "ports": [5432]}}]),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_each_rule_shape_equals_its_allow_list(shape: str) -> None:
    texts, peer_text, k8s_egress, calico_egress = SHAPES[shape]
    peers = {name: parse_labels(labels) for name, labels in peer_text.items()}
    k8s, calico = policies(texts, peers)
    assert k8s["spec"]["egress"] == k8s_egress
    assert calico["spec"]["egress"] == [*calico_egress, {"action": "Deny", "destination": {}}]
    want = expected(list(parse_allowed_hosts(texts)), peers)
    assert read_kubernetes(k8s) == want
    assert read_calico(calico) == want


def test_a_mixed_allow_list_reads_back_as_itself() -> None:
    texts = ["https://api.internal", "postgres://db:5432", "https://10.0.0.0/25:443", "https://10.0.0.128/25:443",
             "*://[fd00::/8]:1000..2000", "udp://10.0.0.53:53", "https://*:8443", "http://192.0.2.1:*"]
    peers = {"api.internal": parse_labels("app=api"), "db": parse_labels("tier=database")}
    k8s, calico = policies(texts, peers)
    want = expected(list(parse_allowed_hosts(texts)), peers)
    assert read_kubernetes(k8s) == want and read_calico(calico) == want
    # Adjacent blocks of one protocol and port are one rule: the same addresses.
    assert {"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}], "ports": [{"protocol": "TCP", "port": 443}]} in \
        k8s["spec"]["egress"]


# --- attacks -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("pattern", ["*://*:*", "https://*:*", "http://*:*"])
def test_allow_all_is_never_emitted_silently(pattern: str) -> None:
    with pytest.raises(PolicyError, match="all egress") as info:
        egress_rules(parse_allowed_hosts(["https://10.0.0.1", pattern]))
    assert info.value.index == 1
    notes: list[str] = []
    rules = egress_rules(parse_allowed_hosts(["https://10.0.0.1", pattern]), allow_all=True, notes=notes)
    assert any("egress is allowed" in note for note in notes)
    k8s, calico = kubernetes_network_policy("p", rules), calico_network_policy("p", rules)
    validate(k8s)
    validate(calico)
    if pattern == "*://*:*":
        assert k8s["spec"]["egress"] == [{}] and calico["spec"]["egress"] == [{"action": "Allow"}]
    else:  # all TCP; other protocols still denied
        assert calico["spec"]["egress"][-1] == {"action": "Deny", "destination": {}}


@pytest.mark.parametrize("pattern", ["https://api.example.com", "https://*.example.com", "postgres://db:5432"])
def test_a_dns_name_without_a_peer_is_refused_or_widened_with_a_note(pattern: str) -> None:
    with pytest.raises(PolicyError, match="--peer") as info:
        egress_rules(parse_allowed_hosts([pattern]))
    assert info.value.index == 0
    notes: list[str] = []
    rules = egress_rules(parse_allowed_hosts([pattern]), unmapped="any-address", notes=notes)
    assert notes == [f"{pattern}: widened to any address on its ports (a policy cannot name a host)"]
    port = parse_allowed_host(pattern).ports
    assert {(r.cidrs, r.ports) for r in rules} == {((c,), port) for c in ANY}


def test_cross_app_calls_need_no_pod_rule() -> None:
    notes: list[str] = []
    assert egress_rules(parse_allowed_hosts(["http://shop.web.wasmlet", "http://*.wasmlet"]), notes=notes) == []
    assert len(notes) == 2
    k8s, calico = policies(["http://shop.web.wasmlet"])
    assert k8s["spec"]["egress"] == []  # egress denied at the pod: the call goes over the lattice
    assert calico["spec"]["egress"] == [{"action": "Deny", "destination": {}}]


def test_an_unmapped_name_is_a_manifest_error_naming_the_file_and_field(tmp_path: Path) -> None:
    manifest = _app(tmp_path, ["https://10.0.0.1", "https://api.example.com"], components=2)
    with pytest.raises(ManifestError) as info:
        _render(manifest)
    assert info.value.source == str(manifest)
    assert info.value.problems[0][0] == "spec.components[0].properties.capabilities.allowedOutboundHosts[1]"
    assert "api.example.com" in info.value.problems[0][1]


@pytest.mark.parametrize("bad", ["https://10.0.0.0/33", "https://300.1.2.0/24", "https://10.0.0.0/8/8",
                                 "https://[fd00::/129]"])
def test_an_invalid_cidr_is_refused_naming_the_file_and_field(tmp_path: Path, bad: str) -> None:
    manifest = _app(tmp_path, ["https://10.0.0.1", bad])
    with pytest.raises(ManifestError) as info:
        _render(manifest)
    assert info.value.source == str(manifest)
    (path, message), *_ = info.value.problems
    assert path.startswith("spec.components[0].properties.capabilities.allowedOutboundHosts"), path
    assert bad in message or "path" in message or "address" in message or "netmask" in message, message


def test_a_huge_allow_list_is_refused_unless_it_collapses(tmp_path: Path) -> None:
    scattered = [f"https://10.{i // 200}.{i % 200}.1" for i in range(MAX_EGRESS_RULES + 1)]
    with pytest.raises(ManifestError) as info:
        _render(_app(tmp_path, scattered, name="scattered"))
    (path, message), = info.value.problems
    assert path == "spec.components[0].properties.capabilities.allowedOutboundHosts"
    assert f"{MAX_EGRESS_RULES + 1} egress rules" in message
    # 4096 single addresses that together are one /20: one rule, the same addresses.
    contiguous = [f"https://10.1.{i // 256}.{i % 256}" for i in range(4096)]
    objects = _render(_app(tmp_path, contiguous, name="contiguous"), policies_only=True)
    assert objects[0]["spec"]["egress"] == [{"to": [{"ipBlock": {"cidr": "10.1.0.0/20"}}],
                                             "ports": [{"protocol": "TCP", "port": 443}]}]


def test_labels_cannot_inject_into_a_calico_selector() -> None:
    for text in ["tier=data'base", "tier=a && all()", "=x", "tier", "a b=c"]:
        with pytest.raises(ValueError):
            parse_labels(text)
    assert parse_labels("b=2,a=1") == (("a", "1"), ("b", "2"))
