"""The Spin Python SDK example (examples/spin-python, componentize-py + spin-sdk) on define_spin.

The component is built from source by the example's build script (cached by
``tests/guests/toolchains.py``) and compiled once into a cache of its own
under ``~/.cache/wasmlet`` (about 50 s the first time: 37 MB of Python
runtime). ``build_handler`` makes it a ``wasi:http/proxy`` handler
(``guest._proxy``) from the example's own manifest, with
``spin_extension(kv)`` on the linkers, as a worker would: the greeting comes
from the manifest's environment, the counter from the app's SQLite file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime
import wasmtime.component as wc
from tests.guest.conftest import ticking_engine
from tests.guests import toolchains

from wasmlet.engine import ModuleCache
from wasmlet.guest import CgiRequest, Handler, Linkers, build_handler
from wasmlet.guest._spin import SPIN_INTERFACES, Err, KeyValueHost, spin_extension
from wasmlet.guest._spin._abi import _refusal
from wasmlet.guest._spin._denied import DENIED
from wasmlet.plan import ComponentSpec, EngineSettings, assign_routes, load_manifest

SETTINGS = EngineSettings(pool_instances=16, pool_max_memory=256 << 20, pool_warm_slots=2)
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "spin-python" / "app.yaml"
# What a Python guest links whatever it calls: WASI itself, served by the proxy host.
_WASI = ("wasi:cli/", "wasi:io/", "wasi:clocks/", "wasi:random/", "wasi:filesystem/", "wasi:sockets/", "wasi:http/")


@pytest.fixture(scope="module")
def engine() -> Iterator[wasmtime.Engine]:
    with ticking_engine(SETTINGS) as engine:
        yield engine


@pytest.fixture(scope="module")
def component(engine: wasmtime.Engine) -> wc.Component:
    wasm = toolchains.spin_python().read_bytes()
    cache = ModuleCache(engine, SETTINGS, toolchains.cache_dir() / "spin-tests")
    digest, _ = cache.compile(wasm, "spin-python")
    loaded = cache.load(digest, wasm, "spin-python", component=True)
    assert isinstance(loaded, wc.Component)
    return loaded


def example_spec(app: str = "spin-python", environment: tuple[tuple[str, str], ...] | None = None) -> ComponentSpec:
    [spec] = assign_routes(load_manifest(EXAMPLE))
    return dataclasses.replace(spec, app=app, environment=spec.environment if environment is None else environment)


def handler(engine: wasmtime.Engine, component: wc.Component, kv: KeyValueHost, spec: ComponentSpec) -> Handler:
    return build_handler(spec, component, Linkers(engine, extensions=[spin_extension(kv)]))


def get(handler: Handler, body: bytes = b"") -> list[str]:
    result = handler.handle(CgiRequest(method="POST", path="/echo", raw_path="/echo",
                                       query="x=1", headers=(("host", "localhost"),), body=body))
    assert result.response.status == 200
    return result.response.body.decode().splitlines()


def test_every_spin_interface_the_sdk_imports_is_linked(engine: wasmtime.Engine, component: wc.Component) -> None:
    platform = {n for n in component.type.imports(engine) if not n.startswith(_WASI)}
    assert platform and platform <= set(SPIN_INTERFACES)


def test_denials_match_what_the_sdk_imports(engine: wasmtime.Engine, component: wc.Component) -> None:
    """Each denied function and resource, by the SDK's own types: the error case each answers, or a trap."""
    imports = component.type.imports(engine)
    answers: dict[str, set[str]] = {}
    for interface, (resources, functions) in DENIED.items():
        instance = imports[interface].ty
        assert isinstance(instance, wc.ComponentInstanceType)
        exports = instance.exports(engine)
        assert {n for n, e in exports.items() if isinstance(e.ty, wc.FuncType)} == set(functions), interface
        assert {n for n, e in exports.items() if isinstance(e.ty, wc.ResourceType)} == {r for r, _ in resources}
        for function in functions:
            ty = exports[function].ty
            assert isinstance(ty, wc.FuncType)
            try:
                answer = _refusal(ty.result, f"wasmlet does not provide {interface}")
            except wasmtime.WasmtimeError as exc:
                assert str(exc) == f"wasmlet does not provide {interface}"
                answers.setdefault("trap", set()).add(f"{interface}#{function}")
                continue
            assert isinstance(answer, Err) and answer.value.payload == f"wasmlet does not provide {interface}"
            answers.setdefault(answer.value.tag, set()).add(f"{interface}#{function}")
    assert answers["trap"] == {  # no result, or no error case with a message: none is reachable without a handle
        "spin:sqlite/sqlite@3.0.0#[method]connection.last-insert-rowid",
        "spin:sqlite/sqlite@3.0.0#[method]connection.changes",
        "wasi:keyvalue/atomics@0.2.0-draft2#swap",
    }
    assert answers["runtime-error"] == {"fermyon:spin/llm@2.0.0#infer", "fermyon:spin/llm@2.0.0#generate-embeddings"}
    assert answers["io"] == {
        "fermyon:spin/sqlite@2.0.0#[static]connection.open", "fermyon:spin/sqlite@2.0.0#[method]connection.execute",
        "spin:sqlite/sqlite@3.0.0#[static]connection.open", "spin:sqlite/sqlite@3.0.0#[method]connection.execute",
    }
    assert set(answers) == {"trap", "runtime-error", "io", "other"}


def test_counter_and_greeting(engine: wasmtime.Engine, component: wc.Component, tmp_path: Path) -> None:
    kv = KeyValueHost(tmp_path / "kv")
    spec = example_spec()
    assert (spec.app, spec.route) == ("spin-python", "/")
    first = handler(engine, component, kv, spec)
    assert get(first, b"ping") == ["greeting=Hello from the manifest", "count=1", "method=POST",
                                   "path=/echo?x=1", "body=ping"]
    assert get(first)[1] == "count=2"
    # Another app on the same host starts from nothing, with its own variables.
    other = handler(engine, component, kv, example_spec("other-app", (("SPIN_VARIABLE_GREETING", "hi"),)))
    assert get(other)[:2] == ["greeting=hi", "count=1"]
    kv.close()
    # A restarted worker (a new KeyValueHost on the same directory) continues where the app was.
    restarted = KeyValueHost(tmp_path / "kv")
    assert get(handler(engine, component, restarted, spec))[1] == "count=3"
    assert restarted.stores("spin-python").get("default", "count") == b"3"
    assert sorted(p.name for p in (tmp_path / "kv").glob("*.sqlite")) == ["other-app.sqlite", "spin-python.sqlite"]
    restarted.close()


def test_without_a_store_the_app_gets_an_error_not_a_crash(engine: wasmtime.Engine, component: wc.Component) -> None:
    """spin_extension(None) (no durable state): open answers access-denied, which the SDK raises; 500."""
    result = build_handler(example_spec(), component, Linkers(engine, extensions=[spin_extension(None)])).handle(
        CgiRequest(method="GET", path="/", raw_path="/", query="", headers=(), body=b""))
    assert result.response.status == 500
    assert b"spin_sdk.wit.types.Err: Error_AccessDenied()" in result.stderr
