"""Attacks on the lattice's new surfaces, against real hosts on a real nats-server.

A peer that takes forwarded requests and never answers; bodies larger than a
NATS message; forged envelopes on an app's subject; names that would inject
into a subject; a forged desired state and a spoofed heartbeat while hosts
serve. Each is bounded and the hosts keep serving everything else.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import nats
from tests.conftest import EXAMPLES
from tests.lattice.conftest import NatsServer, deploy, echo_manifest, lattice_cli, lattice_json, wait_for

from wasmlet.server import SILENCE, ForwardReply, decode_response, encode_response

NOWHERE = [{"type": "affinity", "properties": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "missing", "operator": "Exists"}]}]}}}}]


async def _rogue(url: str, subject: str, seconds: float, answer: bytes | None = None) -> list[bytes]:
    """A lattice member that takes requests in the apps' queue group and answers ``answer`` (or nothing)."""
    client = await nats.connect(url)
    taken: list[bytes] = []

    async def swallow(msg: Any) -> None:
        taken.append(msg.data)
        if answer is not None and msg.reply:
            await client.publish(msg.reply, answer)

    await client.subscribe(subject, queue="serve", cb=swallow)
    await client.flush()
    await asyncio.sleep(seconds)
    await client.close()
    return taken


def _pair(lattice_host: Any, url: str) -> tuple[Any, Any]:
    allow = ("--allow-files", str(EXAMPLES))
    a = lattice_host("alpha", url, *allow, ready=False)
    b = lattice_host("beta", url, *allow, ready=False)
    a.wait_ready(60)
    b.wait_ready(60)
    return a, b


def test_a_peer_that_never_answers_costs_a_bounded_wait_and_nothing_else(
        nats_server: NatsServer, lattice_host: Any, tmp_path: Path) -> None:
    a, _ = _pair(lattice_host, nats_server.url)
    assert deploy(a, echo_manifest(tmp_path / "hole.yaml", "hole", "web", "/hole", traits=NOWHERE)).status_code == 200
    assert deploy(a, echo_manifest(tmp_path / "shop.yaml")).status_code == 200
    wait_for(lambda: httpx.get(a.url + "/shop", timeout=5).status_code == 200, 20, "shop served")
    loop = asyncio.new_event_loop()
    rogue = loop.run_in_executor(None, lambda: asyncio.run(_rogue(nats_server.url, "wasmlet.http.hole.web", 15)))
    time.sleep(1.0)
    for method, bound in (("POST", SILENCE + 1.5), ("GET", 2 * SILENCE + 2.5)):  # GET is idempotent: tried twice
        started = time.monotonic()
        response = httpx.request(method, a.url + "/hole", timeout=30)
        took = time.monotonic() - started
        assert response.status_code == 504 and response.headers["x-wasmlet-error"] == "forward-lost", response.text
        assert took < bound, (method, took)  # where the app's own timeout would have been 30 s
        assert httpx.get(a.url + "/shop", timeout=5).status_code == 200  # the host serves the rest meanwhile
    assert "not idempotent" in httpx.post(a.url + "/hole", timeout=30).text
    loop.run_until_complete(rogue)
    loop.close()


def test_bodies_larger_than_a_nats_message_are_refused_before_sending(
        nats_server: NatsServer, lattice_host: Any, tmp_path: Path) -> None:
    a, b = _pair(lattice_host, nats_server.url)
    manifest = echo_manifest(tmp_path / "up.yaml", "up", "load", "/up", maxBodySize="8Mi")
    assert deploy(a, manifest).status_code == 200
    rows = wait_for(lambda: (r := lattice_json(nats_server.url, "apps")) and r[0]["serving"] and r, 20, "placed")
    (runs,) = rows[0]["serving"]  # type: ignore[index]
    through = b if runs == "alpha" else a
    small = httpx.post(through.url + "/up", content=b"x" * 1000, timeout=10)
    assert small.status_code == 200 and small.headers["x-wasmlet-served-by"] == runs
    huge = httpx.post(through.url + "/up", content=b"x" * (2 << 20), timeout=30)  # > 1 MiB max_payload
    assert huge.status_code == 413 and "max_payload" in huge.text, huge.text
    assert httpx.post(through.url + "/up", content=b"x" * 1000, timeout=10).status_code == 200


def test_forged_envelopes_on_an_apps_subject_are_answered_400(
        nats_server: NatsServer, lattice_host: Any, tmp_path: Path) -> None:
    a, _ = _pair(lattice_host, nats_server.url)
    assert deploy(a, echo_manifest(tmp_path / "shop.yaml")).status_code == 200
    wait_for(lambda: httpx.get(a.url + "/shop", timeout=5).status_code == 200, 20, "shop served")

    async def forge() -> list[tuple[int, str]]:
        client = await nats.connect(nats_server.url)
        answers = []
        for data in (b"garbage", b"WLF1\x00\x00\x00\x05{nope", b"WLF1\xff\xff\xff\xff{}",
                     b"WLF1" + len(b'{"app":"other/app"}').to_bytes(4, "big") + b'{"app":"other/app"}'):
            reply = decode_response((await client.request("wasmlet.http.shop.web", data, timeout=5)).data)
            answers.append((reply.status, reply.cause))
        await client.close()
        return answers

    assert asyncio.run(forge()) == [(400, "bad-forward")] * 4
    assert httpx.get(a.url + "/shop", timeout=5).status_code == 200


def _two_requests_on_one_connection(port: int, path: str) -> bytes:
    """A 204 from a member then a plain request, on one kept-alive connection: all bytes read."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        time.sleep(1.5)
        sock.sendall(b"GET /.well-known/wasmlet/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_a_member_answering_204_with_a_body_cannot_split_the_response(
        nats_server: NatsServer, lattice_host: Any, tmp_path: Path) -> None:
    """A forwarded 204 (or 304) carries no body past the entry host, as a local one does (response splitting)."""
    a, _ = _pair(lattice_host, nats_server.url)
    assert deploy(a, echo_manifest(tmp_path / "hole.yaml", "hole", "web", "/hole", traits=NOWHERE)).status_code == 200
    smuggled = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nspoofed"
    answer = encode_response(ForwardReply(204, (("x-guest", "1"),), smuggled, host="rogue"))
    loop = asyncio.new_event_loop()
    rogue = loop.run_in_executor(None, lambda: asyncio.run(
        _rogue(nats_server.url, "wasmlet.http.hole.web", 8, answer=answer)))
    time.sleep(1.0)
    data = _two_requests_on_one_connection(int(a.url.rsplit(":", 1)[1]), "/hole")
    loop.run_until_complete(rogue)
    loop.close()
    assert data.startswith(b"HTTP/1.1 204"), data[:200]
    assert b"spoofed" not in data
    assert data.count(b"HTTP/1.1 ") == 2 and b"ok" in data.split(b"HTTP/1.1 ")[2]  # the health answer, intact


def test_names_cannot_inject_into_subjects_or_the_desired_state(
        nats_server: NatsServer, lattice_host: Any, tmp_path: Path) -> None:
    a, _ = _pair(lattice_host, nats_server.url)
    for name in ("shop.>", "shop*", "a.b"):
        response = deploy(a, echo_manifest(tmp_path / "bad.yaml", name, "web", "/bad"))
        assert response.status_code == 400, (name, response.text)
    for host in ("x.>", "*", "a b"):
        result = lattice_cli(nats_server.url, "drain", host, "--timeout", "0")
        assert result.returncode == 1 and "not a host name" in result.stderr, (host, result.stderr)
    assert lattice_json(nats_server.url, "apps") == []


def test_a_forged_desired_state_and_a_spoofed_heartbeat_while_serving(
        nats_server: NatsServer, lattice_host: Any, tmp_path: Path) -> None:
    a, b = _pair(lattice_host, nats_server.url)
    assert deploy(a, echo_manifest(tmp_path / "shop.yaml")).status_code == 200
    wait_for(lambda: httpx.get(b.url + "/shop", timeout=5).status_code == 200, 20, "shop served")

    async def forge() -> None:
        client = await nats.connect(nats_server.url)
        kv = await client.jetstream().key_value("wasmlet-desired")
        await kv.put("desired", b'{"format": 1, "generation": 999, "apps": {}, "versions": {}}x')
        await client.publish("wasmlet.desired", b"0")
        spoof = {"node": {"name": "beta", "labels": {"evil": "1"}}, "instance": "e" * 32, "seq": 10**9,
                 "started": 0.0, "serving": {}}
        for _ in range(6):
            await client.publish("wasmlet.hosts.beta", json.dumps(spoof).encode())
            await asyncio.sleep(0.5)
        await client.close()

    asyncio.run(forge())
    for host in (a, b):  # the hosts kept the last valid state and kept serving
        assert httpx.get(host.url + "/shop", timeout=5).status_code == 200
        assert [app["name"] for app in host.admin("GET", "/v1/apps").json()] == ["shop/web"]
    metrics = httpx.get(a.admin_url + "/metrics", timeout=10).text
    assert 'wasmlet_lattice_rejected_total{kind="state"}' in metrics
    assert 'wasmlet_lattice_rejected_total{kind="spoofed-heartbeat"}' in metrics
    # The next change is written over the forgery.
    assert deploy(b, echo_manifest(tmp_path / "blog.yaml", "blog", "web", "/blog")).status_code == 200
    wait_for(lambda: httpx.get(a.url + "/blog", timeout=5).status_code == 200, 20, "blog served")
