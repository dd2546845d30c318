"""The host-call helper (``_hostcall.c``): built against this interpreter, used by proxy linkers, and optional.

It includes ``Python.h``, so besides a compiler it needs the interpreter's
headers. Without them, with a compiler that fails, with a cached library
someone else could have written, or with ``WASMLET_NATIVE=0``, proxy linkers
define their functions with ctypes' callbacks, and requests are answered alike.
"""

from __future__ import annotations

import ctypes
import logging
import stat
import sysconfig
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime
import wasmtime.component as wc

from wasmlet.guest import CgiRequest, GuestLimits
from wasmlet.guest import _native as native
from wasmlet.guest._proxy import ProxyHandler, _abi, build_proxy_linker, component_interfaces, find_handler_export

PROXY_HELLO = Path(__file__).resolve().parents[1] / "guests" / "components" / "proxy_hello.wasm"
PROXY_GUEST = PROXY_HELLO.with_name("proxy_guest.wasm")
REQUEST = CgiRequest(method="GET", path="/", raw_path="/", query="", headers=(("host", "test"),), body=b"")


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A process that has not looked for the helper yet, with an empty cache folder; the cache's path."""
    monkeypatch.setattr(native, "_host_calls_tried", False)
    monkeypatch.setattr(native, "_host_calls", None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(native.NATIVE_ENV, raising=False)
    yield tmp_path / "cache" / "wasmlet" / "native"
    _abi.use_host_calls(None)  # the next linker built picks its own way again


def _handler(engine: wasmtime.Engine) -> ProxyHandler:
    component = wc.Component.from_file(engine, PROXY_HELLO)
    handle = find_handler_export(component, engine)
    assert handle is not None
    linker = build_proxy_linker(engine, component_interfaces(component, engine), [])
    limits = GuestLimits(memory=64 << 20, timeout=5.0, max_response=1 << 20)
    return ProxyHandler("hello", engine, component, limits, "/", linker, handle)


def test_built_into_the_cache_and_used_by_the_linkers(fresh: Path) -> None:
    helper = native.host_calls()
    assert helper is not None
    (built,) = fresh.glob("hostcall-*.so")
    assert stat.S_IMODE(built.stat().st_mode) & 0o022 == 0
    before = set(_abi._native_defined)
    handler = _handler(wasmtime.Engine())
    ours = {k: d for k, d in _abi._native_defined.items() if k not in before}
    assert ours, "the linker defined no function through the helper"
    calls: list[str] = []
    for key, defined in ours.items():
        if isinstance(defined, native.HostFunc):
            def counted(*args: object, _func: object = defined.call, _name: str = _abi.labels[key]) -> object:
                calls.append(_name)
                return _func(*args)  # type: ignore[operator]

            defined.call = counted
    result = handler.handle(REQUEST)
    assert (result.response.status, result.response.body) == (200, b"hello\n")
    assert "[constructor]outgoing-response" in calls and "[method]outgoing-body.write" in calls
    again = built.stat().st_mtime_ns
    native._host_calls_tried = False
    assert native.host_calls() is not None
    assert built.stat().st_mtime_ns == again  # loaded from the cache, not built again


def test_without_the_interpreters_headers_the_linkers_use_ctypes(
        fresh: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    paths = dict(sysconfig.get_paths(), include=str(tmp_path / "no-headers"))
    monkeypatch.setattr(sysconfig, "get_paths", lambda: paths)
    with caplog.at_level(logging.INFO, logger="wasmlet.guest"):
        assert native.host_calls() is None
    assert "no Python.h" in caplog.text
    assert not fresh.exists() or not list(fresh.glob("hostcall-*"))
    before = set(_abi._native_defined)
    handler = _handler(wasmtime.Engine())
    assert set(_abi._native_defined) == before  # every function through ctypes' callback
    assert handler.handle(REQUEST).response.body == b"hello\n"


def test_switched_off_by_the_environment(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.NATIVE_ENV, "0")
    assert native.host_calls() is None
    assert not fresh.exists()


def test_a_compiler_that_fails_is_reported_and_left(
        fresh: Path, failing_compiler: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="wasmlet.guest"):
        assert native.host_calls() is None
    assert "cannot build the wasi:http host-call helper" in caplog.text and failing_compiler in caplog.text
    assert not list(fresh.glob("hostcall-*.so"))


def test_a_library_others_could_have_written_is_not_loaded(fresh: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert native.host_calls() is not None
    (built,) = fresh.glob("hostcall-*.so")
    built.chmod(0o666)
    native._host_calls_tried = False
    with caplog.at_level(logging.WARNING, logger="wasmlet.guest"):
        assert native.host_calls() is None
    assert "is writable by others (mode 0666)" in caplog.text


def test_a_library_whose_structures_differ_from_the_mirrors_is_refused() -> None:
    class Size:
        def __init__(self, value: int) -> None:
            self.value = value
            self.restype: object = None

        def __call__(self) -> int:
            return self.value

    class Library:
        wasmlet_hostcall_api_size = Size(ctypes.sizeof(native.HostCallApi))
        wasmlet_hostcall_func_size = Size(ctypes.sizeof(native.HostFunc) + 8)

    with pytest.raises(OSError, match="struct func"):
        native.HostCalls(Library())  # type: ignore[arg-type]


def test_requests_on_many_threads_at_once_each_get_their_own_answer(engine: wasmtime.Engine) -> None:
    """Host calls from several guests at once: each callback takes the GIL for itself, values never mix."""
    helper = native.host_calls()
    assert helper is not None
    try:
        component = wc.Component.from_file(engine, PROXY_GUEST)
        handle = find_handler_export(component, engine)
        assert handle is not None
        linker = build_proxy_linker(engine, component_interfaces(component, engine), [])
        handler = ProxyHandler("echo", engine, component, GuestLimits(memory=64 << 20, timeout=30.0,
                                                                      max_response=1 << 20), "/", linker, handle)
        errors: list[str] = []

        def client(index: int) -> None:
            for round_ in range(20):
                body = f"thread {index} round {round_} ".encode() * (50 + index)
                request = CgiRequest(method="POST", path="/echo", raw_path="/echo", query="",
                                     headers=(("host", "test"), (f"x-thread-{index}", str(round_))), body=body)
                response = handler.handle(request).response
                if response.body != body or (f"echo-x-thread-{index}".encode(), str(round_).encode()) not in \
                        response.headers:
                    errors.append(f"thread {index} round {round_}: {response.status} {response.body[:40]!r}")

        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
    finally:
        _abi.use_host_calls(None)
