"""Registry auth: basic (htpasswd), the bearer-token challenge flow, docker's config.json, ``wasmlet login``."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wasmlet import RegistryAuthError
from wasmlet.engine import BlobStore
from wasmlet.registry import Credentials, login, pull_module, push_module
from wasmlet.registry._auth import load_credentials, parse_challenge
from wasmlet.registry._client import RegistryClient

ROOT = Path(__file__).resolve().parents[2]
HELLO = (ROOT / "examples" / "hello" / "hello.wasm").read_bytes()
HELLO_HEX = hashlib.sha256(HELLO).hexdigest()
USER, PASSWORD = "alice", "wonderland"  # what conftest's htpasswd and token service accept


def _run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wasmlet", *args], input=stdin, capture_output=True, text=True,
                          timeout=120, check=False)


# -- basic auth ----------------------------------------------------------------------------------------


def test_basic_auth_without_credentials_is_a_clear_401(basic_registry: Any, isolated: Path,
                                                       store_files: Callable[..., Any]) -> None:
    ref = basic_registry.ref("private/hello:v1")
    with pytest.raises(RegistryAuthError, match="requires authentication") as info:
        push_module(HELLO, ref)
    assert ref in str(info.value) and f"wasmlet login {basic_registry.host}" in str(info.value)
    with pytest.raises(RegistryAuthError, match="requires authentication"):
        pull_module(ref, BlobStore(isolated))
    assert store_files(isolated) == []


def test_basic_auth_with_docker_config(basic_registry: Any, isolated: Path,
                                       docker_login: Callable[..., Path]) -> None:
    docker_login(basic_registry.host)
    ref = basic_registry.ref("private/hello:v1")
    pushed = push_module(HELLO, ref)
    pulled = pull_module(ref, BlobStore(isolated))
    assert pulled.data == HELLO and pulled.manifest_digest == pushed.manifest_digest


def test_basic_auth_with_a_wrong_password(basic_registry: Any, isolated: Path,
                                          docker_login: Callable[..., Path]) -> None:
    docker_login(basic_registry.host, USER, "not-it")
    with pytest.raises(RegistryAuthError, match="rejected user 'alice'") as info:
        pull_module(basic_registry.ref("private/hello:v1"), BlobStore(isolated))
    assert "not-it" not in str(info.value)


def test_login_command_writes_docker_config(basic_registry: Any, isolated: Path, tmp_path: Path) -> None:
    refused = _run_cli("login", basic_registry.host, "-u", USER, "--password-stdin", stdin="wrong\n")
    assert refused.returncode == 1
    assert "rejected user 'alice'" in refused.stderr
    config = tmp_path / "home" / ".docker" / "config.json"
    assert not config.exists()

    ok = _run_cli("login", basic_registry.host, "-u", USER, "--password-stdin", stdin=PASSWORD + "\n")
    assert ok.returncode == 0, ok.stderr
    assert "Login Succeeded" in ok.stdout
    saved = json.loads(config.read_text())
    assert base64.b64decode(saved["auths"][basic_registry.host]["auth"]).decode() == f"{USER}:{PASSWORD}"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600

    pushed = _run_cli("push", str(ROOT / "examples" / "hello" / "hello.wasm"), basic_registry.ref("cli/hello:v2"))
    assert pushed.returncode == 0, pushed.stderr


def test_login_keeps_other_docker_config_entries(basic_registry: Any, tmp_path: Path) -> None:
    config = tmp_path / "home" / ".docker" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"auths": {"https://ghcr.io": {"auth": "eDp5"}}, "psFormat": "table"}))
    login(basic_registry.host, Credentials(USER, PASSWORD))
    saved = json.loads(config.read_text())
    assert saved["psFormat"] == "table" and "https://ghcr.io" in saved["auths"]
    assert load_credentials(basic_registry.host) == Credentials(USER, PASSWORD)
    assert load_credentials("ghcr.io") == Credentials("x", "y")


# -- bearer tokens ---------------------------------------------------------------------------------------


def test_bearer_flow_with_credentials(token_registry: Any, token_service: Any, isolated: Path,
                                      docker_login: Callable[..., Path]) -> None:
    docker_login(token_registry.host)
    ref = token_registry.ref("team/hello:v1")
    before = len(token_service.requests)
    pushed = push_module(HELLO, ref)
    during_push = len(token_service.requests) - before
    pulled = pull_module(ref, BlobStore(isolated))
    assert pulled.data == HELLO and pulled.manifest_digest == pushed.manifest_digest
    # One token per operation: it is cached for its scope, not fetched per request.
    assert during_push == 1
    assert len(token_service.requests) - before == 2
    granted = [r for r in token_service.requests if r.get("user") == USER]
    assert any(a["name"] == "team/hello" and "push" in a["actions"] for r in granted for a in r["access"])


def test_bearer_anonymous_pull_of_a_public_repository(token_registry: Any, token_service: Any, isolated: Path,
                                                      docker_login: Callable[..., Path], tmp_path: Path) -> None:
    docker_login(token_registry.host)
    push_module(HELLO, token_registry.ref("public/hello:v1"))
    (tmp_path / "home" / ".docker" / "config.json").unlink()
    pulled = pull_module(token_registry.ref("public/hello:v1"), BlobStore(isolated))
    assert pulled.module_digest == HELLO_HEX
    assert any(r.get("user") == "" and r["access"] and r["access"][0]["actions"] == ["pull"]
               for r in token_service.requests)


def test_bearer_private_repository_without_credentials(token_registry: Any, isolated: Path,
                                                       docker_login: Callable[..., Path], tmp_path: Path,
                                                       store_files: Callable[..., Any]) -> None:
    docker_login(token_registry.host)
    push_module(HELLO, token_registry.ref("team/secret:v1"))
    (tmp_path / "home" / ".docker" / "config.json").unlink()
    ref = token_registry.ref("team/secret:v1")
    with pytest.raises(RegistryAuthError, match="rejected anonymous access") as info:
        pull_module(ref, BlobStore(isolated))
    assert ref in str(info.value) and "wasmlet login" in str(info.value)
    assert store_files(isolated) == []


def test_bearer_login(token_registry: Any, tmp_path: Path) -> None:
    with pytest.raises(RegistryAuthError, match="rejected user 'alice'"):
        login(token_registry.host, Credentials(USER, "nope"))
    path = login(token_registry.host, Credentials(USER, PASSWORD))
    assert path == tmp_path / "home" / ".docker" / "config.json"


# -- transport rules and parsing (no server needed) --------------------------------------------------------


def test_plain_http_only_for_loopback_or_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    def base(registry: str, hostname: str, insecure: bool = False) -> str:
        with RegistryClient(registry, hostname=hostname, where="t", insecure=insecure) as client:
            return client.base_url

    assert base("registry.example.com", "registry.example.com") == "https://registry.example.com"
    assert base("127.0.0.1:5000", "127.0.0.1") == "http://127.0.0.1:5000"
    assert base("localhost:5000", "localhost") == "http://localhost:5000"
    assert base("[::1]:5000", "::1") == "http://[::1]:5000"
    assert base("registry.lan:5000", "registry.lan", insecure=True) == "http://registry.lan:5000"
    monkeypatch.setenv("WASMLET_INSECURE_REGISTRIES", "other.lan, registry.lan:5000")
    assert base("registry.lan:5000", "registry.lan") == "http://registry.lan:5000"
    assert base("registry.lan:6000", "registry.lan") == "https://registry.lan:6000"


def test_challenge_parsing() -> None:
    challenge = parse_challenge('Bearer realm="https://auth.example.com/token",service="registry.example.com",'
                                'scope="repository:wasm/resize:pull,push"')
    assert challenge is not None and challenge.scheme == "bearer"
    assert challenge.params == {"realm": "https://auth.example.com/token", "service": "registry.example.com",
                                "scope": "repository:wasm/resize:pull,push"}
    basic = parse_challenge('Basic realm="Registry Realm"')
    assert basic is not None and basic.scheme == "basic" and basic.params == {"realm": "Registry Realm"}
    assert parse_challenge("") is None


def test_docker_config_spellings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dc"))
    (tmp_path / "dc").mkdir()

    def token(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    (tmp_path / "dc" / "config.json").write_text(json.dumps({"auths": {
        "https://index.example.com/v1/": {"auth": token("a:b")},
        "http://plain.example.com:5000": {"auth": token("c:d:with:colons")},
        "both.example.com": {"username": "e", "password": "f"},
    }, "credsStore": "desktop"}))
    assert load_credentials("index.example.com") == Credentials("a", "b")
    assert load_credentials("plain.example.com:5000") == Credentials("c", "d:with:colons")
    assert load_credentials("both.example.com") == Credentials("e", "f")
    # A host with no entry goes to the credsStore helper, as docker does; this one is not installed.
    with pytest.raises(RegistryAuthError, match="docker-credential-desktop is not on PATH"):
        load_credentials("other.example.com")
    assert "f" not in repr(Credentials("e", "f")).replace("username='e'", "")
