"""Metrics, logs, the watchdog and `wasmlet top` against real `wasmlet serve` processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import EXAMPLES, GUESTS, Server, write_manifest

Serve = Callable[..., Server]


def samples(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(server.admin_url + "/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def mixed_host(serve: Serve, tmp_path: Path) -> Server:
    manifest = write_manifest(tmp_path / "m.yaml", [
        {"name": "hello", "properties": {"moduleURL": str(EXAMPLES / "hello" / "hello.wasm"), "route": "/"}},
        {"name": "loop", "properties": {"moduleURL": str(GUESTS / "loop.wasm"), "timeout": "200ms"}},
        {"name": "talker", "properties": {"moduleURL": str(GUESTS / "stderr.wasm")}},
        {"name": "burn", "properties": {"moduleURL": str(GUESTS / "burn.wasm")}},
    ], name="obs")
    return serve(str(manifest), workers=2)


def test_metrics_endpoint(mixed_host: Server) -> None:
    for _ in range(5):
        assert httpx.get(mixed_host.url + "/").status_code == 200
    assert httpx.get(mixed_host.url + "/loop").status_code == 504
    found = samples(mixed_host)
    assert value(found, "wasmlet_requests_total", app="obs/hello", route="/", status="200") == 5
    assert value(found, "wasmlet_requests_total", app="obs/loop", route="/loop", status="504") == 1
    assert value(found, "wasmlet_guest_failures_total", app="obs/loop", cause="timeout") == 1
    assert value(found, "wasmlet_instantiate_duration_seconds_count", app="obs/hello") == 5
    # Sub-millisecond buckets exist and hold the cold starts.
    assert value(found, "wasmlet_instantiate_duration_seconds_bucket", app="obs/hello", le="0.001") >= 1
    assert value(found, "wasmlet_request_duration_seconds_count", app="obs/hello") == 5
    assert value(found, "wasmlet_guest_memory_high_water_bytes", app="obs/hello") == 131072
    assert value(found, "wasmlet_guest_cpu_seconds_count", app="obs/hello") == 5
    assert value(found, "wasmlet_inflight_requests") == 0
    assert value(found, "wasmlet_cache_lookups_total", result="miss") >= 4  # compiled at deploy
    rss = [v for (name, _), v in found.items() if name == "wasmlet_worker_rss_bytes"]
    assert len(rss) == 2 and all(v > 1e6 for v in rss)
    # The public listener does not serve metrics (here the app at / answers); the admin listener does.
    assert httpx.get(mixed_host.url + "/metrics").text == "Hello, world!\n"


def test_json_logs_carry_app_request_and_trace(mixed_host: Server) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01", "x-request-id": "req-42"}
    response = httpx.get(mixed_host.url + "/talker", headers=headers)
    assert response.status_code == 201
    assert response.headers["x-request-id"] == "req-42"
    assert httpx.get(mixed_host.url + "/loop", headers={"x-request-id": "req-43"}).status_code == 504
    time.sleep(0.3)
    entries = [json.loads(line) for line in mixed_host.output().splitlines() if line.startswith("{")]
    stderr_lines = [e for e in entries if e.get("request_id") == "req-42"]
    assert [e["msg"] for e in stderr_lines] == [
        "app=obs/talker stderr: stderr guest: first line",
        "app=obs/talker stderr: stderr guest: second line",
    ]
    assert all(e["app"] == "obs/talker" and e["trace_id"] == trace_id for e in stderr_lines)
    (failure,) = [e for e in entries if e.get("request_id") == "req-43"]
    assert (failure["app"], failure["cause"], failure["status"], failure["level"]) == ("obs/loop", "timeout", 504,
                                                                                       "warning")


def test_cpu_preemption_signal(mixed_host: Server) -> None:
    # Three requests in a row above 50 ms of CPU; one worker, so the streak is in one process.
    # The guest burns 200 ms of wall time: its thread's CPU time stays above 50 ms even when
    # another process takes half of the machine's two cores.
    with httpx.Client(timeout=30) as client:  # one connection: the same worker answers all three
        for _ in range(3):
            assert client.get(mixed_host.url + "/burn?ms=200").status_code == 200
    time.sleep(0.3)
    found = samples(mixed_host)
    assert value(found, "wasmlet_cpu_preemptions_total", app="obs/burn") == 1
    assert value(found, "wasmlet_app_degraded", app="obs/burn") == 1
    apps = {a["name"]: a for a in mixed_host.admin("GET", "/v1/apps").json()}
    assert apps["obs/burn"]["state"] == "degraded"
    assert apps["obs/hello"]["state"] == "serving"
    assert "app=obs/burn degraded" in mixed_host.output()


def test_cheap_requests_do_not_trip_the_signal(mixed_host: Server) -> None:
    with httpx.Client() as client:
        for _ in range(6):
            assert client.get(mixed_host.url + "/burn?ms=5").status_code == 200
    assert value(samples(mixed_host), "wasmlet_cpu_preemptions_total", app="obs/burn") == 0


def test_top_once(mixed_host: Server) -> None:
    with httpx.Client() as client:
        for _ in range(20):
            client.get(mixed_host.url + "/")
    result = subprocess.run(
        [sys.executable, "-m", "wasmlet", "top", "--admin", mixed_host.admin_url, "--once", "--interval", "0.5"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "obs/hello" in result.stdout and "REQ/S" in result.stdout


def test_watchdog_recycles_a_leaking_worker_without_losing_requests(serve: Serve) -> None:
    # Test-only fault injection (tests/telemetry/leaky/sitecustomize.py): each worker leaks 20 MiB/s.
    leaky = Path(__file__).resolve().parent / "leaky"
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(leaky), os.environ.get("PYTHONPATH")])),
           "WASMLET_TEST_LEAK_BYTES_PER_SECOND": str(20 << 20)}
    # No warm-up: this worker leaks from its first second (a healthy one is given 3 minutes to fill its pools).
    server = serve(str(EXAMPLES / "hello" / "app.yaml"), "--watchdog-window", "3", "--watchdog-interval", "0.25",
                   "--watchdog-warmup", "0", extra_env=env)
    deadline = time.monotonic() + 40
    statuses: list[int] = []
    while time.monotonic() < deadline and "recycling it" not in server.output():
        # A fresh connection per request: an idle keep-alive connection to a
        # draining worker can be closed under a client (see docs/observability.md).
        statuses.append(httpx.get(server.url + "/", headers={"connection": "close"}).status_code)
        time.sleep(0.01)
    assert "recycling it" in server.output(), "the watchdog never fired"
    for _ in range(200):  # keep asking while the old worker drains and the new one serves
        statuses.append(httpx.get(server.url + "/", headers={"connection": "close"}).status_code)
    assert set(statuses) == {200}
    time.sleep(1)
    assert "stopped (exit status" in server.output()


def test_promtool_rules() -> None:
    rules = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
    check = subprocess.run(["promtool", "check", "rules", "wasmlet-rules.yml"], cwd=rules,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 6 rules found" in check.stdout
    test = subprocess.run(["promtool", "test", "rules", "wasmlet-rules.test.yml"], cwd=rules,
                          capture_output=True, text=True)
    assert test.returncode == 0, test.stdout + test.stderr
