"""Cross-app calls (distributed Wasm): a guest calls another app by name, wherever that app runs.

The caller is tests/guests/security/http_get.wasm (wasi_experimental_http; the
URL is its query string); the callee the echo example, which prints the
request it got. Two real hosts on a real nats-server: the caller runs on one,
the callee on the other, so the call crosses the lattice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from tests.conftest import EXAMPLES, GUESTS, write_manifest
from tests.lattice.conftest import ECHO, NatsServer, deploy, lattice_json, wait_for

CALLER = GUESTS / "security" / "http_get.wasm"
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _on(role: str) -> list[dict[str, Any]]:
    return [{"type": "affinity", "properties": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "role", "operator": "In", "values": [role]}]}]}}}}]


def test_a_guest_calls_another_app_by_name_across_the_lattice_only_if_granted(
        nats_server: NatsServer, lattice_host: Any, tmp_path: Path) -> None:
    allow = ("--allow-files", str(EXAMPLES), "--allow-files", str(GUESTS))
    front = lattice_host("front", nats_server.url, "--label", "role=front", *allow, ready=False)
    back = lattice_host("back", nats_server.url, "--label", "role=back", *allow, ready=False)
    front.wait_ready(60)
    back.wait_ready(60)
    components = [
        {"name": "web", "properties": {"moduleURL": str(ECHO), "route": "/shop"}, "traits": _on("back")},
    ]
    assert deploy(back, write_manifest(tmp_path / "shop.yaml", components, name="shop")).status_code == 200
    callers = [
        {"name": "call", "properties": {"moduleURL": str(CALLER), "route": "/call",
                                        "capabilities": {"allowedOutboundHosts": ["http://shop.web.wasmlet"]}},
         "traits": _on("front")},
        {"name": "nogrant", "properties": {"moduleURL": str(CALLER), "route": "/nogrant",
                                           "capabilities": {"allowedOutboundHosts": ["http://blog.web.wasmlet"]}},
         "traits": _on("front")},
    ]
    assert deploy(front, write_manifest(tmp_path / "front.yaml", callers, name="front")).status_code == 200
    wait_for(lambda: all(row["serving"] == row["placed"] and row["serving"]
                         for row in lattice_json(nats_server.url, "apps")), 20, "all placed")  # type: ignore[union-attr]

    for through in (front, back):  # the caller runs on front; its callee on back
        response = httpx.get(f"{through.url}/call?http://shop.web.wasmlet/shop/cart?item=7",
                             headers={"traceparent": TRACE}, timeout=30)
        assert response.status_code == 200, response.text
        text = response.text
        assert "req=0" in text and "status=200" in text, text
        assert "path: /shop/cart" in text and "query: item=7" in text, text  # what the callee saw
        assert "header: X_TEST=from-guest" in text, text  # the caller's own header went along
        assert "4bf92f3577b34da6a3ce929d0e0e4736" in text.split("body=", 1)[1], text  # the trace goes on

    denied = httpx.get(f"{front.url}/nogrant?http://shop.web.wasmlet/shop/", timeout=30)
    assert denied.status_code == 200 and "req=7" in denied.text, denied.text  # destination not allowed
    # No such route of the app, and no such app: answered, not hung.
    missing = httpx.get(f"{front.url}/call?http://shop.web.wasmlet/elsewhere", timeout=30)
    assert "status=404" in missing.text, missing.text


def test_apps_calling_apps_in_a_loop_stop_at_the_depth_limit(
        nats_server: NatsServer, lattice_host: Any, tmp_path: Path) -> None:
    allow = ("--allow-files", str(EXAMPLES), "--allow-files", str(GUESTS))
    host = lattice_host("solo", nats_server.url, *allow)
    caller = [{"name": "call", "properties": {"moduleURL": str(CALLER), "route": "/call", "timeout": "20s",
                                              "capabilities": {"allowedOutboundHosts": ["http://loop.call.wasmlet"]}}}]
    assert deploy(host, write_manifest(tmp_path / "loop.yaml", caller, name="loop")).status_code == 200
    wait_for(lambda: httpx.get(host.url + "/call", timeout=5).status_code == 200, 20, "served")
    url = "http://loop.call.wasmlet/call"
    for _ in range(10):  # the app calls itself, each call one level deeper, on this host (no NATS hop)
        url = f"http://loop.call.wasmlet/call?{url}"
    response = httpx.get(f"{host.url}/call?{url}", timeout=60)
    assert response.status_code == 200, response.text
    assert "status=508" in response.text and "loop detected" in response.text, response.text
