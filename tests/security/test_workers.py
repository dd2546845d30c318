"""Issue 14, Medium 7: the supervisor can multiply workers, and restarts with no backoff.

The attack: make every new worker fail to start while the running one keeps
serving (here: the runtime plan file damaged, which the running worker only
refuses to reload), then make the watchdog recycle the running one (here:
the test-side leak of tests/telemetry/leaky). Each failed replacement used to
stay in the worker list and be restarted for ever beside the worker it was to
replace (six workers for `--workers 1` after five failed recycles), and a
worker that kept dying was restarted every 0.2 s without end. Now at most one
replacement runs at a time, a failed one is dropped with a growing pause
before the next recycle, and restarts back off exponentially.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
from tests.conftest import EXAMPLES, Server

Serve = Callable[..., Server]
LEAKY = Path(__file__).resolve().parents[1] / "telemetry" / "leaky"


def workers(server: Server) -> set[int]:
    """The live worker processes of ``server``'s supervisor."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == server.process.pid and fields[0] != "Z" and b"wasmlet.server._worker" in cmdline:
            found.add(int(entry.name))
    return found


def start(serve: Serve, tmp_path: Path, leak: bool) -> tuple[Server, Path]:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {"TMPDIR": str(scratch)}  # so that the test finds the supervisor's runtime folder
    if leak:
        env |= {"PYTHONPATH": os.pathsep.join(filter(None, [str(LEAKY), os.environ.get("PYTHONPATH")])),
                "WASMLET_TEST_LEAK_BYTES_PER_SECOND": str(20 << 20)}
    server = serve(str(EXAMPLES / "hello" / "app.yaml"), "--watchdog-window", "2", "--watchdog-interval", "0.25",
                   "--watchdog-warmup", "0", workers=1, extra_env=env)
    [plan] = scratch.glob("wasmlet-run-*/plan.json")
    return server, plan


def test_failed_replacements_are_dropped_and_recycling_backs_off(serve: Serve, tmp_path: Path) -> None:
    server, plan = start(serve, tmp_path, leak=True)
    plan.write_text("{ damaged")  # every new worker now fails at start-up; the running one keeps its plan
    most, statuses = 0, []
    deadline = time.monotonic() + 16  # bounded: the leak stops at 256 MiB, about 13 s in
    while time.monotonic() < deadline:
        most = max(most, len(workers(server)))
        statuses.append(httpx.get(server.url + "/", headers={"connection": "close"}, timeout=10).status_code)
        time.sleep(0.1)
    log = server.output()
    failed = log.count("failed to start")
    assert "recycling it" in log and failed >= 1, log[-3000:]  # the attack happened
    assert most <= 2, most  # the worker and at most one replacement, never more
    assert failed <= 4, failed  # 5 s, then 10 s before the next try: not one every watchdog sample
    assert set(statuses) == {200}  # the old worker served throughout
    assert len(workers(server)) == 1


def test_a_worker_that_keeps_dying_is_restarted_with_growing_pauses(serve: Serve, tmp_path: Path) -> None:
    server, plan = start(serve, tmp_path, leak=False)
    plan.write_text("{ damaged")
    [first] = workers(server)
    os.kill(first, signal.SIGKILL)
    time.sleep(18)
    # From the supervisor's log: a worker forked from the zygote (issue 13) fails in milliseconds, too
    # fast for a poll of /proc to see.
    records = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    when = [(datetime.fromisoformat(r["ts"].replace("Z", "+00:00")).timestamp(), r["msg"]) for r in records
            if r.get("logger") == "wasmlet.server"]
    starts = [t for t, msg in when if re.fullmatch(r"worker \d+ started \(.*\)", msg)][1:]  # after the first
    exits = [t for t, msg in when if re.match(r"worker \d+ exited with", msg)]
    # The pause between a worker's exit and the next start: 0.25, 0.5, 1, 2 s... (each start-up
    # takes a second or two more); it was a fixed 0.2 s.
    pauses = [next(s - e for s in starts if s >= e) for e in exits if any(s >= e for s in starts)]
    print("pauses before each restart:", [round(p, 2) for p in pauses])
    assert len(pauses) >= 3, (exits, starts)  # the restarts happened, and failed
    assert all(b > a - 0.15 for a, b in itertools.pairwise(pauses)), pauses
    assert max(pauses) >= 1.5, pauses
    assert len(starts) <= 8, len(starts)
