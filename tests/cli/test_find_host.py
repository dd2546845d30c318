"""Issue 10, item 1: one running host is reachable by the client commands with no flags, and
every error prints the real path it looked at (the record, the state folder, the token file)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from tests.cli.conftest import User
from tests.conftest import EXAMPLES

DEMO = str(EXAMPLES / "demo" / "app.yaml")


def test_apps_finds_the_running_host_with_no_flags(user: User) -> None:
    host = user.serve(DEMO)
    (record,) = user.records.glob("host-*.json")
    assert f"find this host through {record}" in host.output()
    assert f"token in {user.default_state_dir / 'admin-token'}" in host.output()
    assert stat.S_IMODE(record.stat().st_mode) == 0o600 and stat.S_IMODE(user.records.stat().st_mode) == 0o700
    assert json.loads(record.read_text())["pid"] == host.process.pid

    listing = user.run("apps")
    assert listing.returncode == 0, listing.stderr
    assert [line.split()[0] for line in listing.stdout.splitlines()] == ["demo/echo", "demo/hello"]

    assert host.stop() == 0
    assert not record.exists()  # removed at exit
    gone = user.run("apps")
    assert gone.returncode == 1
    assert f"no running wasmlet host found (none is recorded in {user.records})" in gone.stderr
    assert "make run" in gone.stderr and "--admin URL" in gone.stderr


def test_a_host_with_a_state_folder_of_its_own_as_make_run_starts_it(user: User) -> None:
    user.serve(DEMO, "--state-dir", ".state")  # relative, as the Makefile says it
    assert user.run("apps").returncode == 0  # no flags
    assert user.run("apps", "--state-dir", ".state").returncode == 0
    other = user.run("apps", "--state-dir", "elsewhere")
    assert other.returncode == 1
    assert f"no running wasmlet host uses the state folder {user.cwd / 'elsewhere'}" in other.stderr
    assert str(user.records) in other.stderr


def test_a_401_names_the_token_file_it_read(user: User) -> None:
    host = user.serve(DEMO, "--state-dir", ".state")
    admin = json.loads(next(user.records.glob("host-*.json")).read_text())["admin"]
    # The URL given, but the token looked for in the wrong folder: the path is on screen.
    missing = user.run("apps", "--admin", admin, "--state-dir", "wrong")
    assert missing.returncode == 1
    assert "401" in missing.stderr
    assert f"no token sent: none in {user.cwd / 'wrong' / 'admin-token'}" in missing.stderr
    # A token file that holds another token: the file read is named.
    wrong = user.cwd / "wrong"
    wrong.mkdir()
    (wrong / "admin-token").write_text("not-the-token\n")
    os.chmod(wrong / "admin-token", 0o600)
    refused = user.run("apps", "--admin", admin, "--state-dir", "wrong")
    assert refused.returncode == 1 and "401" in refused.stderr
    assert f"token read from {wrong / 'admin-token'}" in refused.stderr
    # WASMLET_ADMIN alone: the token is the recorded host's.
    assert user.run("apps", env={"WASMLET_ADMIN": admin}).returncode == 0
    assert "<state dir>" not in missing.stderr + refused.stderr
    host.stop()


def test_two_hosts_running_the_user_is_asked_which(user: User) -> None:
    first = user.serve(DEMO, "--state-dir", "one")
    second = user.serve(DEMO, "--state-dir", "two")
    both = user.run("apps")
    assert both.returncode == 1
    assert "2 wasmlet hosts are running; choose one with --state-dir DIR or --admin URL" in both.stderr
    assert f"pid {first.process.pid}" in both.stderr and f"pid {second.process.pid}" in both.stderr
    assert f"state {user.cwd / 'two'}" in both.stderr
    assert user.run("apps", "--state-dir", "two").returncode == 0


# Abuse: a record decides where the token goes, so only the user's own, private records count.

def _record(user: User, name: str, pid: int, admin: str = "http://127.0.0.1:9", mode: int = 0o600) -> Path:
    user.records.mkdir(mode=0o700, exist_ok=True)
    path = user.records / name
    path.write_text(json.dumps({"pid": pid, "admin": admin, "listen": "http://127.0.0.1:8", "state_dir": None,
                                "token_file": None}))
    os.chmod(path, mode)
    return path


def test_a_record_other_users_can_write_is_refused(user: User) -> None:
    path = _record(user, f"host-{os.getpid()}.json", os.getpid(), mode=0o666)
    result = user.run("apps")
    assert result.returncode == 1
    assert f"{path}: other users can write to this file (mode 0666); run chmod go-w {path}" in result.stderr


def test_a_records_folder_other_users_can_write_is_refused(user: User) -> None:
    user.records.mkdir(mode=0o700)
    os.chmod(user.records, 0o777)
    result = user.run("apps")
    assert result.returncode == 1
    assert f"{user.records}: other users can write to this folder (mode 0777)" in result.stderr


def test_a_damaged_record_is_named(user: User) -> None:
    path = _record(user, "host-1.json", 1)
    path.write_text("{not json")
    result = user.run("apps")
    assert result.returncode == 1
    assert f"the host record {path} is damaged" in result.stderr and "remove it" in result.stderr


def test_stale_records_are_ignored_and_removed(user: User) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = _record(user, f"host-{dead.pid}.json", dead.pid)
    # A live process that is not a wasmlet (a recycled pid) does not count either.
    with subprocess.Popen(["sleep", "30"]) as sleeper:
        recycled = _record(user, f"host-{sleeper.pid}.json", sleeper.pid)
        result = user.run("apps")
        sleeper.kill()
    assert result.returncode == 1 and "no running wasmlet host found" in result.stderr
    assert not stale.exists()
    assert not recycled.exists()  # its pid now names another program: the host that wrote it is gone
