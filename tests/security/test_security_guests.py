"""The committed security test guests are what their sources build to."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import wasmtime

GUESTS = Path(__file__).resolve().parents[1] / "guests" / "security"


@pytest.mark.parametrize("source", sorted(GUESTS.glob("*.c")), ids=lambda p: p.name)
def test_c_guest_matches_its_source(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.wasm"
    subprocess.run(
        ["clang", "--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-Wl,--strip-all", str(source), "-o", str(out)],
        check=True, capture_output=True,
    )
    assert out.read_bytes() == source.with_suffix(".wasm").read_bytes()


@pytest.mark.parametrize("source", sorted(GUESTS.glob("*.wat")), ids=lambda p: p.name)
def test_wat_guest_matches_its_source(source: Path) -> None:
    assert wasmtime.wat2wasm(source.read_text()) == source.with_suffix(".wasm").read_bytes()
