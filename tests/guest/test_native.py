"""The native request path (``guest/_native.py``): built from source here, and a fallback that always works.

The C helper is compiled with the machine's compiler into the cache folder. A
machine without one, a compiler that fails, or a cached library that cannot be
loaded must each leave the request path on ctypes, never without one.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from wasmlet.control import plan_for_module
from wasmlet.guest import CgiRequest, WagiHandler
from wasmlet.guest import _native as native
from wasmlet.guest import _stdio as stdio
from wasmlet.server import Host

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello" / "hello.wasm"
REQUEST = CgiRequest(method="GET", path="/", raw_path="/", query="", headers=(("host", "test"),), body=b"")


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A process that has not looked for the helper yet, with an empty cache folder; the cache's path."""
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_loaded", None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(native.NATIVE_ENV, raising=False)
    return tmp_path / "cache" / "wasmlet" / "native"


@pytest.fixture
def hello() -> Iterator[WagiHandler]:
    host = Host(plan_for_module(HELLO))
    host.start()
    handler = next(iter(host.apps.values())).handler
    assert isinstance(handler, WagiHandler)
    yield handler
    host.close()


def test_the_helper_is_built_from_source_into_the_cache_and_used(fresh: Path, hello: WagiHandler) -> None:
    fast = native.fast_path()
    assert fast is not None
    (built,) = fresh.glob("fastpath-*.so")
    assert not list(fresh.glob("tmp*")), "the build's work folder is removed"
    assert native.fast_path() is fast  # once per process
    hello._fast = fast
    assert hello.handle(REQUEST).response.body == b"Hello, world!\n"
    again = built.stat().st_mtime_ns
    native._tried = False
    assert native.fast_path() is not None
    assert built.stat().st_mtime_ns == again  # loaded from the cache, not built again


def test_without_a_compiler_requests_make_their_calls_through_ctypes(
        fresh: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with caplog.at_level(logging.INFO, logger="wasmlet.guest"):
        host = Host(plan_for_module(HELLO))
        host.start()
    try:
        handler = next(iter(host.apps.values())).handler
        assert isinstance(handler, WagiHandler)
        assert handler._fast is None
        assert handler.handle(REQUEST).response.body == b"Hello, world!\n"
    finally:
        host.close()
    assert "no C compiler" in caplog.text
    assert not fresh.exists() or not list(fresh.iterdir())


def test_a_compiler_that_fails_is_reported_and_left(
        fresh: Path, failing_compiler: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="wasmlet.guest"):
        assert native.fast_path() is None
    assert failing_compiler in caplog.text
    assert not list(fresh.glob("fastpath-*.so"))


def test_a_corrupt_cached_library_is_not_loaded(fresh: Path, caplog: pytest.LogCaptureFixture) -> None:
    target = native.library_path(native._SOURCE.read_bytes())
    target.parent.mkdir(parents=True)
    target.write_bytes(b"\x7fELF not really a library")  # e.g. a disk that filled up mid-copy
    with caplog.at_level(logging.WARNING, logger="wasmlet.guest"):
        assert native.fast_path() is None
    assert "cannot load the native request path" in caplog.text


def test_switched_off_by_the_environment(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.NATIVE_ENV, "0")
    assert native.fast_path() is None
    assert not fresh.exists()


@pytest.mark.parametrize("path", ["native", "ctypes"])
def test_scratch_files_removed_under_the_worker_are_made_again(path: str, hello: WagiHandler) -> None:
    hello._fast = native.fast_path() if path == "native" else None
    assert (hello._fast is not None) == (path == "native")
    assert hello.handle(REQUEST).response.status == 200
    root = stdio._root
    assert root is not None
    shutil.rmtree(root)  # e.g. a tmp cleaner: WASI can no longer open the paths the thread's files had
    assert hello.handle(REQUEST).response.body == b"Hello, world!\n"
    assert hello.handle(REQUEST).response.body == b"Hello, world!\n"


def test_a_library_others_could_have_written_is_not_loaded(fresh: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Native code run in the server: only this user may have written it (as for the module cache)."""
    assert native.fast_path() is not None
    (built,) = fresh.glob("fastpath-*.so")
    built.chmod(0o666)
    native._tried = False
    with caplog.at_level(logging.WARNING, logger="wasmlet.guest"):
        assert native.fast_path() is None
    assert "is writable by others (mode 0666)" in caplog.text


def test_a_symlink_planted_in_the_cache_is_not_followed(
        fresh: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    target = native.library_path(native._SOURCE.read_bytes())
    target.parent.mkdir(parents=True)
    elsewhere = tmp_path / "planted.so"
    elsewhere.write_bytes(b"whatever")
    target.symlink_to(elsewhere)
    with caplog.at_level(logging.WARNING, logger="wasmlet.guest"):
        assert native.fast_path() is None
    assert "is a symbolic link" in caplog.text
    assert elsewhere.read_bytes() == b"whatever"  # neither loaded nor built over


def test_a_library_whose_structures_differ_from_the_mirrors_is_refused() -> None:
    """An edit to _fastpath.c's structures without the ctypes mirrors (or the reverse) must never run."""

    class Size:
        def __init__(self, value: int) -> None:
            self.value = value

        def __call__(self) -> int:
            return self.value

    class Library:
        wasmlet_fastpath_run_size = Size(ctypes.sizeof(native.Run) - 8)
        wasmlet_fastpath_api_size = Size(ctypes.sizeof(native._Api))

    with pytest.raises(OSError, match="wasmlet_fastpath_run_size"):
        native.FastPath(Library())  # type: ignore[arg-type]


def test_built_under_a_group_writable_umask_it_is_still_loaded(fresh: Path) -> None:
    """umask 002 (user private groups) must not leave a library the trust check then refuses."""
    previous = os.umask(0o002)
    try:
        assert native.fast_path() is not None
    finally:
        os.umask(previous)
    (built,) = fresh.glob("fastpath-*.so")
    assert stat.S_IMODE(built.stat().st_mode) & 0o022 == 0


def test_strings_are_joined_only_when_the_helper_can_split_them_back() -> None:
    assert native.joined(["PATH_INFO", "", "caf\u00e9"]) == b"PATH_INFO\0\0caf\xc3\xa9"
    assert native.joined(["a\udcff"]) == b"a\xff"  # undecodable bytes come back as they came (surrogateescape)
    assert native.joined(["a", "b\0c"]) is None  # it would split into three: the caller passes an array
    assert native.joined([]) is None
    assert native.joined(["x"] * native.MAX_JOINED) is not None
    assert native.joined(["x"] * (native.MAX_JOINED + 1)) is None  # the helper's stack holds so many
