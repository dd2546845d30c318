"""Issue 14, parsers of untrusted bytes: each attack against a real `wasmlet serve` on loopback.

A tenant sends manifests to the admin API (YAML bombs, deep nesting,
duplicate keys, bytes that are not UTF-8), and a guest asks for IPv6 forms of
internal addresses. Each answer is a clear refusal, in bounded time and
memory, and the host keeps serving its other app.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.conftest import EXAMPLES, GUESTS, Server, write_manifest

Serve = Callable[..., Server]
YAML = {"Content-Type": "application/yaml"}


@pytest.fixture
def host(serve: Serve, tmp_path: Path) -> Server:
    manifest = write_manifest(tmp_path / "app.yaml", [
        {"name": "hello", "properties": {"moduleURL": str(EXAMPLES / "hello" / "hello.wasm"), "route": "/hello"}},
        {"name": "egress", "properties": {"moduleURL": str(GUESTS / "security" / "http_get.wasm"),
                                          "capabilities": {"allowedOutboundHosts": ["http://*:*"]}}},
    ], name="shop")
    return serve(str(manifest))


def peak_rss(pid: int) -> int:
    """The process' high-water mark of resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def billion_laughs() -> bytes:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{n}: &a{n} [{','.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 8)]
    text = "apiVersion: core.oam.dev/v1beta1\n" + "\n".join(lines) + "\nkind: *a7\n"
    return (text + "metadata: {name: x}\nspec: {components: []}\n").encode()


def test_a_yaml_bomb_gets_a_short_400_at_once(host: Server) -> None:
    bomb = billion_laughs()
    assert len(bomb) < 600
    before = peak_rss(host.process.pid)
    started = time.monotonic()
    answer = host.admin("POST", "/v1/deploy", content=bomb, headers=YAML)
    elapsed = time.monotonic() - started
    grown = peak_rss(host.process.pid) - before
    print(f"bomb: {answer.status_code} in {elapsed * 1000:.0f} ms, {len(answer.content)} bytes, "
          f"supervisor peak RSS +{grown / 1e6:.1f} MB")
    assert answer.status_code == 400, answer.text
    assert "aliases are expanded" in answer.json()["error"]
    assert len(answer.content) < 2000  # was 312 MB
    assert elapsed < 3  # was 9.3 s
    assert grown < 100e6  # was ~1 GB
    assert httpx.get(host.url + "/hello", timeout=10).status_code == 200


HOSTILE_YAML = [
    (b"kind: " + b"[" * 5000 + b"]" * 5000, "nested more than 64 levels deep"),  # was RecursionError: 500
    (b'{"spec": ' + b"[" * 3000 + b"]" * 3000 + b"}", "nested more than 64 levels deep"),
    (b"apiVersion: core.oam.dev/v1beta1\nkind: Application\nkind: Node\n",
     "line 3, column 1: not valid YAML: duplicate key 'kind' (first at line 2)"),  # the last one won
    (b"spec: &s {components: [*s]}\n", "recursive"),
    (b"spec: {x: 1" + b":1" * 20_000 + b"}\n", "a number longer than 64 characters"),  # base 60: quadratic
    (b"x: !!int ''\n", "cannot read this value"),  # IndexError inside PyYAML: 500
]


def test_hostile_yaml_is_a_400_naming_the_problem(host: Server) -> None:
    for body, expected in HOSTILE_YAML:
        answer = host.admin("POST", "/v1/deploy", content=body, headers=YAML)
        assert answer.status_code == 400, (expected, answer.text)
        assert expected in answer.json()["error"], (expected, answer.text)
    assert httpx.get(host.url + "/hello", timeout=10).status_code == 200


def test_non_utf8_is_refused_the_same_way_by_the_api_and_the_cli(host: Server, tmp_path: Path) -> None:
    data = b"apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata: {name: sh\xffp}\n"
    offset = data.index(b"\xff")
    answer = host.admin("POST", "/v1/deploy", content=data, headers=YAML)
    assert answer.status_code == 400
    path = tmp_path / "bad.yaml"
    path.write_bytes(data)
    cli = subprocess.run([sys.executable, "-m", "wasmlet", "validate", str(path)], capture_output=True, text=True,
                         timeout=60)
    assert cli.returncode == 1 and "Traceback" not in cli.stderr
    for message in (answer.json()["error"], cli.stderr):
        assert "expected UTF-8 text" in message and f"byte {offset}" in message, message


INTERNAL_IPV6 = [
    "::7f00:1",  # IPv4-compatible 127.0.0.1
    "::ffff:0:7f00:1",  # IPv4-translated 127.0.0.1
    "64:ff9b:1::7f00:1",  # local-use NAT64
    "fec0::1",  # site-local, deprecated
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1 inverted
]


def test_ipv6_forms_of_internal_addresses_are_refused(host: Server) -> None:
    # `http://*:*` lets the guest name any host, never an internal one; the old check let these through to a
    # connection attempt, so the guest saw a connection error rather than the policy's refusal (7).
    for address in INTERNAL_IPV6:
        answer = httpx.get(f"{host.url}/egress?http://[{address}]:8080/", timeout=30)
        assert answer.status_code == 200 and "req=7" in answer.text, (address, answer.text)
    time.sleep(0.2)
    assert host.output().count("internal address") >= len(INTERNAL_IPV6)
