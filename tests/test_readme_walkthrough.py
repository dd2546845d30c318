"""The README, walked the way a new user walks it: `make run` in the background, then every
command it shows, in order; the walk stops at the first command that fails.

What the README promises, so that it can be run as written:

- each line of a ```sh block is one command (bash runs it: `# ...` is a note, `\\` continues);
- `make test` is what is running this: skipped;
- `make run` and `wasmlet serve ...` serve in the background until they answer on their
  listen address; the next one stops the previous with SIGINT (the README's Ctrl-C);
- every other command must exit 0 (the README's curl uses -f, so an HTTP error fails too).

It runs in a copy of the working tree (the files git knows, plus new ones it does not
ignore), with a fresh HOME and XDG state, cache and runtime folders (so the client
commands find the host as a user's would, with no flags), and free ports in place of
the README's 8080 and 3000 (the admin listener's through $WASMLET_ADMIN_LISTEN). The
copy's `.venv` is the one running the tests; `make` is told not to reinstall it
(`-o .venv/bin/.installed`), so a stale stamp cannot repoint the editable install.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import httpx
import pytest
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# Ports the README shows, replaced by free ones (an unknown one fails the walk: add it here).
README_PORTS = ("127.0.0.1:8080", "127.0.0.1:3000")
COMMAND_TIMEOUT = 60.0
READY_TIMEOUT = 60.0


def readme_commands(text: str) -> list[str]:
    """Every command of the ```sh blocks, in order, continuation lines joined."""
    commands: list[str] = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, flags=re.M | re.S):
        pending = ""
        for line in block.splitlines():
            pending += line
            if pending.endswith("\\"):
                pending = pending[:-1]
                continue
            if pending.strip() and not pending.strip().startswith("#"):
                commands.append(pending.strip())
            pending = ""
    return commands


def _bare(command: str) -> str:
    return command.split("#", 1)[0].strip()


def is_server(command: str) -> bool:
    return _bare(command) == "make run" or " serve " in f" {_bare(command)} "


@dataclass
class Walk:
    """Runs README commands in ``workdir``; servers in the background, one at a time."""

    workdir: Path
    env: dict[str, str]
    ports: dict[str, str] = field(default_factory=dict)  # README's address -> the one used
    server: subprocess.Popen[bytes] | None = None
    server_log: Path | None = None
    done: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)  # command -> its stdout

    def localize(self, command: str) -> str:
        for shown, used in self.ports.items():
            command = command.replace(shown, used)
        unknown = set(re.findall(r"127\.0\.0\.1:\d+", command)) - set(self.ports.values())
        if unknown:
            raise AssertionError(f"the README uses {sorted(unknown)}: add it to README_PORTS\n  {command}")
        if _bare(command) == "make run":
            command = f"make -o .venv/bin/.installed run LISTEN={self.ports['127.0.0.1:8080']}"
        return command

    def run(self, command: str) -> None:
        if _bare(command) == "make test":
            self.done.append(command)
            return  # that is what is running this walk
        local = self.localize(command)
        if is_server(command):
            self.start_server(command, local)
        else:
            self.run_one(command, local)
        self.done.append(command)

    def run_one(self, command: str, local: str) -> None:
        try:
            result = subprocess.run(["bash", "-c", f"set -eo pipefail\n{local}"], cwd=self.workdir, env=self.env,
                                    capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            self.fail(command, f"still running after {COMMAND_TIMEOUT:g}s", str(exc.stdout), str(exc.stderr))
        if result.returncode != 0:
            self.fail(command, f"exit status {result.returncode}", result.stdout, result.stderr)
        self.outputs[command] = result.stdout

    def start_server(self, command: str, local: str) -> None:
        self.stop_server()
        listen = re.search(r"LISTEN=(\S+)|--listen (\S+)", local)
        if listen is None:
            raise AssertionError(f"no listen address in {command!r}: the walk cannot tell when it is ready")
        address = listen.group(1) or listen.group(2)
        env = {**self.env, "WASMLET_ADMIN_LISTEN": f"127.0.0.1:{free_port()}"}
        self.server_log = self.workdir / f".walk-server-{len(self.done)}.log"
        with self.server_log.open("wb") as log:
            self.server = subprocess.Popen(["bash", "-c", f"exec {local}"], cwd=self.workdir, env=env,
                                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                self.fail(command, f"exited with {self.server.returncode} before it served", "", "")
            with contextlib.suppress(httpx.HTTPError):
                # Workers forked from the zygote (issue 13) serve before the admin listener is up: "client
                # commands" is printed once it is, and the host is recorded (or could not be).
                if httpx.get(f"http://{address}/.well-known/wasmlet/ready", timeout=1).status_code == 200 \
                        and ("client commands" in self.server_log.read_text(errors="replace")
                             or "--admin-listen none" in local):
                    return
            time.sleep(0.1)
        self.fail(command, f"not serving on {address} after {READY_TIMEOUT:g}s", "", "")

    def stop_server(self) -> None:
        if self.server is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.server.pid, signal.SIGINT)  # Ctrl-C reaches make and the host it started
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.server.wait(30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.server.pid, signal.SIGKILL)  # whatever is left of the group
        self.server.wait()
        self.server = None

    def fail(self, command: str, what: str, stdout: str, stderr: str) -> NoReturn:
        server = self.server_log.read_text(errors="replace")[-3000:] if self.server_log else ""
        raise AssertionError(
            f"README command failed ({what}) after {len(self.done)} that passed:\n  {command}\n"
            f"--- stdout\n{stdout[-3000:]}\n--- stderr\n{stderr[-3000:]}\n--- the background host's output\n{server}"
        )


def copy_tree(destination: Path) -> None:
    """The working tree as a fresh clone would hold it, with this change's new files."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if not source.is_file():
            continue  # deleted in the working tree
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)  # mtimes kept: make sees the venv stamp as it is
    venv = ROOT / ".venv" if (ROOT / ".venv").is_dir() else Path(sys.prefix)
    (destination / ".venv").symlink_to(venv)


def fresh_user_env(home: Path) -> dict[str, str]:
    runtime = home / "run"
    runtime.mkdir(parents=True, mode=0o700)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
    }


@pytest.fixture
def walk(tmp_path: Path) -> Iterator[Walk]:
    workdir = tmp_path / "wasmlet"
    workdir.mkdir()
    the_walk = Walk(workdir, fresh_user_env(tmp_path / "home"))
    yield the_walk
    the_walk.stop_server()


@pytest.mark.timeout(150)
def test_the_readme_from_a_fresh_copy(walk: Walk) -> None:
    copy_tree(walk.workdir)
    walk.ports = {shown: f"127.0.0.1:{free_port()}" for shown in README_PORTS}
    commands = readme_commands(README.read_text(encoding="utf-8"))
    assert commands[:2] == ["make run    # sets up .venv and serves the demo app on http://127.0.0.1:8080 "
                            "(Ctrl-C stops it)", "make test   # installs what the tests need (Debian packages "
                            "too) and runs every check"]
    for command in commands:  # bounded: 60 s a command, 60 s for a host to serve, 150 s in all
        walk.run(command)
    walk.stop_server()
    assert walk.done == commands

    def output(start: str) -> str:
        (command,) = [c for c in commands if c.startswith(start)]
        return walk.outputs[command]

    # A few answers the README's notes promise, to know the walk saw the real thing.
    assert output("curl -fsS http://127.0.0.1:8080/ ") == "Hello, world!\n"
    assert "demo/echo" in output(".venv/bin/wasmlet apps  ") and "demo/hello" in output(".venv/bin/wasmlet apps  ")
    assert output("curl -fsS -H 'X-Canary: 1'") == "Hello from hello-c-v2! (GET /)\n"
    assert "answered GET /" in output(".venv/bin/wasmlet logs hello-c")
    assert '"verified": true' in output(".venv/bin/wasmlet verify")
    assert output("curl -fsS http://127.0.0.1:3000/") == "Hello from hello-c-v2! (GET /)\n"
    # The hosts removed their records when they stopped, as they promise.
    assert not list((Path(walk.env["XDG_RUNTIME_DIR"]) / "wasmlet").glob("host-*.json"))


def test_the_walk_stops_at_the_first_failing_command(walk: Walk) -> None:
    text = "intro\n```sh\ntouch one   # a note\nfalse\ntouch two\n```\n"
    with pytest.raises(AssertionError, match=r"exit status 1\) after 1 that passed:\n  false"):
        for command in readme_commands(text):
            walk.run(command)
    assert (walk.workdir / "one").exists() and not (walk.workdir / "two").exists()


def test_the_walk_fails_on_an_http_error_and_on_an_unknown_port(walk: Walk) -> None:
    walk.ports = {"127.0.0.1:8080": f"127.0.0.1:{free_port()}"}  # nothing listens there
    with pytest.raises(AssertionError, match="exit status 7"):
        walk.run("curl -fsS http://127.0.0.1:8080/")
    with pytest.raises(AssertionError, match="add it to README_PORTS"):
        walk.run("curl -fsS http://127.0.0.1:9999/")


def test_readme_commands_are_read_as_bash_reads_them() -> None:
    text = "```sh\na \\\n  --b   # note\n# a comment line\n\nmake test\n```\n```yaml\nnot: a command\n```\n"
    assert readme_commands(text) == ["a   --b   # note", "make test"]
    assert is_server("make run    # note") and is_server(".venv/bin/wasmlet serve x.yaml --listen 1")
    assert not is_server(".venv/bin/wasmlet apps  # the host serves")
