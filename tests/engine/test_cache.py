"""The precompiled-module cache, with a real engine."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import wasmtime

from wasmlet import CacheError, ModuleError
from wasmlet.engine import ModuleCache, build_engine, sha256_hex
from wasmlet.plan import EngineSettings

ROOT = Path(__file__).resolve().parents[2]
HELLO = (ROOT / "examples" / "hello" / "hello.wasm").read_bytes()
SETTINGS = EngineSettings(pool_instances=4)


@pytest.fixture(scope="module")
def engine() -> wasmtime.Engine:
    return build_engine(SETTINGS)


def test_compile_then_hit(engine: wasmtime.Engine, tmp_path: Path) -> None:
    cache = ModuleCache(engine, SETTINGS, tmp_path)
    digest, path = cache.compile(HELLO)
    assert digest == sha256_hex(HELLO)
    assert path.exists() and path.with_name(path.name + ".sha256").exists()
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
    path.with_name(path.name + ".sha256").write_text(sha256_hex(foreign))
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
