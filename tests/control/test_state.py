"""The control plane's durable state: deploy rules, canaries, rollback, durability, the directory lock."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from wasmlet import WasmletError
from wasmlet.control import (
    SCHEMA_VERSION,
    DeployItem,
    NoCanary,
    NothingToRollBack,
    StateError,
    StateLocked,
    StateStore,
    UnknownApp,
    UnknownVersion,
)


def item(app: str = "shop/api", n: int = 1, digest: str | None = None, **spec: object) -> DeployItem:
    body = {"app": app.split("/")[0], "name": app.split("/")[1], "route": "/", "n": n, **spec}
    return DeployItem(app, json.dumps(body), digest or f"{n:064x}", False)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(tmp_path / "state") as s:
        yield s


# --- deploy ------------------------------------------------------------------------------------


def test_first_deploy_creates_the_app(store: StateStore) -> None:
    [result] = store.deploy([item()])
    assert result.changed and result.app == "shop/api"
    state = store.app("shop/api")
    assert state.stable.id == result.version
    assert state.previous is None and state.canary is None
    assert state.canary_weight == 0 and state.canary_header is None
    assert json.loads(state.stable.spec_json)["n"] == 1
    assert state.stable.digest == f"{1:064x}"
    assert store.history("shop/api") == [state.stable]
    assert store.generation() == 1


def test_state_directory_and_database_are_private(tmp_path: Path) -> None:
    with StateStore(tmp_path / "a" / "state"):
        pass
    assert stat.S_IMODE((tmp_path / "a" / "state").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "state" / "state.db").stat().st_mode) == 0o600
    db = sqlite3.connect(tmp_path / "a" / "state" / "state.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_redeploying_the_same_spec_and_digest_changes_nothing(store: StateStore) -> None:
    [first] = store.deploy([item()])
    # Key order and whitespace do not make a different spec.
    reordered = dict(reversed(json.loads(item().spec_json).items()))
    same = DeployItem("shop/api", json.dumps(reordered, indent=4), f"{1:064x}", False)
    [again] = store.deploy([same])
    assert not again.changed and again.version == first.version
    assert store.generation() == 1
    assert len(store.history("shop/api")) == 1


def test_a_new_digest_makes_a_new_version(store: StateStore) -> None:
    [first] = store.deploy([item(n=1)])
    changed = DeployItem("shop/api", item(n=1).spec_json, "f" * 64, False)
    [second] = store.deploy([changed])
    assert second.changed and second.version > first.version
    state = store.app("shop/api")
    assert state.stable.digest == "f" * 64
    assert state.previous is not None and state.previous.id == first.version
    assert store.generation() == 2


def test_a_new_spec_makes_a_new_version(store: StateStore) -> None:
    [first] = store.deploy([item(n=1, digest="a" * 64)])
    [second] = store.deploy([item(n=1, digest="a" * 64, route="/other")])
    assert second.changed and second.version != first.version
    assert json.loads(store.app("shop/api").stable.spec_json)["route"] == "/other"


def test_one_manifest_is_one_transaction_and_one_generation(store: StateStore) -> None:
    results = store.deploy([item("shop/api"), item("shop/web"), item("blog/front")])
    assert [r.changed for r in results] == [True, True, True]
    assert store.generation() == 1
    assert [a.app for a in store.apps()] == ["blog/front", "shop/api", "shop/web"]
    # Only one of three changes: one new version, one generation.
    results = store.deploy([item("shop/api"), item("shop/web", n=2), item("blog/front")])
    assert [r.changed for r in results] == [False, True, False]
    assert store.generation() == 2


def test_a_failing_item_rolls_back_the_whole_manifest(store: StateStore) -> None:
    store.deploy([item("shop/api")])
    with pytest.raises(StateError, match="first deploy"):
        # shop/api would become a canary, new/app cannot: nothing is written.
        store.deploy([item("shop/api", n=2), item("new/app")], canary_weight=10)
    assert store.app("shop/api").canary is None
    with pytest.raises(UnknownApp):
        store.app("new/app")
    assert store.generation() == 1


def test_a_deploy_without_canary_replaces_a_canary(store: StateStore) -> None:
    store.deploy([item(n=1)])
    store.deploy([item(n=2)], canary_weight=10)
    [result] = store.deploy([item(n=3)])
    state = store.app("shop/api")
    assert result.changed and state.stable.id == result.version
    assert state.canary is None and state.canary_weight == 0
    assert state.previous is not None and json.loads(state.previous.spec_json)["n"] == 1


def test_redeploying_the_stable_clears_a_canary(store: StateStore) -> None:
    [stable] = store.deploy([item(n=1)])
    store.deploy([item(n=2)], canary_weight=10)
    generation = store.generation()
    [result] = store.deploy([item(n=1)])
    assert result.changed and result.version == stable.version
    assert store.app("shop/api").canary is None
    assert store.generation() == generation + 1
    assert len(store.history("shop/api")) == 2  # no new version


# --- canaries ----------------------------------------------------------------------------------


def test_canary_by_weight(store: StateStore) -> None:
    [stable] = store.deploy([item(n=1)])
    [canary] = store.deploy([item(n=2)], canary_weight=25)
    state = store.app("shop/api")
    assert canary.changed
    assert state.stable.id == stable.version
    assert state.canary is not None and state.canary.id == canary.version
    assert state.canary_weight == 25 and state.canary_header is None
    assert state.previous is None


def test_canary_by_header(store: StateStore) -> None:
    store.deploy([item(n=1)])
    [canary] = store.deploy([item(n=2)], canary_header="X-Canary:   yes ")
    state = store.app("shop/api")
    assert state.canary is not None and state.canary.id == canary.version
    assert state.canary_weight == 0 and state.canary_header == "X-Canary: yes"


def test_canary_by_weight_and_header(store: StateStore) -> None:
    store.deploy([item(n=1)])
    store.deploy([item(n=2)], canary_weight=5, canary_header="X-Beta: 1")
    state = store.app("shop/api")
    assert (state.canary_weight, state.canary_header) == (5, "X-Beta: 1")


def test_redeploying_a_canary_only_changes_its_weight(store: StateStore) -> None:
    store.deploy([item(n=1)])
    [first] = store.deploy([item(n=2)], canary_weight=10)
    [same] = store.deploy([item(n=2)], canary_weight=10)
    assert not same.changed and same.version == first.version
    generation = store.generation()
    [more] = store.deploy([item(n=2)], canary_weight=50)
    assert more.changed and more.version == first.version
    assert store.app("shop/api").canary_weight == 50
    assert store.generation() == generation + 1
    assert len(store.history("shop/api")) == 2


def test_a_canary_deploy_leaves_unchanged_components_alone(store: StateStore) -> None:
    store.deploy([item("shop/api"), item("shop/web")])
    results = store.deploy([item("shop/api", n=2), item("shop/web")], canary_weight=10)
    assert [r.changed for r in results] == [True, False]
    assert store.app("shop/web").canary is None
    assert store.app("shop/api").canary is not None


def test_the_first_deploy_cannot_be_a_canary(store: StateStore) -> None:
    with pytest.raises(StateError, match="first deploy of an app cannot be a canary"):
        store.deploy([item()], canary_weight=10)
    with pytest.raises(StateError, match="first deploy"):
        store.deploy([item()], canary_header="X-Canary: 1")
    assert store.apps() == [] and store.generation() == 0


def test_promote(store: StateStore) -> None:
    [stable] = store.deploy([item(n=1)])
    [canary] = store.deploy([item(n=2)], canary_weight=10, canary_header="X-C: 1")
    state = store.promote("shop/api")
    assert state.stable.id == canary.version
    assert state.previous is not None and state.previous.id == stable.version
    assert state.canary is None and state.canary_weight == 0 and state.canary_header is None
    assert store.app("shop/api") == state
    with pytest.raises(NoCanary, match="no canary"):
        store.promote("shop/api")


def test_abort(store: StateStore) -> None:
    [stable] = store.deploy([item(n=1)])
    store.deploy([item(n=2)], canary_weight=10)
    generation = store.generation()
    state = store.abort("shop/api")
    assert state.stable.id == stable.version and state.canary is None and state.previous is None
    assert store.generation() == generation + 1
    with pytest.raises(NoCanary):
        store.abort("shop/api")
    assert store.generation() == generation + 1


# --- rollback and delete -----------------------------------------------------------------------


def test_rollback_twice_returns_to_where_you_were(store: StateStore) -> None:
    [v1] = store.deploy([item(n=1)])
    [v2] = store.deploy([item(n=2)])
    once = store.rollback("shop/api")
    assert once.stable.id == v1.version
    assert once.previous is not None and once.previous.id == v2.version
    twice = store.rollback("shop/api")
    assert twice.stable.id == v2.version
    assert twice.previous is not None and twice.previous.id == v1.version
    assert store.generation() == 4


def test_rollback_drops_a_canary(store: StateStore) -> None:
    [v1] = store.deploy([item(n=1)])
    store.deploy([item(n=2)])
    store.deploy([item(n=3)], canary_weight=10)
    state = store.rollback("shop/api")
    assert state.stable.id == v1.version and state.canary is None


def test_rollback_without_previous(store: StateStore) -> None:
    store.deploy([item()])
    with pytest.raises(NothingToRollBack, match="no previous version"):
        store.rollback("shop/api")
    assert store.generation() == 1
    with pytest.raises(UnknownApp):
        store.rollback("shop/nope")


def test_delete(store: StateStore) -> None:
    store.deploy([item("shop/api"), item("shop/web")])
    store.delete("shop/api")
    assert [a.app for a in store.apps()] == ["shop/web"]
    with pytest.raises(UnknownApp, match="shop/api"):
        store.app("shop/api")
    with pytest.raises(UnknownApp):
        store.delete("shop/api")
    assert store.generation() == 2
    # The versions stay in the history; deploying the name again starts afresh with a new id.
    [old] = store.history("shop/api")
    [again] = store.deploy([item("shop/api")])
    assert again.changed and again.version > old.id
    assert store.app("shop/api").previous is None


def test_history_is_newest_first_and_limited(store: StateStore) -> None:
    for n in range(1, 6):
        store.deploy([item(n=n)])
    history = store.history("shop/api", limit=3)
    assert [json.loads(v.spec_json)["n"] for v in history] == [5, 4, 3]
    with pytest.raises(UnknownApp):
        store.history("shop/nope")


def test_generation_increments_only_on_changes(store: StateStore) -> None:
    assert store.generation() == 0
    store.deploy([item(n=1)])
    store.deploy([item(n=1)])
    assert store.generation() == 1
    for failing in (lambda: store.rollback("shop/api"), lambda: store.promote("shop/api"),
                    lambda: store.abort("shop/api"), lambda: store.delete("shop/nope")):
        with pytest.raises(StateError):
            failing()
    assert store.generation() == 1
    store.deploy([item(n=2)])
    store.rollback("shop/api")
    assert store.generation() == 3


def test_state_survives_reopening(tmp_path: Path) -> None:
    with StateStore(tmp_path) as store:
        store.deploy([item(n=1)])
        store.deploy([item(n=2)], canary_weight=30, canary_header="X-C: 1")
        before = store.apps()
        generation = store.generation()
    with StateStore(tmp_path) as store:
        assert store.apps() == before
        assert store.generation() == generation


def test_concurrent_threads(store: StateStore) -> None:
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for n in range(20):
                store.deploy([item(f"app{k}/c", n=n)])
                store.apps()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.generation() == 80
    assert len(store.apps()) == 4


def test_closed_store_refuses(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.close()
    store.close()
    with pytest.raises(StateError, match="closed"):
        store.apps()


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"canary_weight": 101}, "canary_weight"),
        ({"canary_weight": -1}, "canary_weight"),
        ({"canary_weight": True}, "canary_weight"),
        ({"canary_header": "no colon"}, "canary_header"),
        ({"canary_header": "Bad Name: 1"}, "canary_header"),
        ({"canary_header": "X-C:"}, "canary_header"),
        ({"canary_header": "X-C: a\r\nInjected: 1"}, "canary_header"),
    ],
)
def test_canary_validation_names_the_field(store: StateStore, kwargs: dict[str, object], field: str) -> None:
    store.deploy([item(n=1)])
    with pytest.raises(StateError, match=field):
        store.deploy([item(n=2)], **kwargs)  # type: ignore[arg-type]
    assert store.generation() == 1


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (DeployItem("no-slash", "{}", "a" * 64, False), r"items\[0\]\.app"),
        (DeployItem("Up/per", "{}", "a" * 64, False), r"items\[0\]\.app"),
        (DeployItem("a/b/c", "{}", "a" * 64, False), r"items\[0\]\.app"),
        (DeployItem("a/b", "not json", "a" * 64, False), r"items\[0\]\.spec_json"),
        (DeployItem("a/b", "[1]", "a" * 64, False), r"items\[0\]\.spec_json"),
        (DeployItem("a/b", "{}", "", False), r"items\[0\]\.digest"),
    ],
)
def test_item_validation_names_the_field(store: StateStore, bad: DeployItem, field: str) -> None:
    with pytest.raises(StateError, match=field):
        store.deploy([bad])


def test_duplicate_and_empty_deploys_are_refused(store: StateStore) -> None:
    with pytest.raises(StateError, match=r"items\[1\]\.app.*twice"):
        store.deploy([item(n=1), item(n=2)])
    with pytest.raises(StateError, match="items"):
        store.deploy([])
    with pytest.raises(StateError, match="app"):
        store.app("not a name")


def test_errors_are_wasmlet_errors() -> None:
    for cls in (StateError, StateLocked, UnknownApp, NoCanary, NothingToRollBack, UnknownVersion):
        assert issubclass(cls, WasmletError)


# --- across processes --------------------------------------------------------------------------

_DEPLOYER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from wasmlet.control import DeployItem, StateStore

    store = StateStore(Path(sys.argv[1]))
    n = 0
    while True:
        n += 1
        items = [DeployItem("shop/api", json.dumps({"n": n}), f"{n:064x}", False)]
        if n % 5 == 0:
            store.deploy(items, canary_weight=n % 100)  # a canary of shop/api
        else:
            if n % 3 == 0:
                items.append(DeployItem(f"shop/c{n}", json.dumps({"n": n}), f"{n:064x}", True))
            store.deploy(items)
        print(f"acked {n}", flush=True)
    """
)


@pytest.mark.parametrize("stop_after", [1, 7, 40])
def test_every_acknowledged_deploy_survives_sigkill(tmp_path: Path, stop_after: int) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _DEPLOYER, str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        acked = 0
        while acked < stop_after:
            line = child.stdout.readline()
            if not line.startswith("acked "):
                child.kill()
                pytest.fail(f"child said {line!r}; stderr: {child.stderr.read() if child.stderr else ''}")
            acked = int(line.split()[1])
        os.kill(child.pid, signal.SIGKILL)  # right after the acknowledgement: no close, no clean-up
    finally:
        child.kill()
        child.wait()
        if child.stdout:
            child.stdout.close()
        if child.stderr:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL

    with StateStore(tmp_path) as store:  # the lock died with the child
        history = store.history("shop/api", limit=10_000)
        seen = {json.loads(v.spec_json)["n"] for v in history}
        assert set(range(1, acked + 1)) <= seen
        # Stable or canary holds the latest acknowledged (or a later) deploy of shop/api.
        state = store.app("shop/api")
        latest = max(json.loads(v.spec_json)["n"] for v in (state.stable, state.canary) if v is not None)
        assert latest >= acked
        for n in range(3, acked + 1, 3):
            if n % 5:
                assert store.app(f"shop/c{n}").stable.component is True
        assert store.generation() >= acked


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from wasmlet.control import StateLocked, StateStore

    try:
        store = StateStore(Path(sys.argv[1]))
    except StateLocked as exc:
        print("locked:", exc, flush=True)
        sys.exit(3)
    print("opened", flush=True)
    sys.stdin.read()
    """
)


def test_a_second_process_gets_state_locked(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    with StateStore(directory):
        result = subprocess.run([sys.executable, "-c", _HOLDER, str(directory)], capture_output=True, text=True,
                                timeout=60, stdin=subprocess.DEVNULL)
        assert result.returncode == 3, result.stderr
        assert "locked:" in result.stdout and str(directory) in result.stdout
    # Closed: now the other process may open it.
    result = subprocess.run([sys.executable, "-c", _HOLDER, str(directory)], capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0 and "opened" in result.stdout, result.stderr


def test_state_locked_while_another_process_owns_it(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "opened"
        with pytest.raises(StateLocked, match=str(tmp_path)):
            StateStore(tmp_path)
        child.stdin.close()
        assert child.wait(timeout=60) == 0
    finally:
        child.kill()
        child.wait()
    StateStore(tmp_path).close()
