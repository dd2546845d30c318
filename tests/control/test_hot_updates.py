"""Hot updates on a real host: deploy, canary, rollback, delete, logs, restarts, and zero failed requests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.conftest import EXAMPLES, GUESTS, Server, free_port, label_module, write_manifest

Serve = Callable[..., Server]


def manifest_for(tmp_path: Path, label: str, name: str = "web") -> Path:
    module = label_module(tmp_path / f"{label}.wasm", label)
    return write_manifest(tmp_path / f"{label}.yaml", [{"name": name, "properties": {
        "moduleURL": str(module), "route": "/"}}], name="hot")


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WASMLET_ADMIN": server.admin_url, "WASMLET_STATE_DIR": str(server.state_dir)}
    return subprocess.run([sys.executable, "-m", "wasmlet", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def body(server: Server, **headers: str) -> str:
    return httpx.get(server.url + "/", headers=headers).text.strip()


def test_deploy_rollback_delete_with_the_cli(serve: Serve, tmp_path: Path) -> None:
    server = serve(str(manifest_for(tmp_path, "v1")), "--allow-files", str(tmp_path), workers=2)
    assert body(server) == "v1"
    deployed = cli(server, "deploy", str(manifest_for(tmp_path, "v2")))
    assert deployed.returncode == 0, deployed.stderr
    assert "hot/web: version 2" in deployed.stdout
    assert {body(server) for _ in range(10)} == {"v2"}  # every worker switched before deploy returned
    listing = cli(server, "apps")
    assert "hot/web" in listing.stdout and "v2" in listing.stdout and "serving" in listing.stdout
    again = cli(server, "deploy", str(tmp_path / "v2.yaml"))
    assert "version 2 (unchanged)" in again.stdout
    assert cli(server, "rollback", "hot/web").returncode == 0
    assert {body(server) for _ in range(10)} == {"v1"}
    assert cli(server, "rollback", "hot/web").returncode == 0  # rolling back twice returns
    assert {body(server) for _ in range(10)} == {"v2"}
    assert cli(server, "delete", "hot/web").returncode == 0
    assert httpx.get(server.url + "/").status_code == 404
    missing = cli(server, "rollback", "hot/web")
    assert missing.returncode == 1 and "hot/web" in missing.stderr


def test_canary_by_weight_and_header_then_promote_or_abort(serve: Serve, tmp_path: Path) -> None:
    server = serve(str(manifest_for(tmp_path, "stable")), "--allow-files", str(tmp_path))
    result = cli(server, "deploy", str(manifest_for(tmp_path, "canary")), "--canary", "30",
                 "--canary-header", "X-Canary: yes")
    assert result.returncode == 0, result.stderr
    seen = [body(server) for _ in range(300)]
    share = seen.count("canary") / len(seen)
    assert 0.15 < share < 0.45, share  # 30% of requests, give or take
    assert {body(server, **{"X-Canary": "yes"}) for _ in range(10)} == {"canary"}
    app = server.admin("GET", "/v1/apps/hot%2Fweb").json()
    assert app["canary"]["weight"] == 30 and app["canary"]["header"] == "X-Canary: yes"
    assert cli(server, "abort", "hot/web").returncode == 0
    assert {body(server) for _ in range(20)} == {"stable"}
    cli(server, "deploy", str(tmp_path / "canary.yaml"), "--canary", "10")
    assert cli(server, "promote", "hot/web").returncode == 0
    assert {body(server) for _ in range(20)} == {"canary"}
    assert server.admin("GET", "/v1/apps/hot%2Fweb").json()["previous"]["version"] == 1


@pytest.mark.parametrize("breakage", ["missing module", "bad manifest", "compile error", "bad route"])
def test_a_failed_deploy_leaves_the_running_version(serve: Serve, tmp_path: Path, breakage: str) -> None:
    server = serve(str(manifest_for(tmp_path, "good")), "--allow-files", str(tmp_path))
    bad = tmp_path / "bad.yaml"
    if breakage == "missing module":
        write_manifest(bad, [{"name": "web", "properties": {"moduleURL": str(tmp_path / "gone.wasm")}}], name="hot")
    elif breakage == "bad manifest":
        write_manifest(bad, [{"name": "web", "properties": {"moduleURL": "x.wasm", "memoryLimit": "lots"}}],
                       name="hot")
    elif breakage == "compile error":
        (tmp_path / "broken.wasm").write_bytes(b"\0asm\x01\0\0\0\x01\xff")
        write_manifest(bad, [{"name": "web", "properties": {"moduleURL": str(tmp_path / "broken.wasm")}}],
                       name="hot")
    else:
        write_manifest(bad, [{"name": "web", "properties": {"moduleURL": str(EXAMPLES / "hello" / "hello.wasm"),
                                                            "route": "no-slash"}}], name="hot")
    result = cli(server, "deploy", str(bad))
    assert result.returncode == 1
    assert "error:" in result.stderr and len(result.stderr) > 20
    assert {body(server) for _ in range(10)} == {"good"}
    assert server.admin("GET", "/v1/apps/hot%2Fweb").json()["version"] == 1


def test_admin_api_needs_the_token(serve: Serve, tmp_path: Path) -> None:
    server = serve(str(manifest_for(tmp_path, "v1")))
    assert httpx.get(server.admin_url + "/v1/apps").status_code == 401
    assert httpx.get(server.admin_url + "/v1/apps", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert server.admin("GET", "/v1/apps").status_code == 200
    assert (server.state_dir / "admin-token").stat().st_mode & 0o077 == 0
    spec = httpx.get(server.admin_url + "/openapi.json").json()
    assert spec["openapi"].startswith("3.1") and "/v1/deploy" in spec["paths"]


def test_logs_of_an_app(serve: Serve, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.yaml", [
        {"name": "talker", "properties": {"moduleURL": str(GUESTS / "stderr.wasm")}},
        {"name": "loop", "properties": {"moduleURL": str(GUESTS / "loop.wasm"), "timeout": "100ms"}}], name="lg")
    server = serve(str(manifest))
    httpx.get(server.url + "/talker")
    httpx.get(server.url + "/loop")
    time.sleep(0.3)
    talker = cli(server, "logs", "lg/talker")
    assert "stderr guest: first line" in talker.stdout
    loop = cli(server, "logs", "lg/loop")
    assert "cause=timeout" in loop.stdout and "stderr guest" not in loop.stdout


def test_restart_after_kill_9_serves_the_same(serve: Serve, tmp_path: Path) -> None:
    state = tmp_path / "state"
    port = free_port()
    first = serve(str(manifest_for(tmp_path, "v1")), "--allow-files", str(tmp_path), state_dir=state, port=port)
    cli(first, "deploy", str(manifest_for(tmp_path, "v2")))
    cli(first, "deploy", str(manifest_for(tmp_path, "v3")), "--canary", "25", "--canary-header", "X-Try: 1")
    before = first.admin("GET", "/v1/apps").json()
    os.killpg(first.process.pid, signal.SIGKILL)  # supervisor and workers, no goodbye
    first.process.wait()
    second = serve(state_dir=state, port=free_port())  # no manifest: what was served before
    after = second.admin("GET", "/v1/apps").json()
    assert [(a["name"], a["version"], a["digest"], a["canary"], a["previous"]) for a in after] == \
           [(a["name"], a["version"], a["digest"], a["canary"], a["previous"]) for a in before]
    assert body(second) in ("v2", "v3")
    assert {body(second, **{"X-Try": "1"}) for _ in range(5)} == {"v3"}


def test_zero_failed_requests_across_20_deploys_and_2_rollbacks(serve: Serve, tmp_path: Path) -> None:
    server = serve(str(manifest_for(tmp_path, "v0")), "--allow-files", str(tmp_path), workers=2)
    # Timeline of changes: (started, acknowledged, label now live).
    timeline: list[tuple[float, float, str]] = [(0.0, 0.0, "v0")]
    results: list[tuple[float, float, int, str]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    response = client.get(server.url + "/")
                    results.append((sent, time.monotonic(), response.status_code, response.text.strip()))
                except httpx.HTTPError as exc:
                    results.append((sent, time.monotonic(), 0, repr(exc)))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        labels = ["v0"]
        for number in range(1, 21):
            label = f"v{number}"
            manifest = manifest_for(tmp_path, label)
            started = time.monotonic()
            assert cli(server, "deploy", str(manifest)).returncode == 0
            timeline.append((started, time.monotonic(), label))
            labels.append(label)
            if number in (10, 20):
                started = time.monotonic()
                assert cli(server, "rollback", "hot/web").returncode == 0
                timeline.append((started, time.monotonic(), labels[-2]))
                labels.append(labels[-2])
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    failures = [r for r in results if r[2] != 200]
    assert failures == [], failures[:5]
    assert len(results) > 200

    def live(sent: float, received: float, label: str) -> bool:
        """Was ``label`` live at some moment of [sent, received]?"""
        for index, (started, _, now_live) in enumerate(timeline):
            superseded = timeline[index + 1][1] if index + 1 < len(timeline) else float("inf")
            if now_live == label and started <= received and superseded >= sent:
                return True
        return False

    stale = [r for r in results if not live(r[0], r[1], r[3])]
    assert stale == [], stale[:5]
    print(f"{len(results)} requests across 20 deploys and 2 rollbacks, none failed")


def test_watch_redeploys_on_change(serve: Serve, tmp_path: Path) -> None:
    manifest = manifest_for(tmp_path, "first")
    server = serve(str(manifest), "--watch")
    assert body(server) == "first"
    label_module(tmp_path / "first.wasm", "edited")  # same path, new bytes
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and body(server) != "edited":
        time.sleep(0.2)
    assert body(server) == "edited"
    (tmp_path / "first.yaml").write_text("not: [valid")  # a broken edit keeps what is served
    time.sleep(2.5)
    assert body(server) == "edited"
    assert "does not deploy" in server.output()


def _limited(tmp_path: Path, label: str, properties: dict[str, object]) -> Path:
    module = label_module(tmp_path / f"{label}.wasm", label)
    return write_manifest(tmp_path / f"{label}.yaml", [{"name": "web", "properties": {
        "moduleURL": str(module), "route": "/", **properties}}], name="hot")


def test_a_deploy_that_changes_the_rate_limit_is_enforced_at_once(serve: Serve, tmp_path: Path) -> None:
    """Guards were cached by app name: a new rateLimit waited for a worker restart."""
    server = serve(str(_limited(tmp_path, "v1", {"rateLimit": {"perApp": 1000}})), "--allow-files", str(tmp_path),
                   workers=1)
    assert {httpx.get(server.url + "/").status_code for _ in range(20)} == {200}
    deployed = cli(server, "deploy", str(_limited(tmp_path, "v2", {"rateLimit": {"perApp": 1, "perAppBurst": 1}})))
    assert deployed.returncode == 0, deployed.stderr
    statuses = [httpx.get(server.url + "/").status_code for _ in range(20)]
    assert statuses.count(429) >= 15, statuses  # one token a second, burst of one
    deployed = cli(server, "deploy", str(_limited(tmp_path, "v3", {"rateLimit": {"perApp": 1000}})))
    assert deployed.returncode == 0, deployed.stderr
    assert {httpx.get(server.url + "/").status_code for _ in range(20)} == {200}  # and lifted at once


def test_a_deploy_that_changes_concurrency_is_enforced_at_once(serve: Serve, tmp_path: Path) -> None:
    slow = GUESTS / "slow.wasm"
    first = write_manifest(tmp_path / "a.yaml", [{"name": "web", "properties": {
        "moduleURL": str(slow), "route": "/", "concurrency": {"max": 4, "queue": 16}}}], name="hot")
    server = serve(str(first), "--allow-files", str(GUESTS), workers=1)  # slow.wasm, deployed through the API
    assert httpx.get(server.url + "/?ms=1").status_code == 200  # the worker has made the app's guard
    second = write_manifest(tmp_path / "b.yaml", [{"name": "web", "properties": {
        "moduleURL": str(slow), "route": "/", "concurrency": {"max": 1, "queue": 0},
        "environment": [{"name": "V", "value": "2"}]}}], name="hot")
    deployed = cli(server, "deploy", str(second))
    assert deployed.returncode == 0, deployed.stderr
    results: list[int] = []

    def call() -> None:
        results.append(httpx.get(server.url + "/?ms=800", timeout=30).status_code)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results).count(503) >= 2, results  # one slot, no queue: the others are refused
