"""Docker users' credentials: ``credsStore``/``credHelpers`` helpers, and Docker Hub's names (issue 10, item 11).

The helpers are real programs speaking docker-credential-helpers' protocol
(``get``, the server address on stdin, JSON on stdout), put on ``PATH`` as
``docker-credential-<name>``; the registry is the real ``docker-registry``
with htpasswd (``basic_registry``). The CLI runs as a subprocess, as a user
types it, with the test's own HOME (``isolated``) and cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from wasmlet import RegistryAuthError
from wasmlet.registry import Credentials, parse_reference
from wasmlet.registry import _auth as auth

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "examples" / "hello" / "hello.wasm"
USER, PASSWORD = "alice", "wonderland"  # what conftest's htpasswd accepts

HELPER = """\
#!{python}
# docker-credential-{name}: answers `get` from a JSON file of server -> [user, secret], and logs what it was asked.
import json, os, sys, time
mode = {mode!r}
if sys.argv[1:] != ["get"]:
    sys.exit("unsupported action")
server = sys.stdin.read()
with open({log!r}, "a") as log:
    log.write(json.dumps({{"server": server, "pid": os.getpid()}}) + "\\n")
if mode == "hang":
    child = os.fork()
    if child == 0:  # a grandchild holding the pipes open: it must be killed too
        time.sleep(120)
        os._exit(0)
    with open({log!r}, "a") as log:
        log.write(json.dumps({{"child": child}}) + "\\n")
    time.sleep(120)
if mode == "broken":
    sys.stderr.write("error: the keychain is locked\\n")
    sys.exit(2)
if mode == "garbage":
    print("Username=alice Secret=" + {secret!r})
    sys.exit(0)
store = json.load(open({store!r}))
if server not in store:
    print("credentials not found in native keychain")
    sys.exit(1)
user, secret = store[server]
print(json.dumps({{"ServerURL": server, "Username": user, "Secret": secret}}))
"""


class Helpers:
    """``docker-credential-*`` programs in a folder put first on PATH, and the docker config they are named in."""

    def __init__(self, tmp_path: Path) -> None:
        self.bin = tmp_path / "helper-bin"
        self.bin.mkdir()
        self.log = tmp_path / "helper.log"
        self.store = tmp_path / "helper-store.json"
        self.store.write_text("{}")
        self.config = tmp_path / "home" / ".docker" / "config.json"
        self.env = {**os.environ, "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}"}

    def add(self, name: str, mode: str = "store", secret: str = PASSWORD) -> None:
        path = self.bin / f"docker-credential-{name}"
        path.write_text(HELPER.format(python=sys.executable, name=name, mode=mode, log=str(self.log),
                                      store=str(self.store), secret=secret))
        path.chmod(0o755)

    def holds(self, server: str, user: str = USER, secret: str = PASSWORD) -> None:
        store = json.loads(self.store.read_text())
        store[server] = [user, secret]
        self.store.write_text(json.dumps(store))

    def configure(self, config: dict[str, Any]) -> None:
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text(json.dumps(config))

    def asked(self) -> list[str]:
        if not self.log.exists():
            return []
        return [entry["server"] for entry in map(json.loads, self.log.read_text().splitlines()) if "server" in entry]

    def wasmlet(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "wasmlet", *args], capture_output=True, text=True,
                              env=self.env, timeout=120)


@pytest.fixture
def helpers(tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Helpers:
    found = Helpers(tmp_path)
    monkeypatch.setenv("PATH", found.env["PATH"])  # for the in-process calls too
    return found


def test_creds_store_answers_for_a_private_registry(basic_registry: Any, helpers: Helpers) -> None:
    helpers.add("test")
    helpers.holds(basic_registry.host)
    helpers.configure({"auths": {basic_registry.host: {}}, "credsStore": "test"})  # as Docker Desktop writes it
    ref = basic_registry.ref("helper/hello:v1")
    pushed = helpers.wasmlet("push", str(HELLO), ref)
    assert pushed.returncode == 0, pushed.stderr
    pulled = helpers.wasmlet("pull", ref)
    assert pulled.returncode == 0, pulled.stderr
    assert "module  sha256:" in pulled.stdout
    # The helper was asked for this registry, by its host:port, as docker asks it.
    assert set(helpers.asked()) == {basic_registry.host}
    assert PASSWORD not in pushed.stdout + pushed.stderr + pulled.stdout + pulled.stderr


def test_a_cred_helpers_entry_wins_over_creds_store(basic_registry: Any, helpers: Helpers) -> None:
    helpers.add("test")
    helpers.holds(basic_registry.host)
    helpers.configure({"credHelpers": {basic_registry.host: "test"}, "credsStore": "not-installed"})
    pushed = helpers.wasmlet("push", str(HELLO), basic_registry.ref("helper/per-registry:v1"))
    assert pushed.returncode == 0, pushed.stderr
    asked = helpers.asked()
    assert asked and set(asked) == {basic_registry.host}


def test_an_absent_helper_is_named_with_the_fix(basic_registry: Any, helpers: Helpers) -> None:
    helpers.configure({"auths": {basic_registry.host: {}}, "credsStore": "desktop"})
    ref = basic_registry.ref("helper/absent:v1")
    pushed = helpers.wasmlet("push", str(HELLO), ref)
    assert pushed.returncode == 1
    assert f"{ref}: the registry requires authentication, and {helpers.config}: credsStore names the credential " \
           "helper 'desktop', but docker-credential-desktop is not on PATH: install it, or remove the entry " \
           f"(then `wasmlet login {basic_registry.host}` keeps credentials in the file)" in pushed.stderr
    assert "Traceback" not in pushed.stderr


def test_an_absent_helper_does_not_stop_a_public_pull(registry: Any, helpers: Helpers) -> None:
    helpers.configure({"credsStore": "desktop"})  # a config copied from a laptop with Docker Desktop
    ref = registry.ref("public/hello:v1")
    assert helpers.wasmlet("push", str(HELLO), ref).returncode == 0
    pulled = helpers.wasmlet("pull", ref)
    assert pulled.returncode == 0, pulled.stderr  # the registry asked for nothing, so no helper was needed


def test_a_helper_without_credentials_for_the_registry(basic_registry: Any, helpers: Helpers) -> None:
    helpers.add("test")
    helpers.holds("ghcr.io")  # something, but not this registry
    helpers.configure({"credsStore": "test"})
    pulled = helpers.wasmlet("pull", basic_registry.ref("helper/none:v1"))
    assert pulled.returncode == 1
    assert f"there are no credentials for {basic_registry.host} (docker's credential helper 'test' has none for " \
           f"{basic_registry.host}); run: wasmlet login {basic_registry.host}" in pulled.stderr


def test_a_wrong_secret_from_the_helper_is_rejected_and_not_shown(basic_registry: Any, helpers: Helpers) -> None:
    helpers.add("test")
    helpers.holds(basic_registry.host, secret="not-the-password")
    helpers.configure({"credsStore": "test"})
    pulled = helpers.wasmlet("pull", basic_registry.ref("helper/hello:v1"))
    assert pulled.returncode == 1
    assert "rejected user 'alice'" in pulled.stderr
    assert "not-the-password" not in pulled.stderr + pulled.stdout


def test_a_failing_helper_is_named_with_what_it_said(basic_registry: Any, helpers: Helpers) -> None:
    helpers.add("broken", mode="broken")
    helpers.configure({"credsStore": "broken"})
    pulled = helpers.wasmlet("pull", basic_registry.ref("helper/hello:v1"))
    assert pulled.returncode == 1
    assert f"docker-credential-broken get failed for {basic_registry.host} (exit status 2): " \
           "error: the keychain is locked" in pulled.stderr


def test_a_helper_answering_garbage_does_not_leak_it(basic_registry: Any, helpers: Helpers) -> None:
    helpers.add("garbage", mode="garbage", secret="s3cr3t-in-garbage")
    helpers.configure({"credsStore": "garbage"})
    pulled = helpers.wasmlet("pull", basic_registry.ref("helper/hello:v1"))
    assert pulled.returncode == 1
    assert f"docker-credential-garbage get answered something that is not JSON for {basic_registry.host}" \
        in pulled.stderr
    assert "s3cr3t" not in pulled.stderr + pulled.stdout


def test_a_hanging_helper_is_stopped_with_what_it_started(helpers: Helpers, monkeypatch: pytest.MonkeyPatch) -> None:
    helpers.add("hang", mode="hang")
    helpers.configure({"credsStore": "hang"})
    monkeypatch.setattr(auth, "HELPER_TIMEOUT", 1.0)
    started = time.monotonic()
    with pytest.raises(RegistryAuthError, match=r"docker-credential-hang get did not answer within 1 s "
                                                r"\(asked for registry.example.com"):
        auth.load_credentials("registry.example.com")
    assert time.monotonic() - started < 10  # the helper sleeps 120 s
    entries = [json.loads(line) for line in helpers.log.read_text().splitlines()]
    pids = [e["pid"] for e in entries if "pid" in e] + [e["child"] for e in entries if "child" in e]
    assert len(pids) == 2
    deadline = time.monotonic() + 5
    while any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in pids):
        assert time.monotonic() < deadline, "the helper or its child is still running"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_a_helper_name_cannot_name_another_program(helpers: Helpers, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    evil = tmp_path / "docker-credential-x" / "evil"
    evil.parent.mkdir()
    evil.write_text(f"#!/bin/sh\ntouch {marker}\n")
    evil.chmod(0o755)
    for name in ("../docker-credential-x/evil", "x/evil", "-h", f"{evil}"):
        helpers.configure({"credHelpers": {"registry.example.com": name}})
        with pytest.raises(RegistryAuthError, match="is not a credential helper name"):
            auth.load_credentials("registry.example.com")
    assert not marker.exists()


def test_an_identity_token_is_refused_clearly(helpers: Helpers) -> None:
    helpers.add("test")
    helpers.holds("registry.example.com", user="<token>", secret="refresh-token-value")
    helpers.configure({"credsStore": "test"})
    with pytest.raises(RegistryAuthError, match=r"holds an identity token for registry\.example\.com") as info:
        auth.load_credentials("registry.example.com")
    assert "refresh-token-value" not in str(info.value)


def test_wasmlet_login_still_wins_beside_a_creds_store(basic_registry: Any, helpers: Helpers) -> None:
    helpers.add("test")  # holds nothing
    helpers.configure({"credsStore": "test"})
    login = subprocess.run([sys.executable, "-m", "wasmlet", "login", basic_registry.host, "-u", USER,
                            "--password-stdin"], input=PASSWORD + "\n", capture_output=True, text=True,
                           env=helpers.env, timeout=60)
    assert login.returncode == 0, login.stderr
    saved = json.loads(helpers.config.read_text())
    assert saved["credsStore"] == "test" and basic_registry.host in saved["auths"]
    pushed = helpers.wasmlet("push", str(HELLO), basic_registry.ref("helper/login:v1"))
    assert pushed.returncode == 0, pushed.stderr
    assert helpers.asked() == []


# -- Docker Hub's names --------------------------------------------------------------------------------


@pytest.mark.parametrize(("written", "registry", "repository"), [
    ("oci://docker.io/hello-wasm:v1", "registry-1.docker.io", "library/hello-wasm"),
    ("oci://docker.io/library/hello-wasm:v1", "registry-1.docker.io", "library/hello-wasm"),
    ("oci://docker.io/acme/resize:v1", "registry-1.docker.io", "acme/resize"),
    ("oci://index.docker.io/acme/resize:v1", "registry-1.docker.io", "acme/resize"),
    ("oci://Docker.IO/hello-wasm", "registry-1.docker.io", "library/hello-wasm"),
    ("oci://registry-1.docker.io/hello-wasm", "registry-1.docker.io", "library/hello-wasm"),
    ("oci://ghcr.io/hello-wasm:v1", "ghcr.io", "hello-wasm"),  # only Docker Hub has library/
    ("oci://docker.io:5000/hello-wasm:v1", "docker.io:5000", "hello-wasm"),  # another port: another registry
])
def test_docker_hub_is_spelled_as_docker_spells_it(written: str, registry: str, repository: str) -> None:
    ref = parse_reference(written)
    assert (ref.registry, ref.repository) == (registry, repository)


def test_validate_names_docker_hubs_registry_host(tmp_path: Path, helpers: Helpers) -> None:
    from tests.conftest import write_manifest

    manifest = write_manifest(tmp_path / "app.yaml", [
        {"name": "web", "properties": {"moduleURL": "oci://docker.io/hello-wasm:v1"}}], name="hub")
    result = helpers.wasmlet("validate", str(manifest))
    assert result.returncode == 0, result.stderr
    assert "(not checked offline: pulled from registry-1.docker.io at deploy)" in result.stdout


def test_docker_hub_credentials_under_any_of_its_keys(helpers: Helpers) -> None:
    # `docker login` writes Docker Hub under https://index.docker.io/v1/.
    helpers.configure({"auths": {"https://index.docker.io/v1/": {"auth": "YWxpY2U6d29uZGVybGFuZA=="}}})
    assert auth.load_credentials("registry-1.docker.io") == Credentials(USER, PASSWORD)
    # A Docker Hub helper is asked for docker's server address for it.
    helpers.add("test")
    helpers.holds("https://index.docker.io/v1/", secret="from-the-helper")
    helpers.configure({"credHelpers": {"docker.io": "test"}})
    assert auth.load_credentials("registry-1.docker.io") == Credentials(USER, "from-the-helper")
    assert helpers.asked() == ["https://index.docker.io/v1/"]


def test_login_to_docker_hub_is_stored_where_docker_reads_it(helpers: Helpers) -> None:
    helpers.configure({"auths": {"docker.io": {"auth": "eDp5"}, "ghcr.io": {"auth": "eDp5"}}})
    auth.store_credentials("registry-1.docker.io", Credentials(USER, PASSWORD))
    auths = json.loads(helpers.config.read_text())["auths"]
    assert set(auths) == {"https://index.docker.io/v1/", "ghcr.io"}
    assert auth.load_credentials("docker.io") == Credentials(USER, PASSWORD)


def test_the_helper_script_speaks_the_protocol(helpers: Helpers) -> None:
    """The test helper itself, as docker would run it: a check that the fake is faithful."""
    helpers.add("test")
    helpers.holds("registry.example.com")
    out = subprocess.run([str(helpers.bin / "docker-credential-test"), "get"], input="registry.example.com",
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert json.loads(out) == {"ServerURL": "registry.example.com", "Username": USER, "Secret": PASSWORD}
    missing = subprocess.run([str(helpers.bin / "docker-credential-test"), "get"], input="other.example.com",
                             capture_output=True, text=True, timeout=30)
    assert missing.returncode == 1 and "credentials not found" in missing.stdout
