"""WASI 0.2 ``wasi:cli`` components served CGI-style, and what wasmtime-py 50 cannot do.

The guests are built by ``tests/guests/components/build.sh`` and committed:
``cgi_p2.wasm`` (freestanding C on wasi:cli 0.2.0), ``cgi_p1_adapted.wasm``
(wasi-libc C through the preview 1 adapter), ``cgi_p1_command.wasm`` (the
same C as a WAGI module) and ``http_probe.wasm`` (a wasi:http handler).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import wasmtime
import wasmtime.component as wc
from tests.guest.conftest import expect_capacity, pool_slots_taken, ticking_engine
from wasmtime import _ffi as ffi

from wasmlet._errors import (
    GuestExit,
    GuestOutputLimit,
    GuestTimeout,
    GuestTrap,
    MalformedResponse,
    ModuleError,
)
from wasmlet.engine import build_engine
from wasmlet.guest import CgiRequest, GuestLimits, WagiHandler
from wasmlet.guest._component import ComponentHandler, build_component_linker, find_run_export
from wasmlet.plan import EngineSettings

GUESTS = Path(__file__).resolve().parents[1] / "guests" / "components"
LIMITS = GuestLimits(memory=4 << 20, timeout=0.5, max_response=256 * 1024)


@pytest.fixture(scope="module")
def components(engine: wasmtime.Engine) -> dict[str, wc.Component]:
    return {
        name: wc.Component.from_file(engine, GUESTS / f"{name}.wasm")
        for name in ("cgi_p2", "cgi_p1_adapted", "http_probe")
    }


def handler(engine: wasmtime.Engine, component: wc.Component, limits: GuestLimits = LIMITS) -> ComponentHandler:
    return ComponentHandler("app", engine, component, limits, route="/app")


def request(path: str = "/echo", body: bytes = b"", query: str = "", method: str = "GET") -> CgiRequest:
    return CgiRequest(
        method=method,
        path="/app" + path,
        raw_path="/app" + path,
        query=query,
        headers=(("host", "example.test"), ("x-thing", "1")),
        body=body,
    )


@pytest.mark.parametrize("name", ["cgi_p2", "cgi_p1_adapted"])
def test_echo_gets_env_argv_and_stdin(engine: wasmtime.Engine, components: dict[str, wc.Component], name: str) -> None:
    result = handler(engine, components[name]).handle(
        request("/echo", body=b"hello body", query="a=1&b=two+words", method="POST")
    )
    assert result.response.status == 200
    assert (b"content-type", b"text/plain") in result.response.headers
    body = result.response.body.decode()
    assert "method=POST\n" in body
    assert "query=a=1&b=two+words\n" in body
    assert "argv=/app|a=1|b=two words\n" in body
    assert "body=hello body\n" in body


@pytest.mark.parametrize("name", ["cgi_p2", "cgi_p1_adapted"])
def test_cgi_variables(engine: wasmtime.Engine, components: dict[str, wc.Component], name: str) -> None:
    lines = handler(engine, components[name]).handle(request("/env")).response.body.decode().splitlines()
    assert "PATH_INFO=/env" in lines
    assert "SCRIPT_NAME=/app" in lines
    assert "X_MATCHED_ROUTE=/app" in lines
    assert "HTTP_X_THING=1" in lines
    assert "X_FULL_URL=http://example.test/app/env" in lines


def test_same_code_answers_alike_on_wagi_and_as_a_component(
    engine: wasmtime.Engine, components: dict[str, wc.Component]
) -> None:
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    module = wasmtime.Module.from_file(engine, str(GUESTS / "cgi_p1_command.wasm"))
    wagi = WagiHandler("app", engine, linker, module, LIMITS, route="/app")
    component = handler(engine, components["cgi_p1_adapted"])
    req = request("/echo", body=b"same", query="x=1")
    assert wagi.handle(req).response == component.handle(req).response


def test_stderr_is_captured(engine: wasmtime.Engine, components: dict[str, wc.Component]) -> None:
    result = handler(engine, components["cgi_p2"]).handle(request("/stderr"))
    assert result.stderr == b"guest says hello on stderr\n"
    assert result.response.body == b"see stderr\n"


def test_output_that_is_not_cgi(engine: wasmtime.Engine, components: dict[str, wc.Component]) -> None:
    with pytest.raises(MalformedResponse):
        handler(engine, components["cgi_p2"]).handle(request("/bad"))


def test_run_returning_err_is_exit_status_1(engine: wasmtime.Engine, components: dict[str, wc.Component]) -> None:
    with pytest.raises(GuestExit) as info:
        handler(engine, components["cgi_p2"]).handle(request("/fail"))
    assert info.value.code == 1


@pytest.mark.parametrize("name", ["cgi_p2", "cgi_p1_adapted"])
def test_exit_with_error(engine: wasmtime.Engine, components: dict[str, wc.Component], name: str) -> None:
    # wasi:cli/exit@0.2.0 carries only ok/err, so the adapter turns exit(3) into status 1.
    with pytest.raises(GuestExit) as info:
        handler(engine, components[name]).handle(request("/exit"))
    assert info.value.code == 1


@pytest.mark.parametrize("name", ["cgi_p2", "cgi_p1_adapted"])
def test_trap(engine: wasmtime.Engine, components: dict[str, wc.Component], name: str) -> None:
    with pytest.raises(GuestTrap, match="unreachable"):
        handler(engine, components[name]).handle(request("/trap"))


def test_runaway_guest_stops_at_its_deadline(engine: wasmtime.Engine, components: dict[str, wc.Component]) -> None:
    started = time.monotonic()
    with pytest.raises(GuestTimeout):
        handler(engine, components["cgi_p2"]).handle(request("/loop"))
    assert time.monotonic() - started < LIMITS.timeout + 0.5


def test_a_full_instance_pool_is_the_hosts_capacity_not_a_trap() -> None:
    # cgi_p2.wasm takes 3 core instances: a pool of 3 with one slot taken cannot give it one.
    # The request gets 503 "capacity" (not counted by the breaker), not a 500 "trap".
    with ticking_engine(EngineSettings(pool_instances=3, pool_max_memory=64 << 20, pool_warm_slots=1)) as engine:
        one_at_a_time = handler(engine, wc.Component.from_file(engine, GUESTS / "cgi_p2.wasm"))
        with pool_slots_taken(engine):
            expect_capacity(lambda: one_at_a_time.handle(request("/echo")))
            # A version deployed meanwhile links (imports are checked before any instance is made):
            # it is accepted, not refused as "cannot link", and serves once a slot is free.
            deployed = handler(engine, wc.Component.from_file(engine, GUESTS / "cgi_p2.wasm"))
        assert one_at_a_time.handle(request("/echo")).response.status == 200
        assert deployed.handle(request("/echo")).response.status == 200


def test_flood_stops_at_the_response_cap(engine: wasmtime.Engine, components: dict[str, wc.Component]) -> None:
    with pytest.raises(GuestOutputLimit):
        handler(engine, components["cgi_p2"]).handle(request("/flood"))


def test_memory_limit_refuses_growth(engine: wasmtime.Engine, components: dict[str, wc.Component]) -> None:
    # memory.grow is refused at the limit and the guest traps; the host cannot read a
    # component's memory size, so this is reported as the trap it is (docs/guest-abis.md).
    with pytest.raises(GuestTrap, match="unreachable"):
        handler(engine, components["cgi_p2"]).handle(request("/grow"))


def test_memory_limit_below_the_start_size_is_refused_at_deploy(
    engine: wasmtime.Engine, components: dict[str, wc.Component]
) -> None:
    tiny = GuestLimits(memory=65536, timeout=0.5, max_response=1024)
    with pytest.raises(ModuleError, match="needs more memory to start than its memoryLimit of 65536"):
        ComponentHandler("app", engine, components["cgi_p2"], tiny, route="/app")


def test_concurrent_requests(engine: wasmtime.Engine, components: dict[str, wc.Component]) -> None:
    app = handler(engine, components["cgi_p1_adapted"])
    bodies: list[bytes] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(20):
            body = f"{n}-{i}".encode()
            out = app.handle(request(body=body)).response.body
            with lock:
                bodies.append(out.split(b"body=")[1].rstrip(b"\n"))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(bodies) == sorted(f"{n}-{i}".encode() for n in range(4) for i in range(20))


def test_component_without_wasi_cli_run(engine: wasmtime.Engine, components: dict[str, wc.Component]) -> None:
    with pytest.raises(ModuleError, match=r"no wasi:cli/run.*wasi:http/incoming-handler@0\.2\.0"):
        find_run_export(components["http_probe"], engine, "app")


def test_unlinkable_component_is_refused_at_deploy(
    engine: wasmtime.Engine, components: dict[str, wc.Component]
) -> None:
    with pytest.raises(ModuleError, match="cannot link the component"):
        ComponentHandler("app", engine, components["cgi_p2"], LIMITS, "/app", linker=wc.Linker(engine))


# What wasmtime-py 50 cannot do. Each test pins the reason given in
# docs/guest-abis.md, and fails when an upgrade removes it.


def test_no_component_instance_pre_in_the_c_api() -> None:
    assert hasattr(ffi, "wasmtime_linker_instantiate_pre")  # core modules have it
    assert not any("component" in name and "pre" in name.split("_") for name in dir(ffi))


def test_no_host_side_wasi_http_server_api() -> None:
    # Linking a guest's wasi:http imports, and a store context for them: nothing
    # that makes an incoming-request or a response-outparam, or reads a response.
    names = [n for n in dir(ffi) if "http" in n]
    assert sorted(names) == [
        "wasmtime_component_linker_add_wasi_http",
        "wasmtime_component_linker_add_wasi_http_async",
        "wasmtime_context_set_wasi_http",
    ]


def test_incoming_handler_cannot_be_called_from_the_host(
    engine: wasmtime.Engine, components: dict[str, wc.Component]
) -> None:
    component = components["http_probe"]
    linker = build_component_linker(engine)
    linker.add_wasi_http()  # satisfies wasi:http/types imports ...
    store = wasmtime.Store(engine)
    store.set_wasi(wasmtime.WasiConfig())
    store.set_wasi_http()
    store.set_epoch_deadline(1 << 30)
    instance = linker.instantiate(store, component)
    iface = component.get_export_index("wasi:http/incoming-handler@0.2.0")
    index = component.get_export_index("handle", iface)
    assert index is not None
    handle = instance.get_func(store, index)
    assert handle is not None
    # ... but handle needs own<incoming-request> and own<response-outparam> of
    # wasmtime-wasi-http's Rust resource types, which only Rust code can mint;
    # a Python host resource is another type.
    with pytest.raises(wasmtime.WasmtimeError, match="mismatched resource types"):
        handle(store, wc.ResourceHost.own(1, 1), wc.ResourceHost.own(2, 2))


def test_traceparent_and_stats(engine: wasmtime.Engine, components: dict[str, wc.Component]) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    result = handler(engine, components["cgi_p2"]).handle(request("/env"), traceparent=parent)
    assert f"TRACEPARENT={parent}" in result.response.body.decode().splitlines()
    stats = result.stats
    assert stats.started_ns <= stats.instantiated_ns <= stats.finished_ns
    assert stats.memory == 0  # not measurable for components (docs/guest-abis.md)


def test_a_start_function_that_loops_is_refused_without_a_running_ticker() -> None:
    """Issue 14: the trial instantiation ran start functions with no epoch ticker, and never returned.

    No ticker runs on this engine (as at deploy, or in a worker loading its plan): the trial brings its own.
    """
    engine = build_engine(EngineSettings(pool_instances=8))
    looping = wc.Component.from_file(engine, GUESTS.parent / "security" / "start_loop.wasm")
    started = time.monotonic()
    with pytest.raises(ModuleError, match=r"did not start within 0\.5s"):
        handler(engine, looping)
    assert time.monotonic() - started < 3.0
