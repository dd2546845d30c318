"""The zygote's head start (``wasmlet._early``): its metrics folder, and a fork and exec with ``os`` alone.

Every test that runs ``python -m wasmlet serve`` goes through it too (the console script,
``wasmlet._launch``); these check what those would not see: the folder's name and place as
``tempfile`` would choose them, the descriptors the zygote inherits, and the hand-over to
``_prefork`` in a process of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from wasmlet import _early
from wasmlet._multiproc import _OURS, MULTIPROC_ENV

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the zygote is Linux only")


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)


def test_the_metrics_folder_is_named_and_placed_as_tempfile_would(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    path = _early.make_metrics_dir()
    assert path is not None and Path(path).parent == tmp_path
    assert os.environ[MULTIPROC_ENV] == path
    assert Path(path).stat().st_mode & 0o777 == 0o700
    match = _OURS.match(Path(path).name)  # so sweep_stale_dirs removes it once this process is gone
    assert match and int(match["pid"]) == os.getpid() and Path(path).name.startswith("wasmlet-metrics-")


def test_an_unusable_temporary_folder_is_passed_over_as_gettempdir_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None) -> None:
    file = tmp_path / "a-file"
    file.write_text("")
    monkeypatch.setenv("TMPDIR", str(file))  # not a folder
    monkeypatch.setenv("TEMP", str(tmp_path / "missing"))
    monkeypatch.setenv("TMP", str(tmp_path))
    path = _early.make_metrics_dir()
    assert path is not None and Path(path).parent == tmp_path
    assert Path(path).parent.resolve() == Path(tempfile.gettempdir()).resolve() or "TMPDIR" in os.environ


def test_two_folders_never_collide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    made = {_early.make_metrics_dir() for _ in range(200)}
    assert len(made) == 200 and None not in made


# A process of its own (forking the test runner, which has threads, is what _early must not do):
# an extra inheritable descriptor open, the head start taken, then the zygote adopted by _prefork,
# ready, and its descriptors listed.
_SPAWN = """
import json, os, sys
leaked_r, leaked_w = os.pipe()
os.set_inheritable(leaked_w, True)  # as a careless caller of `wasmlet serve` might leave one
from wasmlet import _early
assert _early.make_metrics_dir() is not None
spawned = _early.spawn_zygote()
from wasmlet._prefork import take_early
zygote = take_early()
assert zygote is not None and zygote.pid == spawned.pid
ready = zygote.ready(60)
def target(pid, fd):
    return os.readlink(f"/proc/{pid}/fd/{fd}")
theirs = [target(zygote.pid, n) for n in os.listdir(f"/proc/{zygote.pid}/fd")]
args = open(f"/proc/{zygote.pid}/cmdline", "rb").read().split(b"\\0")
control = int(args[args.index(b"--control") + 1])
print(json.dumps({"ready": ready, "theirs": theirs, "leaked": target("self", leaked_w),
                  "control": target(zygote.pid, control), "ours": target("self", zygote.channel.fileno()),
                  "parent": int(args[args.index(b"--parent") + 1]), "me": os.getpid(),
                  "metrics": os.environ["PROMETHEUS_MULTIPROC_DIR"]}))
print(json.dumps({"exit": zygote.close()}))
assert take_early() is None  # once
"""


@linux_only
def test_the_zygote_keeps_only_its_channel_and_is_adopted_ready(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path), "WASMLET_ZYGOTE": "1"}
    env.pop(MULTIPROC_ENV, None)
    done = subprocess.run([sys.executable, "-c", _SPAWN], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report, closed = (json.loads(line) for line in done.stdout.splitlines()[-2:])
    assert report["ready"] is True, done.stderr  # it imported everything, with the folder the parent made
    assert report["leaked"].startswith("pipe:") and report["leaked"] not in report["theirs"]  # close_fds, as Popen
    assert report["control"].startswith("socket:") and report["control"] != report["ours"]  # its end of the pair
    assert report["ours"] not in report["theirs"]  # and not this end
    assert report["parent"] == report["me"]
    assert report["metrics"].startswith(str(tmp_path))
    assert closed["exit"] == 0  # it exits when its channel closes


@linux_only
def test_no_zygote_is_spawned_when_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASMLET_ZYGOTE", "0")
    assert _early.spawn_zygote() is None
    assert _early.taken_spawn() is None
