"""The lattice's desired state over a real JetStream key-value bucket (nats-server on loopback).

The same changes made on ``StateStore`` (SQLite, one host) and on ``LatticeState``
must give the same versions, numbers and roles; concurrent writers from two
hosts lose nothing; what a forger writes into the bucket is refused and the
last valid state stays in force.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.lattice.conftest import ECHO, HELLO, NatsServer

from wasmlet import LatticeError, NoCanary, NothingToRollBack, StateError, UnknownApp
from wasmlet.control import DeployItem, StateStore
from wasmlet.engine import BlobStore
from wasmlet.lattice import Connection, LatticeState
from wasmlet.plan import ComponentSpec, LatticeLink

SPEC_A = json.dumps({"b": 1, "a": 2})
SPEC_B = json.dumps({"a": 3})


def _connection(server: NatsServer) -> Connection:
    connection = Connection(LatticeLink(servers=(server.url,), host="test"), "test")
    connection.start(10)
    return connection


@pytest.fixture
def lattice_state(nats_server: NatsServer, tmp_path: Path) -> Iterator[LatticeState]:
    connection = _connection(nats_server)
    state = LatticeState(connection, tmp_path / "host-a")
    yield state
    connection.close()


def _digest(state_dir: Path, path: Path) -> str:
    return BlobStore(state_dir, durable=True).put(path.read_bytes())


def _scenario(store: object, directory: Path) -> list[object]:
    """A run of changes and what each returned, comparable between the two stores."""
    echo, hello = _digest(directory, ECHO), _digest(directory, HELLO)
    s = store
    out: list[object] = []

    def deploy(*items: tuple[str, str, str], **canary: object) -> None:
        results = s.deploy([DeployItem(a, spec, d, False) for a, spec, d in items], **canary)  # type: ignore[attr-defined]
        out.append([(r.app, r.number, r.changed) for r in results])

    def roles(app: str) -> tuple[object, ...]:
        state = s.app(app)  # type: ignore[attr-defined]
        number = lambda v: v.number if v else None  # noqa: E731
        return (number(state.stable), number(state.previous), number(state.canary), state.canary_weight,
                state.canary_header)

    deploy(("shop/web", SPEC_A, echo), ("shop/api", SPEC_A, hello))
    deploy(("shop/web", json.dumps({"a": 2, "b": 1}), echo))  # same spec, other key order: unchanged
    deploy(("shop/web", SPEC_B, echo))
    out.append(roles("shop/web"))
    deploy(("shop/web", SPEC_A, hello), canary_weight=10, canary_header="X-Canary: 1")
    out.append(roles("shop/web"))
    out.append(roles(s.promote("shop/web").app))  # type: ignore[attr-defined]
    out.append(roles(s.rollback("shop/web").app))  # type: ignore[attr-defined]
    with pytest.raises(NoCanary):
        s.abort("shop/web")  # type: ignore[attr-defined]
    s.delete("shop/api")  # type: ignore[attr-defined]
    with pytest.raises(UnknownApp):
        s.app("shop/api")  # type: ignore[attr-defined]
    deploy(("shop/api", SPEC_A, hello))  # a deleted app's numbers continue
    out.append(roles("shop/api"))
    with pytest.raises(NothingToRollBack):
        s.rollback("shop/api")  # type: ignore[attr-defined]
    out.append([v.number for v in s.history("shop/web")])  # type: ignore[attr-defined]
    out.append(s.generation())  # type: ignore[attr-defined]
    return out


def test_the_lattice_keeps_the_same_state_as_one_host(lattice_state: LatticeState, tmp_path: Path) -> None:
    with StateStore(tmp_path / "sqlite") as sqlite:
        expected = _scenario(sqlite, tmp_path / "sqlite")
    assert _scenario(lattice_state, lattice_state.directory) == expected


def test_another_host_reads_what_one_wrote_and_a_restarted_server_still_has_it(
        nats_server: NatsServer, lattice_state: LatticeState, tmp_path: Path) -> None:
    digest = _digest(lattice_state.directory, ECHO)
    lattice_state.deploy([DeployItem("shop/web", SPEC_A, digest, False)])
    nats_server.kill()  # kill -9: what was acknowledged is in the server's store
    nats_server.start()
    other = _connection(nats_server)
    try:
        state = LatticeState(other, tmp_path / "host-b")
        assert state.app("shop/web").stable.digest == digest
        assert json.loads(state.app("shop/web").stable.spec_json) == json.loads(SPEC_A)
        state.modules.ensure(digest)  # the bytes came along, through the object store, checked
        assert BlobStore(tmp_path / "host-b", durable=True).get(digest) == ECHO.read_bytes()
    finally:
        other.close()


def test_concurrent_writers_on_two_hosts_lose_nothing(nats_server: NatsServer, tmp_path: Path) -> None:
    connections = [_connection(nats_server) for _ in range(2)]
    try:
        states = [LatticeState(c, tmp_path / f"host-{i}") for i, c in enumerate(connections)]
        digests = [_digest(s.directory, ECHO) for s in states]
        errors: list[BaseException] = []

        def writer(index: int) -> None:
            try:
                for n in range(8):
                    states[index].deploy([DeployItem(f"app{index}/c{n}", SPEC_A, digests[index], False)])
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors
        states[0].refresh()
        names = [a.app for a in states[0].apps()]
        assert names == sorted(f"app{i}/c{n}" for i in range(2) for n in range(8))
        assert states[0].generation() == 16  # one per change: none overwrote another
    finally:
        for connection in connections:
            connection.close()


def _put_raw(state: LatticeState, key: str, value: bytes) -> None:
    kv = state._conn.desired
    assert kv is not None
    state._conn.call(kv.put(key, value))


@pytest.mark.parametrize("forged", [
    b"\xff not json at all",
    b'{"format": 1, "generation": 99, "apps": {"evil/app": {"stable": 12345}}, "versions": {}}',
    b'{"format": 1, "generation": "many"}',
    b'{"format": 7, "generation": 1}',
    b'{"format": 1, "generation": 5, "apps": {}, "versions": {}, "drained": ["not a host!"]}',
])
def test_a_forged_desired_state_is_refused_and_the_next_change_writes_over_it(
        lattice_state: LatticeState, forged: bytes) -> None:
    digest = _digest(lattice_state.directory, ECHO)
    lattice_state.deploy([DeployItem("shop/web", SPEC_A, digest, False)])
    _put_raw(lattice_state, "desired", forged)
    lattice_state.refresh()
    assert [a.app for a in lattice_state.apps()] == ["shop/web"]  # the last valid state stays in force
    assert lattice_state.refused
    lattice_state.deploy([DeployItem("shop/api", SPEC_A, digest, False)])
    assert [a.app for a in lattice_state.apps()] == ["shop/api", "shop/web"]
    assert not lattice_state.refused


def test_a_deleted_desired_state_does_not_drop_every_app(lattice_state: LatticeState) -> None:
    digest = _digest(lattice_state.directory, ECHO)
    lattice_state.deploy([DeployItem("shop/web", SPEC_A, digest, False)])
    kv = lattice_state._conn.desired
    assert kv is not None
    lattice_state._conn.call(kv.delete("desired"))
    lattice_state.refresh()
    assert [a.app for a in lattice_state.apps()] == ["shop/web"]


def test_a_forged_version_record_makes_that_version_unservable_not_the_host(lattice_state: LatticeState) -> None:
    digest = _digest(lattice_state.directory, ECHO)
    lattice_state.deploy([DeployItem("shop/web", SPEC_A, digest, False)])
    doc, _ = lattice_state.snapshot()
    key = next(iter(doc.versions.values())).key
    _put_raw(lattice_state, key, b'{"app": "shop/web", "spec_json": "[]", "digest": "00", "component": false}')
    fresh = LatticeState(lattice_state._conn, lattice_state.directory)  # no cached record
    version = fresh.app("shop/web").stable  # read, not raised: every other app is served as usual
    with pytest.raises(ValueError, match="unusable"):
        ComponentSpec.from_json(version.spec_json)


def test_a_version_larger_than_one_nats_message_is_refused(lattice_state: LatticeState) -> None:
    digest = _digest(lattice_state.directory, ECHO)
    big = json.dumps({"pad": "x" * (2 << 20)})
    with pytest.raises(StateError, match="cannot be recorded"):
        lattice_state.deploy([DeployItem("shop/web", big, digest, False)])
    assert lattice_state.apps() == []


def test_unreachable_lattice_is_a_clear_error(tmp_path: Path) -> None:
    connection = Connection(LatticeLink(servers=("nats://127.0.0.1:9",), host="x"), "test")
    with pytest.raises(LatticeError, match="cannot connect to the lattice"):
        connection.start(1.0)
    connection.close()
