"""Joining a lattice whose NATS servers want credentials, given the way NATS users give them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import free_port
from tests.lattice.conftest import NatsServer, lattice_cli


def test_user_and_password_by_flags_or_in_the_url_and_a_wrong_one_refused(
        tmp_path: Path, lattice_host: Any) -> None:
    server = NatsServer("auth", tmp_path / "js", tmp_path / "nats.log", extra=("--user", "alice", "--pass", "s3cret"))
    server.start()
    try:
        lattice_host("alpha", server.url, "--lattice-user", "alice",
                     extra_env={"WASMLET_LATTICE_PASSWORD": "s3cret"})  # the password not on the command line
        url = f"nats://alice:s3cret@127.0.0.1:{server.port}"
        listed = lattice_cli(url, "hosts")
        assert listed.returncode == 0 and "alpha" in listed.stdout, listed.stderr
        port = free_port()
        refused = subprocess.run(
            [sys.executable, "-m", "wasmlet", "serve", "--lattice", server.url, "--lattice-user", "alice",
             "--lattice-password", "wrong", "--host-name", "beta", "--listen", f"127.0.0.1:{port}",
             "--admin-listen", "none", "--state-dir", str(tmp_path / "beta")],
            capture_output=True, text=True, timeout=60, env=dict(os.environ))
        assert refused.returncode == 1, refused.stderr
        assert "cannot connect to the lattice" in refused.stderr and "uthorization" in refused.stderr, refused.stderr
    finally:
        server.stop()


def test_a_token(tmp_path: Path) -> None:
    server = NatsServer("token", tmp_path / "js", tmp_path / "nats.log", extra=("--auth", "t0ken"))
    server.start()
    try:
        anonymous = lattice_cli(server.url, "apps")
        assert anonymous.returncode == 1 and "cannot connect" in anonymous.stderr
        with_token = subprocess.run([sys.executable, "-m", "wasmlet", "lattice", "apps", "--lattice", server.url],
                                    capture_output=True, text=True, timeout=60,
                                    env={**os.environ, "WASMLET_LATTICE_TOKEN": "t0ken"})
        assert with_token.returncode == 0, with_token.stderr
    finally:
        server.stop()
