"""A real component calling Spin's key-value and variables through ``define_spin``.

``guest/spin_probe.wasm`` (built from ``guest/spin_probe.c`` by ``guest/build.sh``)
is a ``wasi:cli`` command, so it runs under today's ``ComponentHandler`` on a
linker with wasmtime's WASI 0.2 plus ``define_spin``; its query string is the
list of operations to run (see the C file), one output line each.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime
import wasmtime.component as wc
from tests.guests import toolchains

from wasmlet._errors import GuestTimeout, GuestTrap
from wasmlet.guest import CgiRequest, GuestLimits
from wasmlet.guest._component import ComponentHandler, build_component_linker, find_run_export
from wasmlet.guest._spin import KeyValueHost, KvLimits, SpinContext, app_file_name, define_spin, spin_context

PROBE = Path(__file__).resolve().parent / "guest" / "spin_probe.wasm"
BUILD = PROBE.with_name("build.sh")
LIMITS = GuestLimits(memory=32 << 20, timeout=10.0, max_response=1 << 20)
ENV = (("SPIN_VARIABLE_GREETING", "hello"), ("GREETING", "shadowed"), ("API_URL", "https://api.example.com"))


@pytest.fixture(scope="module")
def linker(engine: wasmtime.Engine) -> wc.Linker:
    linker = build_component_linker(engine)
    define_spin(linker)
    return linker


@pytest.fixture(scope="module")
def probe(engine: wasmtime.Engine, linker: wc.Linker) -> ComponentHandler:
    return ComponentHandler("spin-probe", engine, wc.Component.from_file(engine, PROBE), LIMITS, route="/",
                            linker=linker)


@pytest.fixture
def kv(tmp_path: Path) -> Iterator[KeyValueHost]:
    host = KeyValueHost(tmp_path / "kv")
    yield host
    host.close()


def call(handler: ComponentHandler, ctx: SpinContext, query: str) -> list[str]:
    with spin_context(ctx):
        result = handler.handle(CgiRequest(method="GET", path="/", raw_path="/", query=query, headers=(), body=b""))
    assert result.response.status == 200
    return result.response.body.decode().splitlines()


def test_key_value_round_trip(probe: ComponentHandler, kv: KeyValueHost) -> None:
    ctx = SpinContext.build("app", ENV, kv)
    assert call(probe, ctx, "open=default&set=a:1&set=b:two&get=a&get=b&get=c&has=a&has=c&keys&del=a&has=a&keys") == [
        "open: ok 2", "set: ok", "set: ok", "get: some 1 1", "get: some 3 two", "get: none", "has: true",
        "has: false", "keys: 2 a,b", "del: ok", "has: false", "keys: 1 b",
    ]


def test_values_persist_across_requests_and_hosts(probe: ComponentHandler, kv: KeyValueHost, tmp_path: Path) -> None:
    assert call(probe, SpinContext.build("app", ENV, kv), "open=default&set=count:41") == ["open: ok 2", "set: ok"]
    assert call(probe, SpinContext.build("app", ENV, kv), "open=default&get=count") == ["open: ok 2",
                                                                                     "get: some 2 41"]
    restarted = KeyValueHost(tmp_path / "kv")  # a new worker process on the same host
    assert call(probe, SpinContext.build("app", ENV, restarted), "open=default&get=count")[1] == "get: some 2 41"
    restarted.close()


def test_apps_cannot_read_each_others_keys(probe: ComponentHandler, kv: KeyValueHost) -> None:
    call(probe, SpinContext.build("alpha", ENV, kv), "open=default&set=secret:alpha-only")
    assert call(probe, SpinContext.build("beta", ENV, kv), "open=default&get=secret&keys") == [
        "open: ok 2", "get: none", "keys: 0"]
    assert call(probe, SpinContext.build("alpha", ENV, kv), "open=default&get=secret")[1] == "get: some 10 alpha-only"


@pytest.mark.parametrize("app", ["../../outside", "/etc/passwd", "..", "a/../../b"])
def test_hostile_app_names_stay_in_the_kv_root(probe: ComponentHandler, tmp_path: Path, app: str) -> None:
    root = tmp_path / "state" / "kv"
    host = KeyValueHost(root)
    assert call(probe, SpinContext.build(app, ENV, host), "open=default&set=k:v") == ["open: ok 2", "set: ok"]
    host.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["kv"]
    assert (root / app_file_name(app)).is_file()


def test_labels_other_than_default_and_no_store(probe: ComponentHandler, kv: KeyValueHost) -> None:
    assert call(probe, SpinContext.build("app", ENV, kv), "open=other&open=&open=Default") == [
        "open: err no-such-store", "open: err no-such-store", "open: err no-such-store"]
    assert call(probe, SpinContext.build("app", ENV, None), "open=default") == ["open: err access-denied"]


def test_variables_from_the_environment(probe: ComponentHandler) -> None:
    ctx = SpinContext.build("app", ENV, None)
    assert call(probe, ctx, "var=greeting&var=api_url&var=missing&var=API_URL&var=a__b") == [
        "var: ok hello",
        "var: ok https://api.example.com",
        "var: err undefined no variable 'missing': set SPIN_VARIABLE_MISSING or MISSING in the component's environment",
        "var: err invalid-name 'API_URL': invalid character 'A': variable names may contain only lower-case "
        "letters, numbers and '_'",
        "var: err invalid-name 'a__b': must not contain two underscores in a row",
    ]


def test_wasi_config_store_reads_the_same_variables(probe: ComponentHandler) -> None:
    ctx = SpinContext.build("app", (*ENV, ("lower_case", "not a variable")), None)
    assert call(probe, ctx, "config=greeting&config=api_url&config=missing&config=API_URL&configall") == [
        "config: some hello",
        "config: some https://api.example.com",
        "config: none",  # undefined and invalid names are none, not errors, as in Spin
        "config: none",
        "configall: 2 api_url=https://api.example.com,greeting=hello",
    ]


def test_size_limits_answer_errors(probe: ComponentHandler, kv: KeyValueHost) -> None:
    ctx = SpinContext.build("app", ENV, kv)
    assert call(probe, ctx, "open=default&setn=max:1048576&get=max&setn=big:1048577&setn=big:2000000"
                            "&keyn=256&keyn=257&keyn=100000") == [
        "open: ok 2", "setn: ok", "get: some 1048576 " + "x" * 64,
        "setn: err other key-value: the value is 1048577 bytes, more than the limit of 1048576",
        "setn: err other key-value: the value is 2000000 bytes, more than the limit of 1048576",
        "keyn: ok",
        "keyn: err other key-value: the key is 257 bytes, more than the limit of 256",
        "keyn: err other key-value: the key is 100000 bytes, more than the limit of 256",
    ]


def test_a_value_past_wasmtimes_copy_budget_traps(probe: ComponentHandler, kv: KeyValueHost) -> None:
    """8 MB never reaches the host: wasmtime stops the copy ("fuel allocated for hostcalls has been exhausted")."""
    ctx = SpinContext.build("app", ENV, kv)
    with spin_context(ctx), pytest.raises(GuestTrap):
        probe.handle(CgiRequest(method="GET", path="/", raw_path="/", query="open=default&setn=huge:8000000",
                                headers=(), body=b""))
    assert kv.stores("app").usage() == (0, 0)
    assert call(probe, ctx, "open=default&has=huge") == ["open: ok 2", "has: false"]


def test_a_million_keys_stop_at_the_limit(probe: ComponentHandler, tmp_path: Path) -> None:
    host = KeyValueHost(tmp_path, KvLimits(max_keys=300))
    ctx = SpinContext.build("app", ENV, host)
    assert call(probe, ctx, "open=default&fill=1000000&keys") == [
        "open: ok 2",
        "fill: 300 err other key-value: app 'app' holds 300 keys, the limit (300); delete some first",
        "keys: 300 f0,f1,f10,f100,f101,f102,f103,f104,f105,f106,f107,f108,f109,f11,f110,f111,f112,f113,f114,f115",
    ]
    host.close()


def test_a_guest_writing_forever_stops_at_its_deadline(engine: wasmtime.Engine, linker: wc.Linker,
                                                        tmp_path: Path) -> None:
    """The limit is high and the guest keeps writing: the request deadline still ends it (between host calls)."""
    short = ComponentHandler("spin-probe", engine, wc.Component.from_file(engine, PROBE),
                             GuestLimits(memory=32 << 20, timeout=0.5, max_response=1 << 20), route="/", linker=linker)
    host = KeyValueHost(tmp_path, KvLimits(max_keys=10_000_000, max_bytes=1 << 40))
    with spin_context(SpinContext.build("app", ENV, host)), pytest.raises(GuestTimeout):
        short.handle(CgiRequest(method="GET", path="/", raw_path="/", query="open=default&fill=100000000",
                                headers=(), body=b""))
    assert 0 < host.stores("app").usage()[0] < 100_000_000
    host.close()


_HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(60)
"""


def test_a_locked_store_does_not_hold_the_guest_past_its_deadline(engine: wasmtime.Engine, linker: wc.Linker,
                                                                   tmp_path: Path) -> None:
    """Another process holds the write lock; busy_timeout is 20 s, the request's deadline 1 s: it ends by then."""
    short = ComponentHandler("spin-probe", engine, wc.Component.from_file(engine, PROBE),
                             GuestLimits(memory=32 << 20, timeout=1.0, max_response=1 << 20), route="/", linker=linker)
    host = KeyValueHost(tmp_path, KvLimits(busy_timeout=20))
    stores = host.stores("app")
    stores.set("default", "k", b"before")
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(stores.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with spin_context(SpinContext.build("app", ENV, host), deadline=started + 1.0):
            try:
                result = short.handle(CgiRequest(method="GET", path="/", raw_path="/", query="open=default&set=k:v",
                                                 headers=(), body=b""))
            except GuestTimeout:
                pass  # the busy error came back at the deadline, and the epoch stopped the guest right after
            else:
                assert result.response.body.decode().splitlines()[1].startswith("set: err other key-value store")
        assert time.monotonic() - started < 6  # not the 20 s of busy_timeout
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert stores.get("default", "k") == b"before"
    host.close()


def test_ten_thousand_stores(probe: ComponentHandler, kv: KeyValueHost) -> None:
    """Held open, they stop at the handle table's size; opened and dropped, they never do."""
    ctx = SpinContext.build("app", ENV, kv)
    assert call(probe, ctx, "opens=10000") == ["opens: 64 err store-table-full"]
    assert call(probe, ctx, "opens=10000") == ["opens: 64 err store-table-full"]  # a request's handles end with it
    assert call(probe, ctx, "cycle=10000") == ["cycle: 10000"]


def test_a_dropped_handle_traps_and_the_host_keeps_serving(probe: ComponentHandler, kv: KeyValueHost) -> None:
    ctx = SpinContext.build("app", ENV, kv)
    with spin_context(ctx), pytest.raises(GuestTrap):
        probe.handle(CgiRequest(method="GET", path="/", raw_path="/", query="stale", headers=(), body=b""))
    with spin_context(ctx), pytest.raises(GuestTrap):
        probe.handle(CgiRequest(method="GET", path="/", raw_path="/", query="open=default&close&get=k", headers=(),
                                body=b""))
    assert call(probe, ctx, "open=default&set=k:still-here&get=k")[2] == "get: some 10 still-here"


def test_interfaces_wasmlet_does_not_provide(probe: ComponentHandler) -> None:
    ctx = SpinContext.build("app", ENV, None)
    assert call(probe, ctx, "redis=redis://127.0.0.1:6379&llm") == [
        "redis: err other wasmlet does not provide fermyon:spin/redis@2.0.0",
        "llm: err runtime-error wasmlet does not provide fermyon:spin/llm@2.0.0",  # llm's error has no other
    ]


def run_directly(engine: wasmtime.Engine, linker: wc.Linker, query: str) -> str:
    """Run the probe without a handler, returning the trap's full text (the handler keeps its first line)."""
    component = wc.Component.from_file(engine, PROBE)
    wasi = wasmtime.WasiConfig()
    wasi.env = [("QUERY_STRING", query)]
    store = wasmtime.Store(engine)
    store.set_wasi(wasi)
    store.set_epoch_deadline(1000)
    instance = linker.instantiate(store, component)
    run = instance.get_func(store, find_run_export(component, engine, "probe"))
    assert run is not None
    with pytest.raises(wasmtime.WasmtimeError) as info:
        run(store)
    return str(info.value)


def test_traps_name_what_failed(engine: wasmtime.Engine, linker: wc.Linker, kv: KeyValueHost) -> None:
    ctx = SpinContext.build("app", ENV, kv)
    with spin_context(ctx):
        assert "unknown handle index" in run_directly(engine, linker, "stale")
        assert "fuel allocated for hostcalls has been exhausted" in run_directly(engine, linker,
                                                                                 "open=default&setn=huge:8000000")
    assert "fermyon:spin/key-value@2.0.0 called outside a request" in run_directly(engine, linker, "open=default")


def test_requests_on_many_threads(probe: ComponentHandler, kv: KeyValueHost) -> None:
    """Each thread's calls see its own request's context: two apps, four threads each, no crossing."""
    errors: list[BaseException] = []

    def worker(app: str, n: int) -> None:
        try:
            for i in range(10):
                lines = call(probe, SpinContext.build(app, [("SPIN_VARIABLE_WHO", app)], kv),
                             f"open=default&set={app}-{n}-{i}:{app}&var=who")
                assert lines == ["open: ok 2", "set: ok", f"var: ok {app}"]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(app, n)) for app in ("a", "b") for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    for app in ("a", "b"):
        keys = kv.stores(app).get_keys("default")
        assert len(keys) == 40 and all(k.startswith(f"{app}-") for k in keys)


def test_committed_probe_is_what_its_source_builds_to(tmp_path: Path) -> None:
    out = tmp_path / "spin_probe.wasm"
    env = {**os.environ, "WASM_TOOLS": str(toolchains.wasm_tools())}
    subprocess.run(["bash", str(BUILD), str(out)], env=env, check=True, capture_output=True, timeout=300)
    assert out.read_bytes() == PROBE.read_bytes(), "rebuild with tests/guest/spin/guest/build.sh"
