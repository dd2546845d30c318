"""The memory watchdog's warm-up and its defaults, defined once (issue 10, item 10).

The defaults themselves were chosen by measuring a healthy host for ten
minutes (``bench/watchdog_baseline.py``, figures in ``docs/benchmarks.md``):
a test cannot wait that long, so here the warm-up is shortened and a worker
made to leak with the test-side injection in ``tests/telemetry/leaky``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from tests.conftest import EXAMPLES, Server, write_manifest

from wasmlet.server import WATCHDOG_INTERVAL, WATCHDOG_MEMORY_GROWTH, WATCHDOG_WARMUP, WATCHDOG_WINDOW, ServeSettings

LEAKY = Path(__file__).resolve().parent / "leaky"


def test_a_leaking_worker_is_judged_only_after_its_warmup(serve: Callable[..., Server]) -> None:
    # Each worker leaks 5 MiB/s from its start (for about 50 s): with a 3 s window and no warm-up the
    # watchdog recycles it 3 to 7 s after the host starts (tests/telemetry/test_observability.py).
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(LEAKY), os.environ.get("PYTHONPATH")])),
           "WASMLET_TEST_LEAK_BYTES_PER_SECOND": str(5 << 20)}
    warmup = 15.0
    started = time.monotonic()
    server = serve(str(EXAMPLES / "hello" / "app.yaml"), "--watchdog-window", "3", "--watchdog-interval", "0.25",
                   "--watchdog-warmup", str(warmup), extra_env=env)
    fired_at = None
    deadline = started + 60
    while time.monotonic() < deadline:
        if "recycling it" in server.output():
            fired_at = time.monotonic() - started
            break
        assert httpx.get(server.url + "/", headers={"connection": "close"}).status_code == 200
        time.sleep(0.05)
    assert fired_at is not None, f"the watchdog never fired:\n{server.output()}"
    # A lower bound only: a slow machine makes it later, never earlier.
    assert fired_at >= warmup, f"recycled {fired_at:.1f} s after start, inside the {warmup:g} s warm-up"
    assert re.search(r"watchdog: worker \d+ memory grows [\d.]+ MiB/min \(threshold 2\.0\); recycling it",
                     server.output())


def test_growth_is_fitted_between_deploys(serve: Callable[..., Server], tmp_path: Path) -> None:
    # A deploy loads and drops versions: a step in a worker's RSS, which a fit across it reads as growth
    # (bench/watchdog_baseline.py). So each deploy restarts the fit; while deploys come faster than the
    # window fills, nothing is judged, and a real leak is judged once they stop.
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(LEAKY), os.environ.get("PYTHONPATH")])),
           "WASMLET_TEST_LEAK_BYTES_PER_SECOND": str(4 << 20)}
    server = serve(str(EXAMPLES / "hello" / "app.yaml"), "--watchdog-window", "6", "--watchdog-interval", "0.25",
                   "--watchdog-warmup", "0", "--allow-files", str(tmp_path), "--allow-files", str(EXAMPLES),
                   extra_env=env)
    storm_end = time.monotonic() + 12  # without the restarts, the leak is judged about 5 s after start
    n = 0
    while time.monotonic() < storm_end:
        n += 1
        manifest = write_manifest(tmp_path / "hello.yaml", [{"name": "hello", "properties": {
            "moduleURL": str(EXAMPLES / "hello" / "hello.wasm"), "environment": [{"name": "N", "value": str(n)}]}}],
            name="hello")
        answer = server.admin("POST", "/v1/deploy", params={"source": str(manifest)}, content=manifest.read_bytes(),
                              headers={"Content-Type": "application/yaml"})
        assert answer.status_code == 200, answer.text
        assert "recycling it" not in server.output(), f"judged during the deploys (deploy {n})"
        time.sleep(0.5)
    deadline = time.monotonic() + 40
    while "recycling it" not in server.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "recycling it" in server.output(), "the leak was not judged once the deploys stopped"


def test_the_defaults_are_the_settings_and_the_help(tmp_path: Path) -> None:
    settings = ServeSettings()
    assert settings.watchdog_memory_growth == 2 << 20 and WATCHDOG_MEMORY_GROWTH == "2Mi"
    assert (settings.watchdog_window, settings.watchdog_interval, settings.watchdog_warmup) == \
           (WATCHDOG_WINDOW, WATCHDOG_INTERVAL, WATCHDOG_WARMUP)
    shown = subprocess.run([sys.executable, "-m", "wasmlet", "serve", "--help"], capture_output=True, text=True,
                           timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    for option, value in (("--watchdog-memory-growth", WATCHDOG_MEMORY_GROWTH), ("--watchdog-window", WATCHDOG_WINDOW),
                          ("--watchdog-interval", WATCHDOG_INTERVAL), ("--watchdog-warmup", WATCHDOG_WARMUP)):
        assert re.search(rf"{option} \S+ [^\[]*\[default: {re.escape(str(value))}\]", text), option


def test_a_negative_warmup_is_refused_with_the_flag(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "wasmlet", "serve", str(EXAMPLES / "hello" / "app.yaml"),
                             "--listen", "127.0.0.1:0", "--admin-listen", "none", "--watchdog-warmup", "-1",
                             "--state-dir", str(tmp_path / "state")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "error: --watchdog-warmup: expected seconds, 0 or more, got -1" in result.stderr
