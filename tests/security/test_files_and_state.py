"""Issue 14, "files, state and the cache": each attack replayed against a real `wasmlet serve` on loopback.

Items 5 (restored versions under --trust), 6 (state that depended on the
cache), 9 (the host's files through a manifest), 10 (the precompiled cache
runs native code) and the low ones (kill -9 leftovers, a malformed spec_json
row, a lost state.db). Every wait is bounded.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import EXAMPLES, GUESTS, Server, write_manifest

Serve = Callable[..., Server]

HELLO = EXAMPLES / "hello" / "hello.wasm"
ECHO = EXAMPLES / "echo" / "echo.wasm"
HELLO_TEXT = "Hello, world!\n"


def wasmlet(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wasmlet", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def cache_dir() -> Path:
    return Path(os.environ["WASMLET_CACHE_DIR"])  # conftest's private cache, inherited by every server


def deploy(server: Server, manifest: str, source: str = "tenant.yaml", timeout: float = 30) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/yaml"}
    return httpx.post(server.admin_url + "/v1/deploy", params={"source": source}, content=manifest,
                      headers=headers, timeout=timeout)


def tenant_manifest(properties: dict[str, object], name: str = "probe") -> str:
    import yaml

    return yaml.safe_dump({
        "apiVersion": "core.oam.dev/v1beta1", "kind": "Application", "metadata": {"name": "tenant"},
        "spec": {"components": [{"name": name, "type": "wasm", "properties": {"route": "/probe", **properties}}]},
    })


def app_state(server: Server, name: str) -> dict[str, object]:
    response = server.admin("GET", "/v1/apps/" + name.replace("/", "%2F"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


def restarts(server: Server) -> int:
    return server.output().count("restarting it")


# --- item 5 and item 10: what --trust restores, and the artifacts it runs ------------------------------------


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path]:
    """A trust folder, and hello.wasm signed by a publisher certified for ``shop/*``."""
    keys, trust = tmp_path / "keys", tmp_path / "trust"
    for name in ("root", "publisher"):
        assert wasmlet("keygen", str(keys), "--name", name).returncode == 0
    (trust / "roots").mkdir(parents=True)
    shutil.copy(keys / "root.pub", trust / "roots" / "root.pub")
    cert = tmp_path / "publisher.cert"
    certified = wasmlet("certify", "--root-key", str(keys / "root.key"), "--publisher", str(keys / "publisher.pub"),
                        "--scope", "shop/*", "--not-after", "30d", "-o", str(cert))
    assert certified.returncode == 0, certified.stderr
    module = tmp_path / "hello.signed.wasm"
    shutil.copy(HELLO, module)
    signing = wasmlet("sign", str(module), "--key", str(keys / "publisher.key"), "--cert", str(cert))
    assert signing.returncode == 0, signing.stderr
    return trust, module


def test_trust_checks_every_restored_version(serve: Serve, tmp_path: Path, signed: tuple[Path, Path]) -> None:
    """Item 5: an unsigned module deployed without --trust was served after a restart with --trust."""
    trust, module = signed
    manifest = write_manifest(tmp_path / "shop.yaml", [
        {"name": "signed", "properties": {"moduleURL": str(module), "route": "/signed"}},
        {"name": "unsigned", "properties": {"moduleURL": str(ECHO), "route": "/unsigned"}},
    ], name="shop")
    state = tmp_path / "state"
    first = serve(str(manifest), state_dir=state)  # no --trust: both deploy
    assert httpx.get(first.url + "/unsigned", timeout=10).status_code == 200
    first.stop()

    second = serve("--trust", str(trust), state_dir=state)  # what was deployed, now under --trust
    assert httpx.get(second.url + "/signed", timeout=10).text == HELLO_TEXT
    refused = httpx.get(second.url + "/unsigned", timeout=10)
    assert refused.status_code == 503 and refused.headers["x-wasmlet-error"] == "revoked"
    assert "echo" not in refused.text.lower()
    assert app_state(second, "shop/unsigned")["state"] == "revoked"
    assert app_state(second, "shop/signed")["state"] == "serving"
    assert "shop/unsigned" in second.output() and "unsigned" in second.output()


def test_a_swapped_artifact_never_runs(serve: Serve, tmp_path: Path, signed: tuple[Path, Path]) -> None:
    """Item 10: replacing a .cwasm with another module's and fixing the digest beside it ran that code
    under --trust. Every kind of fix an attacker without the host's key can make is tried."""
    trust, module = signed
    manifest = write_manifest(tmp_path / "shop.yaml", [
        {"name": "hello", "properties": {"moduleURL": str(module), "route": "/hello"}},
        {"name": "other", "properties": {"moduleURL": str(ECHO), "route": "/other"}},
    ], name="shop")
    state = tmp_path / "state"
    first = serve(str(manifest), state_dir=state)
    assert httpx.get(first.url + "/hello", timeout=10).text == HELLO_TEXT
    first.stop()

    artifacts = {p.name: p for p in cache_dir().rglob("*.cwasm")}
    assert len(artifacts) == 2
    hello_digest = app_state_digest(state, "shop/hello")
    hello = next(p for name, p in artifacts.items() if name.startswith(hello_digest))
    other = next(p for name, p in artifacts.items() if not name.startswith(hello_digest))
    shutil.copy(other, hello)
    hello.with_name(hello.name + ".sha256").write_text(hashlib.sha256(other.read_bytes()).hexdigest())
    other_mac = other.with_name(other.name + ".mac")
    if other_mac.exists():
        shutil.copy(other_mac, hello.with_name(hello.name + ".mac"))  # the other artifact's genuine MAC

    second = serve("--trust", str(trust), state_dir=state)
    answer = httpx.get(second.url + "/hello", timeout=10)
    assert answer.status_code == 200 and answer.text == HELLO_TEXT, answer.text  # its own code, rebuilt
    assert "X-Echo-Method" not in str(answer.headers) and "x-echo-method" not in answer.headers
    # ... and the cache is private to the host's user.
    for folder in [cache_dir(), *[p for p in cache_dir().rglob("*") if p.is_dir()]]:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for file in [p for p in cache_dir().rglob("*") if p.is_file() and not p.name.endswith(".lock")]:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


def app_state_digest(state: Path, app: str) -> str:
    with sqlite3.connect(state / "state.db") as db:
        row = db.execute("SELECT v.digest FROM apps a JOIN versions v ON v.id = a.stable WHERE a.app = ?",
                         (app,)).fetchone()
    assert row is not None
    return str(row[0])


# --- item 6: state that depended on the cache -------------------------------------------------------------------


def test_removing_the_cache_stops_nothing(serve: Serve, tmp_path: Path) -> None:
    """Item 6: after removing the cache and restarting, workers crash-looped (18 restarts in 8 s)."""
    modules = tmp_path / "modules"
    modules.mkdir()
    shutil.copy(HELLO, modules / "hello.wasm")
    shutil.copy(ECHO, modules / "echo.wasm")
    manifest = write_manifest(tmp_path / "app.yaml", [
        {"name": "hello", "properties": {"moduleURL": str(modules / "hello.wasm"), "route": "/hello"}},
        {"name": "echo", "properties": {"moduleURL": str(modules / "echo.wasm"), "route": "/echo"}},
    ], name="kept")
    state = tmp_path / "state"
    first = serve(str(manifest), state_dir=state, workers=2)
    assert httpx.get(first.url + "/hello", timeout=10).text == HELLO_TEXT
    first.stop()

    shutil.rmtree(cache_dir())  # the cache is disposable ...
    shutil.rmtree(modules)  # ... and the files the versions came from are gone too: only the state has them
    second = serve(state_dir=state, workers=2)
    for _ in range(10):
        assert httpx.get(second.url + "/hello", timeout=10).text == HELLO_TEXT, second.output()
        assert httpx.get(second.url + "/echo", timeout=10).status_code == 200, second.output()
    time.sleep(1.0)  # a crash loop would have restarted workers by now
    assert restarts(second) == 0, second.output()
    assert app_state(second, "kept/hello")["state"] == "serving"


def test_one_bad_digest_among_201_apps(serve: Serve, tmp_path: Path) -> None:
    """Item 6: one bad digest among 201 apps crash-looped every worker; now the 200 others serve."""
    components = [{"name": f"c{i}", "properties": {"moduleURL": str(HELLO), "route": f"/c{i}"}} for i in range(200)]
    components.append({"name": "odd", "properties": {"moduleURL": str(ECHO), "route": "/odd"}})
    manifest = write_manifest(tmp_path / "many.yaml", components, name="many")
    state = tmp_path / "state"
    first = serve(str(manifest), state_dir=state, workers=2)
    assert httpx.get(first.url + "/odd", timeout=10).status_code == 200
    first.stop()

    with sqlite3.connect(state / "state.db") as db:  # the attack: a digest nothing has the bytes of
        db.execute("UPDATE versions SET digest = ? WHERE app = 'many/odd'", ("ab" * 32,))
    second = serve(state_dir=state, workers=2)
    with httpx.Client(timeout=10) as client:
        statuses = {client.get(f"{second.url}/c{i}").status_code for i in range(200)}
        broken = client.get(second.url + "/odd")
    assert statuses == {200}
    assert broken.status_code == 503 and broken.headers["x-wasmlet-error"] == "unavailable"
    assert app_state(second, "many/odd")["state"] == "failed"
    assert "many/odd" in second.output()
    logs = second.admin("GET", "/v1/apps/many/odd/logs").json()  # each worker said so, in the app's own log
    assert any("cannot be loaded" in str(entry["message"]) for entry in logs), logs
    time.sleep(1.0)
    assert restarts(second) == 0, second.output()[-3000:]


def test_a_malformed_spec_json_row_is_named(serve: Serve, tmp_path: Path) -> None:
    """Low: a malformed spec_json row stopped the host with a KeyError/ValidationError traceback."""
    manifest = write_manifest(tmp_path / "app.yaml", [
        {"name": "good", "properties": {"moduleURL": str(HELLO), "route": "/good"}},
        {"name": "bad", "properties": {"moduleURL": str(HELLO), "route": "/bad"}},
    ], name="rows")
    state = tmp_path / "state"
    serve(str(manifest), state_dir=state).stop()
    with sqlite3.connect(state / "state.db") as db:
        db.execute("""UPDATE versions SET spec_json = '{"app": "rows", "rate_limit": [1, 2]}' WHERE app = 'rows/bad'""")
    second = serve(state_dir=state)
    assert httpx.get(second.url + "/good", timeout=10).text == HELLO_TEXT
    output = second.output()
    assert "rows/bad" in output and "spec_json" in output and "Traceback" not in output
    listing = second.admin("GET", "/v1/apps")
    assert listing.status_code == 200
    assert {a["name"]: a["state"] for a in listing.json()} == {"rows/bad": "failed", "rows/good": "serving"}


@pytest.mark.parametrize("loss", ["missing", "empty"])
def test_a_lost_state_db_is_said_out_loud(serve: Serve, tmp_path: Path, loss: str) -> None:
    """Low: a missing or empty state.db where state was expected started an empty host in silence."""
    manifest = write_manifest(tmp_path / "app.yaml", [{"name": "web", "properties": {"moduleURL": str(HELLO)}}])
    state = tmp_path / "state"
    serve(str(manifest), state_dir=state).stop()
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (state / name).unlink(missing_ok=True)
    if loss == "empty":
        (state / "state.db").write_bytes(b"")
    second = serve(state_dir=state)
    assert f"state.db is {loss}" in second.output(), second.output()


# --- item 9: the host's files through a manifest ---------------------------------------------------------------


@pytest.fixture
def allowed(tmp_path: Path) -> Path:
    root = tmp_path / "allowed"
    (root / "data").mkdir(parents=True)
    (root / "data" / "ok.txt").write_text("granted\n")
    shutil.copy(GUESTS / "files.wasm", root / "files.wasm")
    shutil.copy(HELLO, root / "hello.wasm")
    return root


def test_admin_api_mounts_only_allowed_folders(serve: Serve, tmp_path: Path, allowed: Path) -> None:
    """Item 9: `files: [{source: /}]` was accepted, and a guest served /etc/shadow and the admin token."""
    host = write_manifest(tmp_path / "host.yaml", [{"name": "hello", "properties": {
        "moduleURL": str(allowed / "hello.wasm"), "route": "/hello"}}])
    server = serve(str(host), "--allow-files", str(allowed))

    def mounting(source: str) -> httpx.Response:
        return deploy(server, tenant_manifest({"moduleURL": str(allowed / "files.wasm"),
                                               "capabilities": {"files": [{"source": source,
                                                                           "destination": "/data"}]}}))

    for source, why in [("/", "never granted"), (str(server.state_dir), "never granted"),
                        (str(cache_dir()), "never granted"), ("/etc", "outside"), ("/proc/self", "never granted"),
                        (str(allowed / ".." / ".." / ".."), "never granted")]:
        refused = mounting(source)
        assert refused.status_code == 400, (source, refused.text)
        assert why in refused.json()["error"] and "capabilities.files[0].source" in refused.json()["error"]
    link = allowed / "escape"
    link.symlink_to(server.state_dir)
    assert "never granted" in mounting(str(link)).json()["error"]  # judged by where it points

    accepted = mounting(str(allowed / "data"))
    assert accepted.status_code == 200, accepted.text
    lines = dict(line.split(": ", 1) for line in httpx.get(server.url + "/probe", timeout=10).text.splitlines())
    assert lines["/data/ok.txt"] == "OK granted"
    assert [a["name"] for a in server.admin("GET", "/v1/apps").json()] == ["tenant/probe", "test/hello"]


@pytest.fixture
def module_server(tmp_path: Path) -> Iterator[str]:
    """A loopback HTTP server of modules a tenant may fetch (pinned by digest): files.wasm, hello.wasm."""
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(GUESTS / "files.wasm", served / "files.wasm")
    shutil.copy(HELLO, served / "hello.wasm")
    handler = functools.partial(_QuietFiles, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_admin_api_without_allow_files_names_no_host_file(serve: Serve, tmp_path: Path, module_server: str) -> None:
    """Item 9, as the attack made it: a tenant with the admin API mounted / (the host's /etc/shadow and
    the admin token) or read host files as modules. By default it may name no host path at all."""
    host = write_manifest(tmp_path / "host.yaml", [{"name": "hello", "properties": {
        "moduleURL": str(HELLO), "route": "/hello"}}])
    server = serve(str(host))
    for properties in ({"moduleURL": str(HELLO)}, {"moduleURL": f"file://{HELLO}"},
                       {"moduleURL": "hello.wasm"}):  # relative: against the host's folder
        refused = deploy(server, tenant_manifest(properties), source=str(EXAMPLES / "hello" / "tenant.yaml"))
        assert refused.status_code == 400 and "--allow-files" in refused.json()["error"], refused.text
    remote = {"moduleURL": f"{module_server}/files.wasm",
              "moduleDigest": "sha256:" + hashlib.sha256((GUESTS / "files.wasm").read_bytes()).hexdigest()}
    (tmp_path / "data").mkdir()
    for source, why in [("/", "never granted"), (str(server.state_dir), "never granted"),
                        (str(tmp_path / "data"), "--allow-files")]:
        mount = {"capabilities": {"files": [{"source": source, "destination": "/"}]}}
        refused = deploy(server, tenant_manifest({**remote, **mount}))
        if refused.status_code == 200:  # what the attack got: the host's files, served by a guest
            print(httpx.get(server.url + "/probe", timeout=10).text)
        assert refused.status_code == 400 and why in refused.json()["error"], (source, refused.text)
    fetched = {"moduleURL": f"{module_server}/hello.wasm",
               "moduleDigest": "sha256:" + hashlib.sha256(HELLO.read_bytes()).hexdigest()}
    assert deploy(server, tenant_manifest(fetched)).status_code == 200  # a fetched module needs no host file
    assert httpx.get(server.url + "/probe", timeout=10).text == HELLO_TEXT
    assert httpx.get(server.url + "/hello", timeout=10).text == HELLO_TEXT


def test_module_url_reads_only_modules(serve: Serve, tmp_path: Path, allowed: Path) -> None:
    """Item 9: `file:///etc/shadow` was copied into the cache (0644) before failing, a named pipe blocked
    the control plane forever, and a file was read without a cap."""
    marker = "host-secret-4f1c2a"
    (allowed / "secret.txt").write_text(f"root:{marker}:19000:0:99999:7:::\n")
    os.mkfifo(allowed / "pipe.wasm")
    with open(allowed / "huge.wasm", "wb") as huge:  # sparse: 257 MiB on paper, nothing on disk
        huge.write(b"\0asm\x01\0\0\0")
        huge.truncate(257 << 20)
    (allowed / "link.wasm").symlink_to("/etc/passwd")
    host = write_manifest(tmp_path / "host.yaml", [{"name": "hello", "properties": {
        "moduleURL": str(allowed / "hello.wasm"), "route": "/hello"}}])
    server = serve(str(host), "--allow-files", str(allowed))

    cases = [
        (f"file://{allowed / 'secret.txt'}", "not WebAssembly"),
        (str(allowed / "pipe.wasm"), "not a regular file"),
        (str(allowed / "huge.wasm"), "larger than"),
        (str(allowed / "link.wasm"), "outside"),
        ("/dev/zero", "never granted"),
        ("/proc/self/environ", "never granted"),
        (str(server.state_dir / "state.db"), "never granted"),
    ]
    for url, why in cases:
        started = time.monotonic()
        try:
            refused = deploy(server, tenant_manifest({"moduleURL": url}), timeout=10)
        except httpx.TimeoutException:
            os.killpg(server.process.pid, signal.SIGKILL)  # the old host reads /dev/zero until memory runs out
            raise AssertionError(f"{url}: the deploy did not answer within 10 s") from None
        assert refused.status_code == 400 and why in refused.json()["error"], (url, refused.text)
        assert time.monotonic() - started < 5, url
        assert server.admin("GET", "/v1/apps").status_code == 200  # the control plane is not held
    for root in (cache_dir(), server.state_dir):  # nothing that was not a module was copied anywhere
        for file in root.rglob("*"):
            if file.is_file() and file.name != "state.db":
                assert marker.encode() not in file.read_bytes(), file
    for file in [*cache_dir().rglob("*"), *(server.state_dir / "blobs").rglob("*")]:  # module bytes are private
        assert stat.S_IMODE(file.stat().st_mode) & 0o077 == 0, file
    with sqlite3.connect(server.state_dir / "state.db") as db:
        assert db.execute("SELECT count(*) FROM versions WHERE app = 'tenant/probe'").fetchone()[0] == 0
    accepted = deploy(server, tenant_manifest({"moduleURL": str(allowed / "hello.wasm")}))
    assert accepted.status_code == 200, accepted.text
    assert httpx.get(server.url + "/probe", timeout=10).text == HELLO_TEXT


def test_operator_manifests_on_the_command_line(tmp_path: Path, allowed: Path) -> None:
    """The operator's own manifests: anything but the host's folders and pseudo file systems; with
    --allow-files, those folders and the manifest's own."""
    state = tmp_path / "state"
    env = {**os.environ, "WASMLET_STATE_DIR": str(state)}
    args = ["--listen", "127.0.0.1:0", "--admin-listen", "none", "--state-dir", str(state)]
    root_mount = write_manifest(tmp_path / "root.yaml", [{"name": "files", "properties": {
        "moduleURL": str(GUESTS / "files.wasm"), "capabilities": {"files": [{"source": "/"}]}}}])
    refused = wasmlet("serve", str(root_mount), *args, env=env, timeout=60)
    assert refused.returncode == 1 and "never granted" in refused.stderr, refused.stderr
    zero = write_manifest(tmp_path / "zero.yaml", [{"name": "zero", "properties": {"moduleURL": "/dev/zero"}}])
    refused = wasmlet("serve", str(zero), *args, env=env, timeout=60)
    assert refused.returncode == 1 and "never granted" in refused.stderr, refused.stderr
    token = write_manifest(tmp_path / "token.yaml", [{"name": "files", "properties": {
        "moduleURL": str(GUESTS / "files.wasm"), "capabilities": {"files": [{"source": str(state)}]}}}])
    refused = wasmlet("serve", str(token), *args, env=env, timeout=60)
    assert refused.returncode == 1 and "never granted" in refused.stderr, refused.stderr

    own = tmp_path / "own"
    own.mkdir()
    shutil.copy(HELLO, own / "hello.wasm")
    outside = write_manifest(own / "outside.yaml", [{"name": "web", "properties": {"moduleURL": str(HELLO)}}])
    refused = wasmlet("serve", str(outside), *args, "--allow-files", str(allowed), env=env, timeout=60)
    assert refused.returncode == 1 and "outside the folders" in refused.stderr, refused.stderr


def test_operator_manifest_keeps_its_own_folder(serve: Serve, tmp_path: Path, allowed: Path) -> None:
    own = tmp_path / "own"
    own.mkdir()
    shutil.copy(HELLO, own / "hello.wasm")
    manifest = write_manifest(own / "app.yaml", [
        {"name": "web", "properties": {"moduleURL": "hello.wasm", "route": "/web"}},
        {"name": "files", "properties": {"moduleURL": str(allowed / "files.wasm"), "route": "/files",
                                         "capabilities": {"files": [{"source": str(allowed / "data"),
                                                                     "destination": "/data"}]}}},
    ])
    server = serve(str(manifest), "--allow-files", str(allowed))
    assert httpx.get(server.url + "/web", timeout=10).text == HELLO_TEXT
    assert "/data/ok.txt: OK granted" in httpx.get(server.url + "/files", timeout=10).text


# --- low: what kill -9 leaves behind ------------------------------------------------------------------------


def _leftovers(folders: tuple[Path, ...], pids: set[int]) -> set[Path]:
    """Entries wasmlet made in ``folders`` for processes in ``pids``."""
    found = set()
    for folder in folders:
        for entry in folder.glob("wasmlet-*"):
            parts = entry.name.removeprefix("wasmlet-").split("-")
            digits = next((p for p in parts if p.isdigit()), None)
            if digits is not None and int(digits) in pids:
                found.add(entry)
    return found


def _worker_pids(supervisor: int) -> set[int]:
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children")
    pids = {int(pid) for pid in children.read_text().split()} if children.exists() else set()
    return {pid for pid in pids if _comm(pid) != "wasmlet-zygote"}  # the zygote forks workers (issue 13)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def test_kill_9_leftovers_are_swept_at_the_next_start(serve: Serve, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "app.yaml", [{"name": "web", "properties": {"moduleURL": str(HELLO)}}])
    state = tmp_path / "state"
    # Private temp and scratch folders: another host starting on this machine would sweep the
    # leftovers under test before they are looked at (the sweep is machine-wide, as it should be).
    folders = (tmp_path / "tmp", tmp_path / "shm")
    for folder in folders:
        folder.mkdir()
    private = {"TMPDIR": str(folders[0]), "WASMLET_SCRATCH_DIR": str(folders[1])}
    first = serve(str(manifest), state_dir=state, workers=2, extra_env=private)
    assert httpx.get(first.url + "/web", timeout=10).text == HELLO_TEXT  # a worker makes its scratch files
    pids = {first.process.pid, *_worker_pids(first.process.pid)}
    assert len(pids) == 3
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.05)
    left = _leftovers(folders, pids)
    kinds = {entry.name.split("-")[1] if not entry.name.split("-")[1].isdigit() else "scratch" for entry in left}
    assert kinds == {"run", "metrics", "scratch"}, left  # what the attack found

    second = serve(state_dir=state, workers=1, extra_env=private)
    assert httpx.get(second.url + "/web", timeout=10).text == HELLO_TEXT
    assert _leftovers(folders, pids) == set()
    assert _leftovers(folders, {second.process.pid, *_worker_pids(second.process.pid)})  # a live host's are kept
