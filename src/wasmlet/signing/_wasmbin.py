"""Just enough of the WebAssembly binary format to split a module into sections.

Core spec, section 5.5 (modules): an 8-byte preamble (``\\0asm`` and a version),
then sections, each ``id:u8 size:u32(LEB128) payload``. A custom section
(id 0) starts its payload with a name (``u32`` length and UTF-8 bytes). The
component-model preamble (layer 1) has the same section framing, so the same
code splits components.
"""

from __future__ import annotations

import dataclasses

from .._errors import SignatureMalformed

__all__ = ["Section", "custom_section", "encode_section", "parse_module", "read_u32", "u32"]

MODULE_PREAMBLE = b"\0asm\x01\x00\x00\x00"
COMPONENT_PREAMBLE = b"\0asm\x0d\x00\x01\x00"
_MAX_U32 = (1 << 32) - 1


def u32(value: int) -> bytes:
    """Unsigned LEB128, minimal length."""
    if not 0 <= value <= _MAX_U32:
        raise ValueError(f"{value} does not fit in a u32")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_u32(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode an unsigned LEB128 ``u32`` at ``pos``; return it and the position after it."""
    result = 0
    for shift in range(0, 35, 7):
        if pos >= len(data):
            raise SignatureMalformed("truncated LEB128 integer")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if result > _MAX_U32:
                raise SignatureMalformed("LEB128 integer larger than a u32")
            return result, pos
    raise SignatureMalformed("LEB128 integer longer than 5 bytes")


@dataclasses.dataclass(frozen=True)
class Section:
    id: int
    payload: bytes  # everything after the size, for a custom section including its name
    name: str | None = None  # custom sections only
    content: bytes = b""  # custom sections only: the payload after the name

    def encode(self) -> bytes:
        return encode_section(self.id, self.payload)


def encode_section(section_id: int, payload: bytes) -> bytes:
    return bytes([section_id]) + u32(len(payload)) + payload


def custom_section(name: str, content: bytes) -> Section:
    raw = name.encode()
    payload = u32(len(raw)) + raw + content
    return Section(0, payload, name, content)


def parse_module(data: bytes) -> tuple[bytes, list[Section]]:
    """Split ``data`` into its preamble and sections; raise ``SignatureMalformed`` if it is not Wasm."""
    preamble = bytes(data[:8])
    if preamble not in (MODULE_PREAMBLE, COMPONENT_PREAMBLE):
        raise SignatureMalformed("not a WebAssembly module or component (bad preamble)")
    view = memoryview(data)
    sections: list[Section] = []
    pos = 8
    while pos < len(data):
        section_id = data[pos]
        size, start = read_u32(view, pos + 1)
        end = start + size
        if end > len(data):
            raise SignatureMalformed(f"section at offset {pos} runs past the end of the module")
        payload = bytes(view[start:end])
        if section_id == 0:
            name_len, name_start = read_u32(payload, 0)
            if name_start + name_len > len(payload):
                raise SignatureMalformed(f"custom section at offset {pos} has a name past its end")
            try:
                name = payload[name_start:name_start + name_len].decode()
            except UnicodeDecodeError as exc:
                raise SignatureMalformed(f"custom section at offset {pos} has a name that is not UTF-8") from exc
            sections.append(Section(0, payload, name, payload[name_start + name_len:]))
        else:
            sections.append(Section(section_id, payload))
        pos = end
    return preamble, sections
