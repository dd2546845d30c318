"""A wasi:cli component served over HTTP next to a WAGI module, chosen by the binary's header."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
from tests.conftest import GUESTS, Server, write_manifest

from wasmlet.engine import is_component

COMPONENTS = GUESTS / "components"


def test_header_tells_component_from_module() -> None:
    assert is_component((COMPONENTS / "cgi_p2.wasm").read_bytes())
    assert not is_component((COMPONENTS / "cgi_p1_command.wasm").read_bytes())


def test_component_and_module_serve_the_same_answer(serve: Callable[..., Server], tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.yaml", [
        {"name": "adapted", "properties": {"moduleURL": str(COMPONENTS / "cgi_p1_adapted.wasm")}},
        {"name": "command", "properties": {"moduleURL": str(COMPONENTS / "cgi_p1_command.wasm")}},
        {"name": "p2", "properties": {"moduleURL": str(COMPONENTS / "cgi_p2.wasm")}},
    ])
    server = serve(str(manifest))
    adapted = httpx.post(server.url + "/adapted/x?q=1", content=b"body")
    command = httpx.post(server.url + "/command/x?q=1", content=b"body")
    assert adapted.status_code == command.status_code == 200
    assert adapted.content.replace(b"/adapted", b"") == command.content.replace(b"/command", b"")
    assert httpx.get(server.url + "/p2/").status_code == 200
