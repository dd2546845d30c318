"""``wasmlet serve --server granian``: granian's own workers serve the plan (no supervisor features)."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from tests.conftest import free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_granian_workers_serve_the_plan_and_stop_on_sigterm(tmp_path: Path) -> None:
    # Its workers used to be forked from a process that had compiled modules with wasmtime:
    # they hung in their first wasmtime call and never answered.
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "wasmlet", "serve", str(EXAMPLES / "hello" / "app.yaml"), "--server", "granian",
         "--workers", "2", "--listen", f"127.0.0.1:{port}", "--admin-listen", "none",
         "--state-dir", tempfile.mkdtemp(prefix="wasmlet-test-state-", dir=tmp_path)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        response = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert response is not None, (tmp_path / "serve.log").read_text(errors="replace")
        assert response.status_code == 200
        assert "Hello" in response.text
        assert all(httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200 for _ in range(20))
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
