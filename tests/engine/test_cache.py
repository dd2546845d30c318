"""The precompiled-module cache, with a real engine."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import shutil
import stat
import threading
from pathlib import Path

import pytest
import wasmtime

from wasmlet import CacheError, ModuleError
from wasmlet.engine import ModuleCache, build_engine, sha256_hex
from wasmlet.plan import EngineSettings

ROOT = Path(__file__).resolve().parents[2]
HELLO = (ROOT / "examples" / "hello" / "hello.wasm").read_bytes()
ECHO = (ROOT / "examples" / "echo" / "echo.wasm").read_bytes()
SETTINGS = EngineSettings(pool_instances=4)


@pytest.fixture(scope="module")
def engine() -> wasmtime.Engine:
    return build_engine(SETTINGS)


def test_compile_then_hit(engine: wasmtime.Engine, tmp_path: Path) -> None:
    cache = ModuleCache(engine, SETTINGS, tmp_path)
    digest, path = cache.compile(HELLO)
    assert digest == sha256_hex(HELLO)
    assert path.exists() and path.with_name(path.name + ".mac").exists()
    assert (cache.hits, cache.misses) == (0, 1)
    cache.compile(HELLO)
    assert (cache.hits, cache.misses) == (1, 1)
    assert any(e.name == "_start" for e in cache.load(digest).exports)


def test_key_includes_engine_settings(engine: wasmtime.Engine, tmp_path: Path) -> None:
    a = ModuleCache(engine, SETTINGS, tmp_path)
    b = ModuleCache(engine, dataclasses.replace(SETTINGS, opt_level="none"), tmp_path)
    assert a.root != b.root


def test_corrupt_artifact_is_recompiled(engine: wasmtime.Engine, tmp_path: Path) -> None:
    cache = ModuleCache(engine, SETTINGS, tmp_path)
    digest, path = cache.compile(HELLO)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the code
    path.write_bytes(bytes(data))
    with pytest.raises(CacheError, match="no usable precompiled artifact"):
        cache.load(digest)  # no source to rebuild from: a clear error, never a crash
    module = cache.load(digest, HELLO)
    assert any(e.name == "_start" for e in module.exports)
    assert cache.load(digest) is not None  # rewritten and valid again


def test_stale_artifact_is_recompiled(engine: wasmtime.Engine, tmp_path: Path) -> None:
    cache = ModuleCache(engine, SETTINGS, tmp_path)
    digest, path = cache.compile(HELLO)
    # An artifact from another engine configuration, with a digest file that vouches for it.
    config = wasmtime.Config()
    config.memory_reservation = 1 << 24  # a tunable wasmtime checks when deserialising
    foreign = bytes(wasmtime.Module(wasmtime.Engine(config), HELLO).serialize())
    with pytest.raises(wasmtime.WasmtimeError):
        wasmtime.Module.deserialize(engine, foreign)
    path.write_bytes(foreign)
    path.with_name(path.name + ".mac").write_text(cache.mac(digest, foreign))  # authentic, yet refused by wasmtime
    module = cache.load(digest, lambda: HELLO)
    assert any(e.name == "_start" for e in module.exports)


def test_invalid_module(engine: wasmtime.Engine, tmp_path: Path) -> None:
    cache = ModuleCache(engine, SETTINGS, tmp_path)
    with pytest.raises(ModuleError, match=r"bad\.wasm: not a valid WebAssembly module"):
        cache.compile(b"\0asm\x01\0\0\0garbage", "bad.wasm")
    assert not list(tmp_path.rglob("*.cwasm"))  # nothing half-written


def test_cli_compile_fills_the_cache(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from wasmlet.cli import main

    result = CliRunner().invoke(main, ["compile", str(ROOT / "examples" / "hello" / "hello.wasm"),
                                       "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"sha256:{sha256_hex(HELLO)}" in result.output
    assert list(tmp_path.rglob(f"{sha256_hex(HELLO)}.cwasm"))


def imports_of(module: wasmtime.Module | object) -> list[str]:
    assert isinstance(module, wasmtime.Module)
    return sorted(f"{i.module}::{i.name}" for i in module.imports)


def test_another_modules_artifact_is_never_loaded(engine: wasmtime.Engine, tmp_path: Path) -> None:
    """Issue 14, item 10: a .cwasm replaced by another module's, with its digest file 'fixed', ran that code."""
    cache = ModuleCache(engine, SETTINGS, tmp_path)
    hello, hello_path = cache.compile(HELLO)
    _, echo_path = cache.compile(ECHO)
    assert imports_of(cache.load(hello)) != imports_of(cache.load(sha256_hex(ECHO)))
    echo_artifact = echo_path.read_bytes()
    forgeries = {
        "the plain digest the old cache checked": hashlib.sha256(echo_artifact).hexdigest(),
        "the other artifact's own genuine MAC": echo_path.with_name(echo_path.name + ".mac").read_text(),
        "a MAC under a key the attacker chose": hmac.new(b"k" * 32, echo_artifact, "sha256").hexdigest(),
    }
    for how, mac in forgeries.items():
        shutil.copy(echo_path, hello_path)
        hello_path.with_name(hello_path.name + ".mac").write_text(mac)
        hello_path.with_name(hello_path.name + ".sha256").write_text(hashlib.sha256(echo_artifact).hexdigest())
        with pytest.raises(CacheError, match="no usable precompiled artifact"):
            cache.load(hello)  # refused: nothing to rebuild from
        assert imports_of(cache.load(hello, HELLO)) == imports_of(wasmtime.Module(engine, HELLO)), how
        assert hello_path.read_bytes() != echo_artifact  # rebuilt from the module's own bytes


def test_cache_files_are_private(engine: wasmtime.Engine, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)  # as an older wasmlet (or the umask) left it
    _, path = ModuleCache(engine, SETTINGS, root).compile(HELLO)
    for folder in (root, root / "modules", path.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for file in (path, path.with_name(path.name + ".mac"), root / "artifact.key"):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    assert (root / "artifact.key").stat().st_size == 32


def test_a_key_others_can_read_is_replaced(engine: wasmtime.Engine, tmp_path: Path) -> None:
    cache = ModuleCache(engine, SETTINGS, tmp_path)
    digest, _ = cache.compile(HELLO)
    key = tmp_path / "artifact.key"
    os.chmod(key, 0o644)  # anyone could have read it: artifacts made with it prove nothing
    old = key.read_bytes()
    fresh = ModuleCache(engine, SETTINGS, tmp_path)
    with pytest.raises(CacheError, match="no usable precompiled artifact"):
        fresh.load(digest)
    assert key.read_bytes() != old and stat.S_IMODE(key.stat().st_mode) == 0o600
    fresh.load(digest, HELLO)
    assert fresh.load(digest) is not None


def test_concurrent_first_use_makes_one_key(engine: wasmtime.Engine, tmp_path: Path) -> None:
    keys: list[str] = []
    barrier = threading.Barrier(8)

    def first_use() -> None:
        barrier.wait(timeout=10)
        keys.append(ModuleCache(engine, SETTINGS, tmp_path).mac("0" * 64, b""))

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(keys) == 8 and len(set(keys)) == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".artifact.key.") and p.suffix == ".tmp"] == []


def test_a_shared_folder_given_as_cache_root_is_not_chmodded(engine: wasmtime.Engine, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    (shared / "someone-elses.txt").write_text("not wasmlet's\n")  # a --cache-dir pointed at /tmp, say
    _, path = ModuleCache(engine, SETTINGS, shared).compile(HELLO)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
    for folder in (shared / "modules", path.parent):  # what holds the native code is private all the same
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((shared / "artifact.key").stat().st_mode) == 0o600



def test_a_worker_never_removes_the_artifact_another_has_just_compiled(engine: wasmtime.Engine,
                                                                      tmp_path: Path) -> None:
    """Two workers forked together after the cache was removed (seen in CI): A found the artifact
    missing, B compiled and stored it, A's recompile began by removing it, and B's own load then
    failed: B's app answered 503. Forced here step by step; now one compiles while the other waits."""
    digest = sha256_hex(HELLO)
    a, b = ModuleCache(engine, SETTINGS, tmp_path), ModuleCache(engine, SETTINGS, tmp_path)
    a_checked, a_invalidated = threading.Event(), threading.Event()
    a_open, b_compile = a._open_checked, b.compile

    def a_open_checked(digest_: str, path: Path) -> int | None:
        fd = a_open(digest_, path)
        if not a_checked.is_set():  # A's first look: missing. B goes on while A pauses here.
            a_checked.set()
            b_stored.wait(10)
        return fd

    def a_invalidate(path: Path) -> None:
        ModuleCache._invalidate(a, path)
        a_invalidated.set()

    b_stored = threading.Event()

    def b_compile_then_pause(wasm: bytes, name: str = "module") -> tuple[str, Path]:
        result = b_compile(wasm, name)
        b_stored.set()  # B's artifact is on disk; A resumes ...
        a_invalidated.wait(2)  # ... and, unlocked, removed it before B's own load read it back
        return result

    a._open_checked = a_open_checked  # type: ignore[method-assign]
    a._invalidate = a_invalidate  # type: ignore[method-assign]
    b.compile = b_compile_then_pause  # type: ignore[method-assign]
    failures: list[BaseException] = []

    def load(cache: ModuleCache) -> None:
        try:
            cache.load(digest, HELLO, "hello")
        except BaseException as exc:
            failures.append(exc)

    first = threading.Thread(target=load, args=(a,))
    first.start()
    assert a_checked.wait(10)
    second = threading.Thread(target=load, args=(b,))
    second.start()
    for thread in (first, second):
        thread.join(30)
    assert failures == []
    assert not a_invalidated.is_set()  # A found B's artifact under the lock: nothing to recompile
