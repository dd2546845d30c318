"""Host names with dots (Kubernetes node names such as EKS's) in a real lattice, and names that are no name.

A host's name is a Kubernetes ``Node`` name, an RFC 1123 subdomain; the
DaemonSet passes ``--host-name=$(NODE_NAME)``. Its heartbeat subject carries
it as one token (``.`` written ``_``, docs/lattice.md), so a dotted host is
heard by every other host and by ``wasmlet lattice hosts``, takes apps and is
forwarded to; before, its heartbeats went to ``wasmlet.hosts.ip-10-0-1-2.eu-west-1...``,
which ``wasmlet.hosts.*`` does not match, and it was never seen.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import EXAMPLES
from tests.lattice.conftest import WASMLET, NatsServer, deploy, echo_manifest, lattice_json, wait_for

from wasmlet.lattice import Connection, Members, host_of_token, host_token, hosts_subject
from wasmlet.plan import LatticeLink, Node

EKS = "ip-10-0-1-2.eu-west-1.compute.internal"  # an EKS node name, as the downward API gives it


def _on(key: str, value: str) -> dict[str, object]:
    """An affinity trait: only on hosts labelled ``key=value``."""
    return {"type": "affinity", "properties": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]}]}}}}


@pytest.mark.parametrize("name", [EKS, "wasm-node-01", "a", "a.b", "1.2.3.4", "x" * 63 + "." + "y" * 189])
def test_a_host_name_is_one_subject_token_and_comes_back(name: str) -> None:
    token = host_token(name)
    assert not set(token) & {".", "*", ">", " ", "\t", "\r", "\n"}, token
    assert host_of_token(token) == name
    assert hosts_subject("wasmlet", name) == f"wasmlet.hosts.{token}"
    if "." not in name:
        assert token == name  # the subject of every name without dots is what it always was


@pytest.mark.parametrize("name", ["a*b", ">", "a b", "a\tb", "x" * 10240, "Node-1", "a_b", "a..b", "-a", "a.", ""])
def test_a_name_that_is_no_node_name_has_no_subject(name: str) -> None:
    with pytest.raises(ValueError, match="RFC 1123 subdomain") as info:
        hosts_subject("wasmlet", name)
    assert len(str(info.value)) < 300  # a 10 KB name is cut, not echoed


@pytest.mark.parametrize("token", ["a.b", "A", "a__b", "_a", "a_", "x" * 300, "a*b"])
def test_a_token_that_stands_for_no_name_is_refused(token: str) -> None:
    with pytest.raises(ValueError):
        host_of_token(token)


def test_a_dotted_host_is_listed_placed_on_and_forwarded_to(
        nats_server: NatsServer, lattice_host: Any, tmp_path: Path) -> None:
    allow = ("--allow-files", str(EXAMPLES))
    eks = lattice_host(EKS, nats_server.url, "--label", "disk=ssd", *allow, ready=False)
    beta = lattice_host("beta", nats_server.url, "--label", "disk=hdd", *allow, ready=False)
    for host in (eks, beta):
        host.wait_ready(60)

    def listed() -> dict[str, dict[str, Any]] | None:
        rows = lattice_json(nats_server.url, "hosts")
        assert isinstance(rows, list)
        found = {row["name"]: row for row in rows}
        return found if set(found) == {EKS, "beta"} else None

    hosts = wait_for(listed, 15, "wasmlet lattice hosts lists both")  # from a third client: a listener
    assert isinstance(hosts, dict) and hosts[EKS]["labels"]["disk"] == "ssd"

    # Only the dotted host has disk=ssd, only beta disk=hdd: each app deployed through the other host.
    assert deploy(beta, echo_manifest(tmp_path / "ssd.yaml", "store", "ssd", "/ssd", traits=[_on("disk", "ssd")])) \
        .status_code == 200
    assert deploy(eks, echo_manifest(tmp_path / "hdd.yaml", "store", "hdd", "/hdd", traits=[_on("disk", "hdd")])) \
        .status_code == 200

    def served() -> bool:
        listed = lattice_json(nats_server.url, "apps")
        assert isinstance(listed, list)
        rows = {r["app"]: r for r in listed}
        return all(app in rows and rows[app]["placed"] == [host] and rows[app]["serving"] == [host]
                   for app, host in (("store/ssd", EKS), ("store/hdd", "beta")))

    wait_for(served, 20, f"store/ssd placed on and served by {EKS}, store/hdd by beta")
    for path, through, by in (("/ssd", beta, EKS), ("/hdd", eks, "beta")):  # forwarded over NATS, both ways
        response = httpx.get(through.url + path, timeout=10)
        assert response.status_code == 200, (path, response.text)
        assert response.headers["x-wasmlet-served-by"] == by
    local = httpx.get(eks.url + "/ssd", timeout=10)
    assert local.status_code == 200 and "x-wasmlet-served-by" not in local.headers
    text = subprocess.run([*WASMLET, "lattice", "hosts", "--lattice", nats_server.url], capture_output=True,
                          text=True, timeout=60).stdout  # the table, as a user reads it
    assert EKS in text and "beta" in text


def test_hostile_heartbeats_on_encoded_subjects_change_nothing(nats_server: NatsServer) -> None:
    """A heartbeat is taken only for the name its subject's token stands for."""
    connections = [Connection(LatticeLink(servers=(nats_server.url,), host="t"), "test") for _ in range(2)]
    for connection in connections:
        connection.start(10)
    try:
        members = Members(connections[0], Node(name=EKS), listen="127.0.0.1:1")
        members.join()

        def publish(subject: str, name: str) -> None:
            record = {"node": {"name": name}, "instance": "b" * 32, "seq": 1, "started": 0.0}

            async def send() -> None:
                await connections[1].nc.publish(subject, json.dumps(record).encode())
                await connections[1].nc.flush()

            connections[1].call(send())

        publish("wasmlet.hosts.a_b", "a_b")  # the token's name is a.b, and a_b is no node name
        publish("wasmlet.hosts.a_b", "other")  # a record for another name than the subject's
        publish("wasmlet.hosts.A_B", "a.b")  # a token that stands for no name
        publish("wasmlet.hosts.a__b", "a..b")
        time.sleep(0.5)
        assert set(members.live()) == {EKS}
        publish("wasmlet.hosts.gamma_example_org", "gamma.example.org")  # well formed: heard
        wait_for(lambda: "gamma.example.org" in members.live(), 3, "gamma.example.org heard")
        members.stop()
    finally:
        for connection in connections:
            connection.close()


@pytest.mark.parametrize("name", ["a*b", ">", "a b", "wasm.*", "x" * 10240, "Wasm-Node-01", "a_b"])
def test_serve_refuses_a_host_name_that_is_no_node_name(tmp_path: Path, name: str) -> None:
    """Clear error naming the flag, before anything connects (no NATS server listens on port 1)."""
    result = subprocess.run([*WASMLET, "serve", "--listen", "127.0.0.1:0", "--lattice", "nats://127.0.0.1:1",
                             "--host-name", name], capture_output=True, text=True, timeout=60,
                            env={**_env(tmp_path)})
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: this host's lattice identity (--host-name"), last[:300]
    assert "RFC 1123 subdomain" in last and repr(name[:100]) in last and len(last) < 500, last[:600]
    assert "Traceback" not in result.stderr


def _env(tmp_path: Path) -> dict[str, str]:
    import os

    return {**os.environ, "WASMLET_STATE_DIR": str(tmp_path / "state"), "WASMLET_CACHE_DIR": str(tmp_path / "cache"),
            "WASMLET_RUNTIME_DIR": str(tmp_path / "run")}
