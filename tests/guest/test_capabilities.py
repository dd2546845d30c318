"""The import whitelist and the capabilities model (as a manifest would give it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wasmlet import CapabilityError, ConfigError, ModuleError
from wasmlet.guest import Preopen, check_imports, offending_imports, preopens
from wasmlet.plan import HANDLER_IMPORTS, Capabilities, allowed_imports, wasm_kind

ROOT = Path(__file__).resolve().parents[2]
GUESTS = ROOT / "tests" / "guests"
ENGINE: wasmtime.Engine


@pytest.fixture(autouse=True)
def _engine() -> Iterator[None]:
    # A fresh engine per test, released with it (a module-level one would be
    # finalised after wasmtime's FFI at interpreter exit).
    global ENGINE
    ENGINE = wasmtime.Engine()
    yield
    del ENGINE


def module(path: Path) -> wasmtime.Module:
    return wasmtime.Module.from_file(ENGINE, str(path))


def caps(**fields: object) -> Capabilities:
    return Capabilities.model_validate(fields)


NEEDS_GRANT = {"files.wasm"}  # reads files: deploys only with a files grant (tests/security/test_hostile_http.py)


# The examples' core modules (WAGI); their components are checked in tests/guest/proxy.
EXAMPLE_MODULES = sorted(p for p in (ROOT / "examples").glob("*/*.wasm") if wasm_kind(p.read_bytes()) == "module")


@pytest.mark.parametrize("path", [*EXAMPLE_MODULES,
                                  *sorted(p for p in GUESTS.glob("*.wasm") if p.name not in NEEDS_GRANT)],
                         ids=lambda p: p.name)
def test_every_existing_guest_passes_the_default(path: Path) -> None:
    check_imports(module(path), Capabilities(), path.name)


def test_the_files_guest_needs_its_grant(tmp_path: Path) -> None:
    guest = module(GUESTS / "files.wasm")
    with pytest.raises(CapabilityError, match="path_open"):
        check_imports(guest, Capabilities(), "files.wasm")
    check_imports(guest, caps(files=[{"source": str(tmp_path), "destination": "/data"}]), "files.wasm")


def test_files_imports_need_a_grant() -> None:
    files = module(GUESTS / "security" / "files.wasm")
    with pytest.raises(CapabilityError) as info:
        check_imports(files, Capabilities(), "app/files")
    assert info.value.offending == ("wasi_snapshot_preview1::path_open", "wasi_snapshot_preview1::path_unlink_file")
    assert isinstance(info.value, ModuleError)
    assert "path_open" in str(info.value) and "app/files" in str(info.value)
    # A read-only mount grants path_open, not path_unlink_file.
    read_only = caps(files=[{"source": "static", "destination": "/static"}])
    assert offending_imports(files, allowed_imports(read_only)) == ["wasi_snapshot_preview1::path_unlink_file"]
    writable = caps(files=[{"source": "data", "destination": "/data", "writable": True}])
    check_imports(files, writable, "app/files")
    # Or by name.
    check_imports(files, caps(wasiImports=["path_open", "wasi_snapshot_preview1::path_unlink_file"]), "x")


def test_http_imports_need_outbound_hosts() -> None:
    http = module(GUESTS / "security" / "http_get.wasm")
    bad = offending_imports(http, allowed_imports(Capabilities()))
    assert bad == [f"wasi_experimental_http::{n}" for n in ("body_read", "close", "header_get", "headers_get_all",
                                                            "req")]
    check_imports(http, caps(allowedOutboundHosts=["https://api.example.com"]), "x")


def test_other_modules_are_refused_unless_named() -> None:
    wat = '(module (import "env" "secret" (func)) (import "wasi_snapshot_preview1" "sock_accept" '\
          '(func (param i32 i32 i32) (result i32))))'
    odd = wasmtime.Module(ENGINE, bytes(wasmtime.wat2wasm(wat)))
    assert offending_imports(odd, allowed_imports(Capabilities())) == [
        "env::secret", "wasi_snapshot_preview1::sock_accept"]
    check_imports(odd, caps(wasiImports=["env::secret", "sock_accept"]), "x")
    check_imports(odd, caps(wasiImports=["env::*", "sock_accept"]), "x")


def test_default_set() -> None:
    assert "path_open" not in HANDLER_IMPORTS and "sock_accept" not in HANDLER_IMPORTS
    assert {"fd_write", "fd_read", "environ_get", "args_get", "proc_exit", "poll_oneoff"} <= HANDLER_IMPORTS


def test_model_validation() -> None:
    full = caps(
        files=[{"source": "./static", "destination": "/static/"}, {"source": "/var/x", "destination": "/data",
                                                                   "writable": True}],
        allowedOutboundHosts=["https://*.example.com:443", "postgres://db.internal:5432"],
        wasiImports=["clock_res_get"],
    )
    assert full.files[0].destination == "/static" and not full.files[0].writable
    assert [h.kind for h in full.outbound] == ["subdomain", "name"]
    assert Capabilities.model_validate(full.to_plain()) == full

    bad_cases = [
        ({"allowedOutboundHosts": ["example.com"]}, "allowedOutboundHosts", "SCHEME://HOST"),
        ({"allowedOutboundHosts": ["https://exa*mple.com"]}, "allowedOutboundHosts", "wildcard"),
        ({"files": [{"source": "x", "destination": "relative"}]}, "files.0.destination", "absolute"),
        ({"files": [{"source": "x", "destination": "/a/../b"}]}, "files.0.destination", "normalised"),
        ({"files": [{"source": "x"}, {"source": "y"}]}, "", "two files entries"),
        ({"wasiImports": ["not_a_wasi_function"]}, "wasiImports", "not a WASI preview 1 function"),
        ({"allowed_outbound_hosts": []}, "allowed_outbound_hosts", "Extra inputs"),
        ({"files": [{"source": "x", "readonly": True}]}, "files.0.readonly", "Extra inputs"),
    ]
    for fields, loc, message in bad_cases:
        with pytest.raises(ValidationError) as info:
            Capabilities.model_validate(fields)
        error = info.value.errors()[0]
        assert ".".join(str(p) for p in error["loc"]) == loc, fields
        assert message in error["msg"], (fields, error["msg"])


def test_fits_into_wasm_properties() -> None:
    class Properties(BaseModel):  # the shape WasmProperties has
        model_config = ConfigDict(extra="forbid", populate_by_name=False)
        module_url: str = Field(alias="moduleURL")
        capabilities: Capabilities = Field(default_factory=Capabilities)

    assert Properties.model_validate({"moduleURL": "x"}).capabilities == Capabilities()
    props = Properties.model_validate({"moduleURL": "x", "capabilities": {
        "allowedOutboundHosts": ["postgres://db.internal:5432"]}})
    assert props.capabilities.allowed_outbound_hosts == ("postgres://db.internal:5432",)
    with pytest.raises(ValidationError) as info:
        Properties.model_validate({"moduleURL": "x", "capabilities": {"allowedOutboundHost": []}})
    assert info.value.errors()[0]["loc"] == ("capabilities", "allowedOutboundHost")


def test_preopens(tmp_path: Path) -> None:
    (tmp_path / "static").mkdir()
    grants = caps(files=[{"source": "static", "destination": "/static"}])
    assert preopens(grants, tmp_path) == [Preopen(str(tmp_path / "static"), "/static", False)]
    with pytest.raises(ConfigError, match="is not a directory"):
        preopens(caps(files=[{"source": "missing"}]), tmp_path)


def test_a_read_only_preopen_is_read_only(tmp_path: Path) -> None:
    """What the runner does with a grant: wasmtime enforces read-only, not us."""
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "a.txt").write_text("x")
    wat = """(module
      (import "wasi_snapshot_preview1" "path_unlink_file" (func $unlink (param i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 16) "a.txt")
      (func (export "unlink") (result i32) (call $unlink (i32.const 3) (i32.const 16) (i32.const 5))))"""
    store = wasmtime.Store(ENGINE)
    linker = wasmtime.Linker(ENGINE)
    linker.define_wasi()
    wasi = wasmtime.WasiConfig()
    [preopen] = preopens(caps(files=[{"source": "static", "destination": "/static"}]), tmp_path)
    wasi.preopen_dir(preopen.host, preopen.guest, fs_mutable=preopen.writable)
    store.set_wasi(wasi)
    instance = linker.instantiate(store, wasmtime.Module(ENGINE, bytes(wasmtime.wat2wasm(wat))))
    unlink = instance.exports(store)["unlink"]
    assert isinstance(unlink, wasmtime.Func)
    errno = unlink(store)
    assert errno != 0  # refused (EPERM/ENOTCAPABLE); the file is still there
    assert (tmp_path / "static" / "a.txt").exists()
