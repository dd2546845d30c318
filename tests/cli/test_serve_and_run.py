"""Issue 10, items 3 and 7: a busy port is one line and commits nothing; `wasmlet run` shows the
guest's stderr and sends -d as a POST, as curl does."""

from __future__ import annotations

import socket

import pytest
from tests.cli.conftest import User
from tests.conftest import EXAMPLES, GUESTS, free_port

DEMO = str(EXAMPLES / "demo" / "app.yaml")


@pytest.mark.parametrize("flag", ["--listen", "--admin-listen"])
def test_a_busy_port_is_one_line_and_nothing_is_saved(user: User, flag: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        other = "--admin-listen" if flag == "--listen" else "--listen"
        result = user.run("serve", DEMO, "--state-dir", "state", flag, busy, other, f"127.0.0.1:{free_port()}",
                          timeout=60)
    assert result.returncode == 1
    hint = " (or none)" if flag == "--admin-listen" else ""
    # One line (the host may log its own housekeeping before it, as JSON).
    errors = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert errors == [f"error: cannot listen on {busy}: the address is already in use (another wasmlet or "
                      f"program holds it); choose another with {flag} ADDR:PORT{hint}"]
    assert "Traceback" not in result.stdout + result.stderr
    assert not (user.cwd / "state").exists()  # checked before the state was opened, let alone the app saved


def test_run_shows_the_guest_stderr_when_it_fails(user: User) -> None:
    result = user.run("run", str(GUESTS / "exit3.wasm"))
    assert result.returncode == 1
    assert result.stdout.startswith("HTTP/1.1 501\n")
    assert "exit3: giving up with status 3\n" in result.stderr
    assert "deployed run/module" not in result.stderr  # the host's own info lines are not the guest's


def test_run_shows_the_guest_stderr_when_it_answers(user: User) -> None:
    result = user.run("run", str(GUESTS / "stderr.wasm"))
    assert result.returncode == 0
    assert result.stdout.startswith("HTTP/1.1 201\n")
    assert result.stderr == "stderr guest: first line\nstderr guest: second line\n"


@pytest.mark.parametrize(("args", "method"), [
    ([], "GET"),
    (["-d", "hi"], "POST"),
    (["-X", "PUT", "-d", "hi"], "PUT"),
    (["-X", "get"], "GET"),
])
def test_run_method_follows_curl(user: User, args: list[str], method: str) -> None:
    result = user.run("run", str(EXAMPLES / "echo" / "echo.wasm"), *args)
    assert result.returncode == 0, result.stderr
    assert f"method: {method}\n" in result.stdout
    if "-d" in args:
        assert "body: hi" in result.stdout


def test_run_data_from_a_missing_file_is_one_line(user: User) -> None:
    result = user.run("run", str(EXAMPLES / "echo" / "echo.wasm"), "-d", "@nope.txt")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("error: --data: cannot read nope.txt: No such file")
    assert "Traceback" not in result.stderr
