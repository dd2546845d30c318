"""A new user's shell: a fresh HOME and XDG folders, no WASMLET_* variables, the `wasmlet` command."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import free_port

_SCRIPT = Path(sys.executable).parent / "wasmlet"
WASMLET = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "wasmlet"]


class Host:
    """A `wasmlet serve` the user started in the background."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path, url: str) -> None:
        self.process = process
        self.log = log
        self.url = url

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # no worker left behind
        return self.process.returncode


class User:
    """Runs `wasmlet ...` as a user types it, in ``cwd``, with a fresh environment."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.cwd = home / "work"
        self.cwd.mkdir(parents=True)
        self.runtime_dir = home / "run"
        self.runtime_dir.mkdir(mode=0o700)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
            "XDG_CACHE_HOME": str(home / ".cache"),
        }
        self.hosts: list[Host] = []

    @property
    def records(self) -> Path:
        """Where `wasmlet serve` records itself for this user."""
        return self.runtime_dir / "wasmlet"

    @property
    def default_state_dir(self) -> Path:
        return self.home / ".local" / "state" / "wasmlet"

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess[str]:  # noqa: A002 - subprocess's name
        return subprocess.run([*WASMLET, *args], cwd=self.cwd, env={**self.env, **(env or {})}, input=input,
                              capture_output=True, text=True, timeout=timeout)

    def serve(self, *args: str, env: dict[str, str] | None = None) -> Host:
        """`wasmlet serve ARGS --listen 127.0.0.1:FREE` (admin on a free port through the environment)."""
        port = free_port()
        log = self.home / f"serve-{len(self.hosts)}.log"
        environment = {**self.env, "WASMLET_ADMIN_LISTEN": f"127.0.0.1:{free_port()}", **(env or {})}
        with log.open("wb") as handle:
            process = subprocess.Popen([*WASMLET, "serve", *args, "--listen", f"127.0.0.1:{port}", "--workers", "1"],
                                       cwd=self.cwd, env=environment, stdout=handle, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        host = Host(process, log, f"http://127.0.0.1:{port}")
        self.hosts.append(host)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"wasmlet serve exited with {process.returncode}:\n{host.output()}")
            with contextlib.suppress(httpx.HTTPError):
                # Workers forked from the zygote (issue 13) serve before the admin listener is up: "client
                # commands" is printed once it is, and the host is recorded (or could not be).
                if httpx.get(f"{host.url}/.well-known/wasmlet/ready", timeout=1).status_code == 200 \
                        and "client commands" in host.output():
                    return host
            time.sleep(0.05)
        raise AssertionError(f"wasmlet serve not ready after 60s:\n{host.output()}")


@pytest.fixture
def user(tmp_path: Path) -> Iterator[User]:
    the_user = User(tmp_path / "home")
    yield the_user
    for host in the_user.hosts:
        host.stop()
