"""The committed guest modules are what their sources build to (clang wasm32-wasi, wasi-libc)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import wasmtime

ROOT = Path(__file__).resolve().parent.parent
C_SOURCES = sorted([*ROOT.glob("examples/*/*.c"), *ROOT.glob("tests/guests/*.c")])
WAT_SOURCES = sorted(ROOT.glob("tests/guests/*.wat"))


@pytest.mark.parametrize("source", C_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_c_guest_matches_its_source(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.wasm"
    # A NAME.cflags beside NAME.c adds flags after the defaults, as examples/build.sh does.
    flags_file = source.with_suffix(".cflags")
    lines = flags_file.read_text().splitlines() if flags_file.exists() else []
    extra = [flag for line in lines if not line.startswith("#") for flag in line.split()]
    subprocess.run(
        ["clang", "--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-Wl,--strip-all", *extra, str(source),
         "-o", str(out)],
        check=True, capture_output=True,
    )
    assert out.read_bytes() == source.with_suffix(".wasm").read_bytes(), "rebuild with examples/build.sh"


@pytest.mark.parametrize("source", WAT_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_wat_guest_matches_its_source(source: Path) -> None:
    assert wasmtime.wat2wasm(source.read_text()) == source.with_suffix(".wasm").read_bytes()
