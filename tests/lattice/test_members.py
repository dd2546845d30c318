"""Heartbeats over a real nats-server: who is live, who is forgotten and when, and spoofs refused."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from tests.lattice.conftest import NatsServer, wait_for

from wasmlet import LatticeError
from wasmlet.lattice import FORGET_AFTER, Connection, Members, hosts_subject
from wasmlet.plan import LatticeLink, Node


@pytest.fixture
def connections(nats_server: NatsServer) -> Iterator[list[Connection]]:
    made: list[Connection] = []

    def make() -> Connection:
        connection = Connection(LatticeLink(servers=(nats_server.url,), host="t"), "test")
        connection.start(10)
        made.append(connection)
        return connection

    yield [make() for _ in range(3)]
    for connection in made:
        connection.close()


def _members(connection: Connection, name: str, **labels: str) -> Members:
    members = Members(connection, Node(name=name, labels=labels), listen="127.0.0.1:1")
    members.join()
    return members


def _publish(connection: Connection, name: str, payload: bytes) -> None:
    async def send() -> None:
        await connection.nc.publish(hosts_subject("wasmlet", name), payload)
        await connection.nc.flush()

    connection.call(send())


def test_hosts_see_each_other_and_forget_a_silent_one_within_the_bound(connections: list[Connection]) -> None:
    a = _members(connections[0], "alpha")
    b = _members(connections[1], "beta")
    wait_for(lambda: set(a.live()) == {"alpha", "beta"}, 5, "alpha sees beta")
    b.stop()  # heartbeats stop, as when the process is killed
    stopped = time.monotonic()
    wait_for(lambda: set(a.live()) == {"alpha"}, FORGET_AFTER + 2, "beta forgotten")
    assert time.monotonic() - stopped < FORGET_AFTER + 1.5  # the bound docs/lattice.md states, with slack


def test_a_leaving_host_is_forgotten_at_once(connections: list[Connection]) -> None:
    a = _members(connections[0], "alpha")
    b = _members(connections[1], "beta")
    wait_for(lambda: "beta" in a.live(), 5, "alpha sees beta")
    b.leave()
    wait_for(lambda: "beta" not in a.live(), 1.0, "beta forgotten on leaving")


def test_a_second_host_with_a_live_name_is_refused(connections: list[Connection]) -> None:
    _members(connections[0], "alpha")
    with pytest.raises(LatticeError, match="in use in the lattice"):
        _members(connections[1], "alpha")


def test_a_spoofed_heartbeat_for_a_live_host_changes_nothing(connections: list[Connection]) -> None:
    a = _members(connections[0], "alpha")
    b = _members(connections[1], "beta", zone="real")
    wait_for(lambda: "beta" in a.live(), 5, "alpha sees beta")
    forged = {"node": {"name": "beta", "labels": {"zone": "forged"}}, "instance": "f" * 32, "seq": 10**9,
              "started": 0.0, "serving": {"shop/web": 1}}
    for _ in range(5):
        _publish(connections[2], "beta", json.dumps(forged).encode())
    time.sleep(0.5)
    beta = a.live()["beta"]
    assert beta.node.labels == {"zone": "real"} and beta.instance == b.instance and not beta.serving
    # ... and a replay of beta's own older heartbeat does not either.
    old = beta.model_copy(update={"seq": 1, "serving": {"shop/web": 1}})
    _publish(connections[2], "beta", old.model_dump_json().encode())
    time.sleep(0.3)
    assert not a.live()["beta"].serving


@pytest.mark.parametrize("payload", [
    b"not json", b"{}", b'{"node": {"name": "gamma"}, "instance": "x", "seq": 1, "started": 0}',
    json.dumps({"node": {"name": "other"}, "instance": "a" * 32, "seq": 1, "started": 0}).encode(),
    b"{" + b" " * 70000 + b"}",
])
def test_malformed_heartbeats_are_refused(connections: list[Connection], payload: bytes) -> None:
    a = _members(connections[0], "alpha")
    _publish(connections[2], "gamma", payload)
    time.sleep(0.3)
    assert set(a.live()) == {"alpha"}
