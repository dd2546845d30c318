"""The Spin Python example over real HTTP: two apps, two worker processes, a restart.

``examples/spin-python`` (built from source, cached by tests/guests/toolchains.py)
deployed twice by ``wasmlet serve`` with two workers: each app counts in its
own SQLite file under the state directory, both workers share it, and the
count survives a restart of the host.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
from tests.conftest import Server
from tests.guests import toolchains

MANIFEST = """\
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {name}
spec:
  components:
    - name: web
      type: wasm
      properties:
        moduleURL: spin.wasm
        memoryLimit: "128Mi"
        timeout: "30s"
        route: /{name}
        environment:
          - name: {variable}
            value: "hello from {name}"
"""


def count(server: Server, app: str) -> tuple[str, int]:
    response = httpx.post(f"{server.url}/{app}/x", content=b"ping", timeout=60)
    assert response.status_code == 200, response.text
    greeting, counted = response.text.splitlines()[:2]
    return greeting, int(counted.removeprefix("count="))


def test_counters_per_app_across_workers_and_restarts(serve: Callable[..., Server], tmp_path: Path) -> None:
    shutil.copy(toolchains.spin_python(), tmp_path / "spin.wasm")
    manifest = tmp_path / "apps.yaml"
    manifest.write_text(MANIFEST.format(name="alpha", variable="GREETING") + "---\n"
                        + MANIFEST.format(name="beta", variable="SPIN_VARIABLE_GREETING"))
    state = tmp_path / "state"
    server = serve(str(manifest), workers=2, state_dir=state, ready=False)  # compiling 37 MB takes a while
    server.wait_ready(timeout=300)
    assert [count(server, "alpha") for _ in range(6)] == [("greeting=hello from alpha", n) for n in range(1, 7)]
    assert count(server, "beta") == ("greeting=hello from beta", 1)
    assert sorted(p.name for p in (state / "kv").glob("*.sqlite")) == ["alpha.sqlite", "beta.sqlite"]
    assert server.stop() == 0
    again = serve(workers=2, state_dir=state, ready=False)
    again.wait_ready(timeout=300)
    assert count(again, "alpha")[1] == 7
    assert count(again, "beta")[1] == 2
