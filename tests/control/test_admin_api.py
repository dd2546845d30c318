"""The admin API on a real host: its answers, and what an untrusted local client tries against it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import EXAMPLES, Server, write_manifest

Serve = Callable[..., Server]


@pytest.fixture
def host(serve: Serve, tmp_path: Path) -> Server:
    manifest = write_manifest(tmp_path / "app.yaml", [{"name": "web", "properties": {
        "moduleURL": str(EXAMPLES / "hello" / "hello.wasm")}}], name="shop")
    return serve(str(manifest), "--allow-files", str(EXAMPLES))  # the history test deploys examples/ through the API


def test_openapi_served_is_the_generated_document(host: Server) -> None:
    from wasmlet.control import openapi

    served = httpx.get(host.admin_url + "/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.json() == openapi()


def test_speaks_http_1_1_with_keep_alive(host: Server) -> None:
    with httpx.Client(base_url=host.admin_url, timeout=10) as client:
        first = client.get("/healthz")
        second = client.get("/healthz")
    assert first.http_version == "HTTP/1.1" and first.text == "ok\n"
    assert second.status_code == 200


def test_history_lists_every_version_with_its_role(host: Server, tmp_path: Path) -> None:
    for n in (1, 2):
        manifest = write_manifest(tmp_path / f"v{n}.yaml", [{"name": "web", "properties": {
            "moduleURL": str(EXAMPLES / "hello" / "hello.wasm"), "environment": [{"name": "N", "value": str(n)}]}}],
            name="shop")
        answer = host.admin("POST", "/v1/deploy", params={"source": str(manifest)}, content=manifest.read_bytes(),
                            headers={"Content-Type": "application/yaml"})
        assert answer.status_code == 200, answer.text
    versions = host.admin("GET", "/v1/apps/shop/web/versions").json()
    assert [v["role"] for v in versions] == ["stable", "previous", "retired"]
    assert versions[0]["version"] > versions[1]["version"] > versions[2]["version"]
    assert len(host.admin("GET", "/v1/apps/shop/web/versions?limit=1").json()) == 1
    assert host.admin("GET", "/v1/apps/shop/web/versions?limit=0").status_code == 400
    assert host.admin("DELETE", "/v1/apps/shop/web").status_code == 204
    after = host.admin("GET", "/v1/apps/shop/web/versions").json()  # a deleted app keeps its history
    assert [v["role"] for v in after] == ["retired"] * 3
    assert host.admin("GET", "/v1/apps/shop/none/versions").status_code == 404


def test_a_wrong_token_names_the_real_token_file(host: Server) -> None:
    answer = httpx.get(host.admin_url + "/v1/apps", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert answer.status_code == 401
    assert str(host.state_dir / "admin-token") in answer.json()["error"]
    assert httpx.get(host.admin_url + "/v1/apps", timeout=10).status_code == 401  # no header at all


def test_both_spellings_of_an_app_name_reach_it(host: Server) -> None:
    assert host.admin("GET", "/v1/apps/shop%2Fweb").json()["name"] == "shop/web"
    assert host.admin("GET", "/v1/apps/shop/web").json()["name"] == "shop/web"
    missing = host.admin("GET", "/v1/apps/shop/nope")
    assert missing.status_code == 404 and "shop/nope" in missing.json()["error"]


@pytest.mark.parametrize(("path", "field"), [
    ("/v1/apps/shop/web/logs?tail=abc", "tail"),
    ("/v1/apps/shop/web/logs?tail=-1", "tail"),
    ("/v1/deploy?canaryWeight=101", "canaryWeight"),
    ("/v1/deploy?canaryWeight=ten", "canaryWeight"),
])
def test_a_bad_parameter_is_400_naming_it(host: Server, path: str, field: str) -> None:
    method = "POST" if path.startswith("/v1/deploy") else "GET"
    answer = host.admin(method, path, content=b"kind: Application\n", headers={"Content-Type": "application/yaml"})
    assert answer.status_code == 400, answer.text
    assert field in answer.json()["error"]


def test_a_manifest_a_million_times_too_large_is_refused_unread(host: Server) -> None:
    big = b"#" * (1 << 20) + b"x"
    answer = host.admin("POST", "/v1/deploy", content=big, headers={"Content-Type": "application/yaml"})
    assert answer.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(64):
            yield b"#" * 65536

    answer = host.admin("POST", "/v1/deploy", content=chunks(), headers={"Content-Type": "application/yaml"})
    assert answer.status_code == 413


def test_non_utf8_and_wrong_content_types_are_refused(host: Server) -> None:
    answer = host.admin("POST", "/v1/deploy", content=b"kind: \xff\xfe\n", headers={"Content-Type": "application/yaml"})
    assert answer.status_code == 400 and "UTF-8" in answer.json()["error"]
    answer = host.admin("POST", "/v1/deploy", content=b"\x00", headers={"Content-Type": "image/png"})
    assert answer.status_code == 415


def test_unknown_endpoints_and_methods(host: Server) -> None:
    assert host.admin("GET", "/v1/nothing").status_code == 404
    assert host.admin("PUT", "/v1/apps").status_code == 405
    assert host.admin("DELETE", "/v1/apps/shop/nope").status_code == 404
    assert host.admin("POST", "/v1/apps/shop/web/rollback").status_code == 409  # nothing to roll back


def _threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def test_stalled_connections_do_not_take_the_admin_api(host: Server) -> None:
    """100 clients that send half a request and stall (the old WSGI server made 103 threads for them)."""
    before = _threads(host.process.pid)
    stalled: list[socket.socket] = []
    try:
        for _ in range(100):
            sock = socket.create_connection(("127.0.0.1", int(host.admin_url.rsplit(":", 1)[1])), timeout=5)
            sock.sendall(b"GET /v1/apps HTTP/1.1\r\nHost: x\r\n")
            stalled.append(sock)
        time.sleep(0.5)
        assert httpx.get(host.admin_url + "/healthz", timeout=5).text == "ok\n"
        assert host.admin("GET", "/v1/apps").status_code == 200
        assert _threads(host.process.pid) - before < 10
    finally:
        for sock in stalled:
            sock.close()


def test_history_from_the_cli(host: Server) -> None:
    env = {**os.environ, "WASMLET_ADMIN": host.admin_url, "WASMLET_STATE_DIR": str(host.state_dir)}
    shown = subprocess.run([sys.executable, "-m", "wasmlet", "history", "shop"], capture_output=True, text=True,
                           env=env, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "stable" in shown.stdout and "hello.wasm" in shown.stdout
    as_json = subprocess.run([sys.executable, "-m", "wasmlet", "history", "shop/web", "-o", "json"],
                             capture_output=True, text=True, env=env, timeout=60)
    assert as_json.returncode == 0, as_json.stderr
    assert [v["role"] for v in json.loads(as_json.stdout)] == ["stable"]
