"""The admin API: the client against a real HTTP server on loopback, the token file, the OpenAPI document."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import stat
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from wasmlet import ConfigError, WasmletError
from wasmlet.control import AdminClient, AdminError, default_token, openapi, token_file_create

TOKEN = "s3cret-token"


@dataclasses.dataclass
class Seen:
    method: str
    path: str  # as sent, percent-encoding included
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


class FakeAdmin(ThreadingHTTPServer):
    """Checks the bearer token, records every request, answers from ``routes``."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[Seen] = []
        # (method, raw path) -> (status, body); body None: no body
        self.routes: dict[tuple[str, str], tuple[int, Any]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeAdmin

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        self.server.seen.append(Seen(self.command, parts.path, parse_qs(parts.query),
                                     {k.lower(): v for k, v in self.headers.items()}, body))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._answer(401, {"error": "missing or wrong bearer token"})
        status, answer = self.server.routes.get((self.command, parts.path), (404, {"error": "no such route"}))
        self._answer(status, answer)

    def _answer(self, status: int, answer: Any) -> None:
        if answer is None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if not isinstance(answer, bytes) else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _handle


@pytest.fixture
def admin() -> Iterator[FakeAdmin]:
    server = FakeAdmin()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def client(admin: FakeAdmin) -> Iterator[AdminClient]:
    with AdminClient(admin.url, TOKEN, timeout=10) as c:
        yield c


APP = {"name": "shop/api", "version": 3, "digest": "sha256:" + "a" * 64, "state": "serving"}
ENCODED = "/v1/apps/shop%2Fapi"


# --- each method -------------------------------------------------------------------------------


def test_deploy_sends_the_manifest_as_yaml(admin: FakeAdmin, client: AdminClient) -> None:
    answer = {"generation": 2, "results": [{"app": "shop/api", "version": 3, "changed": True}]}
    admin.routes[("POST", "/v1/deploy")] = (200, answer)
    manifest = "apiVersion: core.oam.dev/v1beta1\nkind: Application\n# é\n"
    assert client.deploy(manifest, source="shop.yaml") == answer
    [seen] = admin.seen
    assert seen.method == "POST" and seen.path == "/v1/deploy"
    assert seen.query == {"source": ["shop.yaml"]}
    assert seen.body == manifest.encode()
    assert seen.headers["content-type"] == "application/yaml"
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"


def test_deploy_canary_parameters(admin: FakeAdmin, client: AdminClient) -> None:
    admin.routes[("POST", "/v1/deploy")] = (200, {"generation": 3, "results": []})
    client.deploy("x: 1\n", canary_weight=10, canary_header="X-Canary: yes & more")
    client.deploy("x: 1\n", canary_weight=0)
    first, second = admin.seen
    assert first.query == {
        "source": ["manifest.yaml"], "canaryWeight": ["10"], "canaryHeader": ["X-Canary: yes & more"]
    }
    assert second.query == {"source": ["manifest.yaml"], "canaryWeight": ["0"]}


def test_apps(admin: FakeAdmin, client: AdminClient) -> None:
    admin.routes[("GET", "/v1/apps")] = (200, [APP])
    assert client.apps() == [APP]
    [seen] = admin.seen
    assert (seen.method, seen.path, seen.body) == ("GET", "/v1/apps", b"")


def test_app_names_are_url_encoded(admin: FakeAdmin, client: AdminClient) -> None:
    admin.routes[("GET", ENCODED)] = (200, APP)
    assert client.app("shop/api") == APP
    [seen] = admin.seen
    assert seen.path == ENCODED  # the slash travels as %2F, not as a path separator


@pytest.mark.parametrize("action", ["rollback", "promote", "abort"])
def test_app_actions(admin: FakeAdmin, client: AdminClient, action: str) -> None:
    admin.routes[("POST", f"{ENCODED}/{action}")] = (200, APP)
    assert getattr(client, action)("shop/api") == APP
    [seen] = admin.seen
    assert (seen.method, seen.path, seen.body) == ("POST", f"{ENCODED}/{action}", b"")
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"


def test_delete(admin: FakeAdmin, client: AdminClient) -> None:
    admin.routes[("DELETE", ENCODED)] = (204, None)
    assert client.delete("shop/api") == {}
    admin.routes[("DELETE", ENCODED)] = (200, {"deleted": "shop/api"})
    assert client.delete("shop/api") == {"deleted": "shop/api"}
    assert [(s.method, s.path) for s in admin.seen] == [("DELETE", ENCODED)] * 2


def test_logs(admin: FakeAdmin, client: AdminClient) -> None:
    lines = [{"time": 1.5, "message": "hello"}]
    admin.routes[("GET", f"{ENCODED}/logs")] = (200, lines)
    assert client.logs("shop/api") == lines
    assert client.logs("shop/api", tail=5) == lines
    assert [s.query for s in admin.seen] == [{"tail": ["100"]}, {"tail": ["5"]}]


# --- errors ------------------------------------------------------------------------------------


def test_server_errors_carry_status_and_message(admin: FakeAdmin, client: AdminClient) -> None:
    admin.routes[("POST", f"{ENCODED}/rollback")] = (409, {"error": "app 'shop/api' has no previous version"})
    with pytest.raises(AdminError) as caught:
        client.rollback("shop/api")
    assert caught.value.status == 409
    assert caught.value.message == "app 'shop/api' has no previous version"
    assert "409" in str(caught.value) and "no previous version" in str(caught.value)
    assert isinstance(caught.value, WasmletError)


def test_unknown_app_is_404(admin: FakeAdmin, client: AdminClient) -> None:
    with pytest.raises(AdminError) as caught:
        client.app("shop/nope")
    assert (caught.value.status, caught.value.message) == (404, "no such route")


def test_a_non_json_error_body_is_still_reported(admin: FakeAdmin, client: AdminClient) -> None:
    admin.routes[("GET", "/v1/apps")] = (500, b"Internal Server Error\n")
    with pytest.raises(AdminError) as caught:
        client.apps()
    assert (caught.value.status, caught.value.message) == (500, "Internal Server Error")


def test_a_wrong_token_is_401(admin: FakeAdmin) -> None:
    for token in ("wrong", None):
        with AdminClient(admin.url, token, timeout=10) as c, pytest.raises(AdminError) as caught:
            c.apps()
        assert caught.value.status == 401 and "bearer token" in caught.value.message
    assert "authorization" not in admin.seen[-1].headers


def test_an_unexpected_answer_shape_is_an_error(admin: FakeAdmin, client: AdminClient) -> None:
    admin.routes[("GET", "/v1/apps")] = (200, {"not": "a list"})
    with pytest.raises(AdminError, match="expected a JSON list"):
        client.apps()


def test_connection_refused_names_the_url() -> None:
    with socket.socket() as sock:  # a port nobody listens on (bound, never listening)
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with AdminClient(url + "/", TOKEN, timeout=10) as c, pytest.raises(AdminError) as caught:
            c.apps()
    assert caught.value.status == 0
    assert str(caught.value).startswith(f"cannot reach the admin API at {url}: ")


# --- the token file ----------------------------------------------------------------------------


def test_token_file_is_created_private_and_reused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert default_token(state) is None
    token = token_file_create(state)
    assert len(token) >= 40
    path = state / "admin-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert default_token(state) == token
    assert token_file_create(state) == token
    assert [p.name for p in state.iterdir()] == ["admin-token"]  # no temporary left behind


def test_token_file_ignores_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        token_file_create(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "admin-token").stat().st_mode) == 0o600


def test_concurrent_creators_agree_on_one_token(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        tokens = set(pool.map(lambda _: token_file_create(tmp_path), range(32)))
    assert len(tokens) == 1
    assert default_token(tmp_path) in tokens


def test_a_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "admin-token"
    path.write_text("abc\n")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        default_token(tmp_path)
    path.chmod(0o600)
    assert default_token(tmp_path) == "abc"


# --- the OpenAPI document ----------------------------------------------------------------------


def test_openapi_document_is_valid_openapi_3_1() -> None:
    from openapi_spec_validator import validate
    from openapi_spec_validator.versions.shortcuts import get_spec_version

    document = openapi()
    validate(document)  # raises on any problem
    assert str(get_spec_version(document)).endswith("3.1")
    json.dumps(document)  # served as /openapi.json


def test_openapi_document_covers_the_api() -> None:
    document = openapi()
    operations = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert operations == {
        ("GET", "/healthz"), ("GET", "/metrics"),
        ("GET", "/v1/apps"), ("POST", "/v1/deploy"),
        ("GET", "/v1/apps/{app}/{component}"), ("DELETE", "/v1/apps/{app}/{component}"),
        ("POST", "/v1/apps/{app}/{component}/rollback"), ("POST", "/v1/apps/{app}/{component}/promote"),
        ("POST", "/v1/apps/{app}/{component}/abort"), ("GET", "/v1/apps/{app}/{component}/logs"),
        ("GET", "/v1/apps/{app}/{component}/versions"),
    }
    for path, item in document["paths"].items():
        for operation in item.values():
            secured = operation.get("security", []) == [{"bearer": []}]
            assert secured == path.startswith("/v1/"), path
            if secured:
                assert "401" in operation["responses"]
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "The token in `<state dir>/admin-token`."}
    app = document["components"]["schemas"]["AppView"]
    assert set(app["required"]) == {"name", "route", "host", "version", "digest", "module", "state",
                                    "previous", "canary", "updated"}
    assert app["properties"]["state"]["enum"] == ["serving", "degraded", "revoked", "failed"]
    assert {"DeployReport", "DeployResultView", "ErrorBody", "LogEntry", "VersionView"} <= set(
        document["components"]["schemas"])
    assert document["paths"]["/metrics"]["get"]["responses"]["200"]["content"].keys() == {"text/plain"}
    assert document["paths"]["/v1/deploy"]["post"]["requestBody"]["content"].keys() == {"application/yaml"}
    # A fresh copy each time.
    document["paths"].clear()
    assert openapi()["paths"]


def test_openapi_is_generated_from_the_models_the_control_plane_returns() -> None:
    """The schema of an app is the pydantic model ``ControlPlane.describe`` builds, not a copy of it."""
    from wasmlet.control import AppView

    assert openapi()["components"]["schemas"]["AppView"]["properties"].keys() == AppView.model_fields.keys()


def test_openapi_app_schema_accepts_what_a_server_sends() -> None:
    from openapi_schema_validator import OAS31Validator

    document = openapi()
    schema = {**document["components"]["schemas"]["AppView"], "components": document["components"]}
    app = {
        "name": "shop/api", "route": "/", "host": None, "version": 3, "digest": "sha256:" + "a" * 64,
        "module": "file:///srv/api.wasm", "state": "serving", "previous": {"version": 2, "digest": "sha256:b"},
        "canary": {"version": 4, "digest": "sha256:c", "weight": 10, "header": None}, "updated": 1.5e9,
    }
    validator = OAS31Validator(schema)
    validator.validate(app)
    validator.validate({**app, "previous": None, "canary": None})
    assert not validator.is_valid({**app, "state": "sleeping"})
    assert not validator.is_valid({**app, "canary": {"version": 4, "digest": "x", "weight": 101, "header": None}})
