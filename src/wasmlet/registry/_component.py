"""A component's imports and exports, read from its binary without compiling it.

The OCI config of a component lists what it imports and exports (the CNCF
TAG-Runtime Wasm OCI Artifact layout, ``component.imports``/``exports``: the
names of its world's items, ``wasi:cli/run@0.2.0``). Those are the names in
the outermost component's import section (id 10) and export section (id 11),
so they are read there (component model ``Binary.md``), skipping every other
section by its size; whether the rest is valid is wasmtime's to say at
deploy. Nested core modules and components, nearly all of a 40 MB
componentize-py binary, are never looked at: reading a 37.5 MB Spin app
takes 0.55 ms, where compiling it to ask wasmtime for its type
(``Component(engine, data).type.imports(engine)``, the same names) takes 5 s
on an idle 2-core machine and 30 s on a busy one (``bench/oci_component.py``).

The bytes may be a registry's or a stranger's, so every failure is a
``MalformedComponent`` (a ``ValueError``) naming the offset, never another
exception, and nothing is copied (a ``memoryview`` walks the binary).
"""

from __future__ import annotations

import dataclasses

__all__ = ["ComponentInterfaces", "MalformedComponent", "component_interfaces"]

COMPONENT_PREAMBLE = b"\0asm\x0d\x00\x01\x00"
_IMPORT_SECTION = 10
_EXPORT_SECTION = 11
_MAX_NAMES = 100_000  # a world of more items than this is not one anybody wrote


class MalformedComponent(ValueError):
    """Bytes that do not read as a component's outer sections."""


@dataclasses.dataclass(frozen=True)
class ComponentInterfaces:
    imports: tuple[str, ...]  # in binary order, each once
    exports: tuple[str, ...]


class _Reader:
    def __init__(self, data: memoryview, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise MalformedComponent(f"the component is truncated at byte {self.pos}")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def leb(self) -> int:
        """An unsigned LEB128 of at most 5 bytes (``u32``; an ``s33`` type index has the same length)."""
        result = 0
        for shift in range(0, 35, 7):
            byte = self.byte()
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
        raise MalformedComponent(f"the component has an integer longer than 5 bytes at byte {self.pos - 5}")

    def name(self) -> str:
        """``0x00 len:u32 name`` (``0x01``, an older interface marker, reads the same, as wasmparser does)."""
        at = self.pos
        if self.byte() not in (0x00, 0x01):
            raise MalformedComponent(f"the component has a malformed import or export name at byte {at}")
        size = self.leb()
        if size > self.end - self.pos:
            raise MalformedComponent(f"the component has a name running past its section at byte {at}")
        raw = bytes(self.data[self.pos:self.pos + size])
        self.pos += size
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedComponent(f"the component has a name that is not UTF-8 at byte {at}") from exc

    def externdesc(self) -> None:
        at = self.pos
        kind = self.byte()
        if kind == 0x00:  # core module: 0x11 typeidx
            if self.byte() != 0x11:
                raise MalformedComponent(f"the component has a malformed core module type at byte {at}")
            self.leb()
        elif kind in (0x01, 0x04, 0x05):  # func, component, instance: typeidx
            self.leb()
        elif kind in (0x02, 0x03):  # value: 0x00 idx | 0x01 valtype; type: 0x00 idx (eq) | 0x01 (sub resource)
            bound = self.byte()
            if bound == 0x00 or (bound == 0x01 and kind == 0x02):
                self.leb()  # a primitive value type is one byte, read the same way
            elif bound != 0x01:
                raise MalformedComponent(f"the component has a malformed type bound at byte {at}")
        else:
            raise MalformedComponent(f"the component has an unknown import or export kind {kind:#04x} at byte {at}")

    def sortidx(self) -> None:
        at = self.pos
        sort = self.byte()
        if sort == 0x00:
            self.byte()  # the core sort
        elif sort > 0x05:
            raise MalformedComponent(f"the component has an unknown sort {sort:#04x} at byte {at}")
        self.leb()


def component_interfaces(data: bytes) -> ComponentInterfaces:
    """The names the outermost component imports and exports. Raises ``MalformedComponent``."""
    if bytes(data[:8]) != COMPONENT_PREAMBLE:
        raise MalformedComponent("not a WebAssembly component (its first 8 bytes are not \\0asm 0d 00 01 00)")
    view = memoryview(data)
    imports: dict[str, None] = {}
    exports: dict[str, None] = {}
    top = _Reader(view, 8, len(view))
    while top.pos < top.end:
        at = top.pos
        section_id = top.byte()
        size = top.leb()
        start = top.pos
        if size > top.end - start:
            raise MalformedComponent(f"the component's section at byte {at} runs past its end")
        if section_id in (_IMPORT_SECTION, _EXPORT_SECTION):
            section = _Reader(view, start, start + size)
            count = section.leb()
            if count > size or len(imports) + len(exports) + count > _MAX_NAMES:
                raise MalformedComponent(f"the component's section at byte {at} claims {count} items")
            for _ in range(count):
                name = section.name()
                if section_id == _IMPORT_SECTION:
                    section.externdesc()
                    imports[name] = None
                else:
                    section.sortidx()
                    ascribed = section.byte()  # an optional type: 0x00 none, 0x01 externdesc
                    if ascribed == 0x01:
                        section.externdesc()
                    elif ascribed != 0x00:
                        raise MalformedComponent(f"the component has a malformed export at byte {section.pos - 1}")
                    exports[name] = None
            if section.pos != section.end:
                raise MalformedComponent(f"the component's section at byte {at} has bytes after its items")
        top.pos = start + size
    return ComponentInterfaces(tuple(imports), tuple(exports))
