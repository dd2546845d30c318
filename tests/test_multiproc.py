"""The sweep of what killed hosts left in the temp and shared-memory folders (pure file-system checks)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from wasmlet._multiproc import sweep_stale_dirs


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=30)
    return process.pid  # reaped: no such process (until the kernel reuses the number)


def test_only_wasmlet_entries_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead, alive = dead_pid(), os.getpid()
    gone = [f"wasmlet-run-{dead}-abcd_123", f"wasmlet-metrics-{dead}-0pry9xtm", f"wasmlet-{dead}-4b89x0y1",
            f"wasmlet-plan-{dead}-k2j4h5g6.json"]
    kept = [f"wasmlet-run-{alive}-abcd_123", f"wasmlet-{alive}-4b89x0y1",  # a live process's
            "wasmlet-metrics-0pry9xtm",  # no pid: an older wasmlet's, whose owner cannot be told
            f"wasmlet-test-state-{dead}", f"wasmlet-{dead}-short", f"other-{dead}-abcdefgh", "wasmlet-0-abcdefgh"]
    for name in gone + kept:
        if name.endswith(".json"):
            (tmp_path / name).write_text("{}")
        else:
            (tmp_path / name).mkdir()
            (tmp_path / name / "inside").write_text("x")
    removed = sweep_stale_dirs([str(tmp_path)])
    assert sorted(Path(p).name for p in removed) == sorted(gone)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_a_zombie_counts_as_dead(tmp_path: Path) -> None:
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # exits at once; not reaped until wait()
    try:
        deadline = time.monotonic() + 30
        while Path(f"/proc/{zombie.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.05)
        (tmp_path / f"wasmlet-{zombie.pid}-4b89x0y1").mkdir()
        assert len(sweep_stale_dirs([str(tmp_path)])) == 1
    finally:
        zombie.wait(timeout=30)
