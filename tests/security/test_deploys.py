"""Issue 14, High 3: a deploy that never returned, and the admin calls that waited behind it.

The attack: a component whose inner core module has a `start` function that
loops. Its trial instantiation at deploy ran with no epoch ticker, so it
never stopped: `wasmlet run --timeout 1s` hung, `wasmlet deploy` hung, and as
the deploy held the control plane's lock, so did every other admin call
(`delete` of another app). Now the trial runs under the component's timeout
with a ticker of its own, and an admin call waits for another at most
`ControlPlane.lock_timeout` (5 s) before answering 503 "busy, try again".
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import yaml
from tests.conftest import EXAMPLES, GUESTS, Server, write_manifest

Serve = Callable[..., Server]
START_LOOP = GUESTS / "security" / "start_loop.wasm"


def admin(server: Server, method: str, path: str, timeout: float, **kwargs: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/yaml"}
    return httpx.request(method, server.admin_url + path, headers=headers, timeout=timeout,  # type: ignore[arg-type]
                         **kwargs)


def looping_manifest(timeout: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "core.oam.dev/v1beta1", "kind": "Application", "metadata": {"name": "evil"},
        "spec": {"components": [{"name": "start", "type": "wasm", "properties": {
            "moduleURL": str(START_LOOP), "route": "/evil", "timeout": timeout}}]},
    })


def test_wasmlet_run_stops_a_start_function_at_its_timeout() -> None:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "wasmlet", "run", str(START_LOOP), "--timeout", "1s"],
                            capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started
    assert result.returncode != 0
    assert "did not start within 1s" in result.stderr, result.stderr
    assert took < 20, took  # interpreter start-up and a 1 s trial; it used to run for ever


def test_a_looping_deploy_fails_and_other_admin_calls_never_wait_unbounded(serve: Serve, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "ok.yaml", [
        {"name": "hello", "properties": {"moduleURL": str(EXAMPLES / "hello" / "hello.wasm"), "route": "/hello"}},
        {"name": "other", "properties": {"moduleURL": str(EXAMPLES / "hello" / "hello.wasm"), "route": "/other"}},
    ], name="ok")
    # The admin API may name modules only in folders the operator allows.
    server = serve(str(manifest), "--allow-files", str(EXAMPLES / "hello"), "--allow-files", str(START_LOOP.parent))

    # A short timeout: the deploy is refused, naming the cause, within seconds.
    started = time.monotonic()
    refused = admin(server, "POST", "/v1/deploy", 30, content=looping_manifest("1s"))
    assert refused.status_code == 400, refused.text
    assert "did not start within 1s" in refused.json()["error"]
    assert time.monotonic() - started < 10

    # A 10 s timeout holds the control plane for 10 s: a delete meanwhile is told "busy", it does not wait.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(admin, server, "POST", "/v1/deploy", 40, content=looping_manifest("10s"))
        time.sleep(1.5)  # the slow deploy is in its trial start
        assert not slow.done()
        started = time.monotonic()
        busy = admin(server, "DELETE", "/v1/apps/ok/other", 20)
        waited = time.monotonic() - started
        assert busy.status_code == 503, busy.text
        assert "busy" in busy.json()["error"] and "deploy of evil/start" in busy.json()["error"]
        assert waited < 8, waited  # the 5 s lock wait, not the deploy's 10 s
        assert httpx.get(server.url + "/other", timeout=10).status_code == 200  # nothing was changed
        assert admin(server, "GET", "/v1/apps", 10).status_code == 200  # reads never wait
        assert slow.result().status_code == 400
    assert admin(server, "DELETE", "/v1/apps/ok/other", 20).status_code == 204
    assert httpx.get(server.url + "/hello", timeout=10).status_code == 200
