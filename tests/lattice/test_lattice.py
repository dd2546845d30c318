"""Three real ``wasmlet serve --lattice`` hosts on one real nats-server: placement, routing, drain.

The hosts differ as the seed's nodes do: ``wasm-node-01`` is the seed's own
Kubernetes Node (label ``node-type: wasm``, taint ``wasm=true:NoSchedule``,
read from the seed's YAML stream unchanged with ``--node``) in zone a; beta
is a wasm node in zone b without the taint; gamma is a plain host in zone b.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from tests.conftest import EXAMPLES
from tests.lattice.conftest import (
    LatticeHost,
    Load,
    NatsServer,
    deploy,
    echo_manifest,
    lattice_cli,
    lattice_json,
    wait_for,
)

# The seed's YAML stream as written: Node wasm-node-01, the Application, PriorityClass wasm-critical and a
# Calico NetworkPolicy. Hosts read their Node from it and the lattice its PriorityClass; its Application
# names a registry these tests cannot reach, so the apps deployed are the same component on a local module.
SEED = Path(__file__).resolve().parents[1] / "fixtures" / "seed-stream.yaml"
ZONE = "topology.kubernetes.io/zone"

WASM_ONLY = {"type": "affinity", "properties": {
    "nodeAffinity": {"required": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "node-type", "operator": "In", "values": ["wasm"]}]}]}},
    "tolerations": [{"key": "wasm", "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
}}
SPREAD = {"type": "topologyspreadconstraints", "properties": {"constraints": [
    {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule"}]}}


def _three(lattice_host: Any, url: str) -> tuple[LatticeHost, LatticeHost, LatticeHost]:
    allow = ("--allow-files", str(EXAMPLES))
    node = lattice_host("wasm-node-01", url, "--node", str(SEED), "--zone", "a", *allow, ready=False)
    beta = lattice_host("beta", url, "--label", "node-type=wasm", "--zone", "b", *allow, ready=False)
    gamma = lattice_host("gamma", url, "--zone", "b", "--capacity-apps", "5", *allow, ready=False)
    for host in (node, beta, gamma):
        host.wait_ready(60)
    return node, beta, gamma


def _apps(url: str) -> dict[str, dict[str, Any]]:
    rows = lattice_json(url, "apps")
    assert isinstance(rows, list)
    return {row["app"]: row for row in rows}


def test_three_hosts_place_by_label_taint_zone_and_answer_for_every_app(
        nats_server: NatsServer, lattice_host: Any, tmp_path: Path) -> None:
    node, beta, gamma = _three(lattice_host, nats_server.url)
    applied = lattice_cli(nats_server.url, "apply", str(SEED))  # the whole stream: PriorityClasses taken
    assert applied.returncode == 0 and "wasm-critical" in applied.stdout, applied.stderr
    hosts = {row["name"]: row for row in lattice_json(nats_server.url, "hosts")}  # type: ignore[union-attr]
    assert set(hosts) == {"wasm-node-01", "beta", "gamma"}
    assert hosts["wasm-node-01"]["taints"] == ["wasm=true:NoSchedule"]
    assert hosts["wasm-node-01"]["labels"]["node-type"] == "wasm" and hosts["wasm-node-01"]["zone"] == "a"

    critical = echo_manifest(tmp_path / "critical.yaml", "resize", "critical", "/critical", traits=[
        {"type": "scaler", "properties": {"replicas": 2}}, WASM_ONLY, SPREAD,
        {"type": "priority", "properties": {"className": "wasm-critical"}}])  # the seed's PriorityClass
    plain = echo_manifest(tmp_path / "plain.yaml", "blog", "plain", "/plain")
    picky = echo_manifest(tmp_path / "picky.yaml", "store", "picky", "/picky", traits=[
        {"type": "affinity", "properties": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}}}])
    for manifest, through in ((critical, gamma), (plain, node), (picky, beta)):  # any host takes a deploy
        response = deploy(through, manifest)
        assert response.status_code == 200, response.text

    def placed() -> dict[str, dict[str, Any]] | None:
        apps = _apps(nats_server.url)
        ready = all(sorted(a["serving"]) == sorted(a["placed"]) for a in apps.values()) and len(apps) == 3
        return apps if ready else None

    apps = wait_for(placed, 20, "every placed host serves its apps")
    assert isinstance(apps, dict)
    # Selector + toleration + zone spread: the tainted seed node (zone a) and beta (zone b), not gamma.
    assert apps["resize/critical"]["placed"] == ["beta", "wasm-node-01"]
    # No toleration: never on the tainted node.
    assert apps["blog/plain"]["placed"] in (["beta"], ["gamma"])
    # A selector no host meets: pending, and the reason names what each host lacks.
    assert apps["store/picky"]["placed"] == []
    assert "0/3 hosts" in apps["store/picky"]["pending"] and "lack label disk=ssd" in apps["store/picky"]["pending"]

    for host in (node, beta, gamma):  # any host answers for any app: locally or forwarded
        for app, path in (("resize/critical", "/critical"), ("blog/plain", "/plain")):
            response = httpx.get(host.url + path, timeout=10)
            assert response.status_code == 200, (host.name, path, response.text)
            served_by = response.headers.get("x-wasmlet-served-by")  # set on forwarded answers only
            if host.name in apps[app]["placed"]:
                assert served_by is None, (host.name, app)
            else:
                assert served_by in apps[app]["placed"], (host.name, app, served_by)
        response = httpx.get(host.url + "/picky", timeout=10)
        assert response.status_code == 503 and response.headers["x-wasmlet-error"] == "no-host", response.text

    text = lattice_cli(nats_server.url, "apps").stdout
    assert "store/picky" in text and "lack label disk=ssd" in text
    # The admin API of any host shows the lattice's apps (one desired state).
    listed = beta.admin("GET", "/v1/apps").json()
    assert sorted(a["name"] for a in listed) == ["blog/plain", "resize/critical", "store/picky"]

    # A new version deployed through one host, rolled back through another: served everywhere each time.
    v2 = echo_manifest(tmp_path / "plain2.yaml", "blog", "plain", "/plain", environment=[{"name": "V", "value": "2"}])
    assert deploy(gamma, v2).status_code == 200
    for host in (node, beta, gamma):
        wait_for(lambda h=host: "env: V=2" in httpx.get(h.url + "/plain", timeout=5).text, 10, f"v2 on {host.name}")
    rolled = node.admin("POST", "/v1/apps/blog/plain/rollback")
    assert rolled.status_code == 200 and rolled.json()["version"] == 1, rolled.text
    for host in (node, beta, gamma):
        wait_for(lambda h=host: "env: V=2" not in httpx.get(h.url + "/plain", timeout=5).text, 10,
                 f"rolled back on {host.name}")


def test_a_drained_host_hands_its_apps_over_with_no_failed_request(
        nats_server: NatsServer, lattice_host: Any, tmp_path: Path) -> None:
    allow = ("--allow-files", str(EXAMPLES))
    alpha = lattice_host("alpha", nats_server.url, "--label", "tier=front", *allow)
    beta = lattice_host("beta", nats_server.url, "--label", "tier=front", *allow)
    manifest = echo_manifest(tmp_path / "shop.yaml")
    assert deploy(alpha, manifest).status_code == 200
    apps = wait_for(lambda: (a := _apps(nats_server.url))["shop/web"]["serving"] and a, 20, "shop/web served")
    assert isinstance(apps, dict)
    (first,) = apps["shop/web"]["serving"]
    other = beta if first == "alpha" else alpha
    # POST: not idempotent, so never retried after it reached a guest. Zero failures means the app
    # moved make-before-break, not that retries hid failures.
    with Load(other.url + "/shop", method="POST", body=b"order", threads=3, limit=60) as load:
        wait_for(lambda: load.total > 50, 20, "load under way")
        result = lattice_cli(nats_server.url, "drain", first, "--timeout", "30")
        assert result.returncode == 0, result.stderr
        after = load.total
        wait_for(lambda: load.total > after + 50, 20, "load after the drain")
    assert load.failures == [], load.failures[:5]
    assert load.served_by[first] > 0 and load.served_by["local"] > 0  # forwarded before, local after
    apps = _apps(nats_server.url)
    assert apps["shop/web"]["serving"] == [other.name]
    hosts = {row["name"]: row for row in lattice_json(nats_server.url, "hosts")}  # type: ignore[union-attr]
    assert hosts[first]["drained"] and hosts[first]["serving"] == []
    # Undrained, it may take apps again (placement keeps shop/web where it is: stability).
    assert lattice_cli(nats_server.url, "drain", first, "--undo").returncode == 0
    assert not {row["name"]: row for row in lattice_json(nats_server.url, "hosts")}[first]["drained"]  # type: ignore[union-attr]
