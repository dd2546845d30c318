"""``wasm_kind``: a module, a component, or what the bytes are instead (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wasmlet.plan import wasm_kind

ROOT = Path(__file__).resolve().parents[2]


def test_modules_and_components_by_their_preamble() -> None:
    assert wasm_kind((ROOT / "examples" / "hello" / "hello.wasm").read_bytes()) == "module"
    assert wasm_kind((ROOT / "tests" / "guests" / "components" / "cgi_p2.wasm").read_bytes()) == "component"
    assert wasm_kind(b"\0asm\x01\0\0\0") == "module"  # the preamble is all it reads


@pytest.mark.parametrize(("data", "said"), [
    (b"\0asm", "unknown version (bytes 4-7: missing"),
    (b"\0as", "it begins with the bytes 00 61 73"),
    (("é" * 300).encode()[:511], "it is a text file (it begins 'éééé"),  # cut inside a character
    (b"\n\n  \n", "it is a text file of blank lines"),
    (b"\xef\xbb\xbf(component)", "it is WebAssembly text (WAT)"),
    (b"#!/bin/sh\necho hi\n", "it is a text file (it begins '#!/bin/sh')"),
    (b"PK\x03\x04" + bytes(20), "it is a zip archive"),
])
def test_what_else_it_is(data: bytes, said: str) -> None:
    with pytest.raises(ValueError) as info:
        wasm_kind(data)
    assert said in str(info.value)
