"""Is it WebAssembly? The binary's preamble, read before any parser sees the bytes.

A binary starts with the magic ``\\0asm`` and a 4-byte version: ``01 00 00 00``
for a core module (core spec, section 5.5.16) and ``0d 00 01 00`` for a
component (component model binary format: version 0x0d, layer 1). Anything
else is named for what it looks like, so that a text file given as a module
says so instead of reaching wasmtime, whose text (WAT) parser would answer
``expected '('``.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["WASM_MAGIC", "wasm_kind"]

WASM_MAGIC = b"\0asm"
_MODULE = b"\x01\x00\x00\x00"
_COMPONENT = b"\x0d\x00\x01\x00"
_EXPECTED = "expected a WebAssembly binary, which starts with the bytes 00 61 73 6d ('\\0asm')"

# Other formats people hand over by mistake, by their own magic numbers.
_KNOWN = (
    (b"\x7fELF", "an ELF executable (a native build: compile with clang --target=wasm32-wasi)"),
    (b"MZ", "a Windows executable"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O executable (a native build)"),
    (b"\x1f\x8b", "a gzip archive (extract the .wasm from it)"),
    (b"PK\x03\x04", "a zip archive (extract the .wasm from it)"),
    (b"\x28\xb5\x2f\xfd", "a zstd archive (extract the .wasm from it)"),
)


def _text(head: bytes) -> str | None:
    """The start of ``head`` if it reads as text, else None."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end of the sample
            return None
        text = head[:exc.start].decode("utf-8")
    if any(ch < " " and ch not in "\t\r\n\f" for ch in text):
        return None
    return text


def _is_wat(text: str) -> bool:
    """Starts with ``(module`` or ``(component``, after blank lines and ``;;`` comments."""
    for line in text.lstrip("\ufeff").splitlines():
        line = line.strip()
        if not line or line.startswith(";;"):
            continue
        return line.startswith(("(module", "(component"))
    return False


def wasm_kind(data: bytes) -> Literal["module", "component"]:
    """``"module"`` or ``"component"``; raise ``ValueError`` naming what ``data`` is otherwise."""
    if data[:4] == WASM_MAGIC:
        version = data[4:8]
        if version == _MODULE:
            return "module"
        if version == _COMPONENT:
            return "component"
        raise ValueError(
            f"it is a WebAssembly binary of an unknown version (bytes 4-7: {version.hex(' ') or 'missing'}; "
            "expected 01 00 00 00 for a module or 0d 00 01 00 for a component)"
        )
    if not data:
        raise ValueError(f"the file is empty; {_EXPECTED}")
    for magic, what in _KNOWN:
        if data.startswith(magic):
            raise ValueError(f"it is {what}; {_EXPECTED}")
    text = _text(data[:512])
    if text is not None:
        if _is_wat(text):
            raise ValueError(
                "it is WebAssembly text (WAT), and wasmlet serves binaries: convert it first "
                "(wasm-tools parse FILE.wat -o FILE.wasm, or wat2wasm)"
            )
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        if not first:
            raise ValueError(f"it is a text file of blank lines; {_EXPECTED}")
        shown = first if len(first) <= 40 else first[:40] + "..."
        raise ValueError(f"it is a text file (it begins {shown!r}); {_EXPECTED}")
    raise ValueError(f"it begins with the bytes {data[:4].hex(' ')}; {_EXPECTED}")
