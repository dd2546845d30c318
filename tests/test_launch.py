"""The console script's head start for ``wasmlet serve`` (issue 13): the zygote starts before the CLI loads.

``tests/server/test_zygote.py`` and every other test that runs ``python -m wasmlet serve`` go
through ``wasmlet._launch``; a worker is forked only if the zygote imported prometheus_client
with the supervisor's metrics folder, so those tests also show the head start and ``serve``
agree on one folder. Here: the guess at the command line, and a command line that fails after
the head start was taken.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wasmlet._launch import serves_with_zygote
from wasmlet._multiproc import pid_alive


@pytest.mark.parametrize(("argv", "expected"), [
    (["serve", "app.yaml"], True),
    (["serve"], True),
    (["--log-level", "warning", "serve", "app.yaml", "--workers", "2"], True),
    (["--log-level=debug", "-vv", "serve"], True),
    (["--log-level", "serve", "serve"], True),  # the first "serve" is the level's value, as click reads it
    (["serve", "--server", "uvicorn"], True),
    (["serve", "--", "--help"], True),  # after "--", a manifest named --help
    (["serve", "--server", "granian"], False),  # granian forks its own workers
    (["serve", "--server=granian", "app.yaml"], False),
    (["serve", "--help"], False),
    (["serve", "app.yaml", "-h"], False),
    (["--help", "serve"], False),
    (["--version"], False),
    (["deploy", "serve"], False),  # another command, with an argument that happens to be "serve"
    (["--log-level", "serve"], False),  # "serve" is the level's value: no command at all
    ([], False),
    (["-v"], False),
    (["k8s", "render", "serve"], False),
])
def test_the_head_start_is_taken_only_for_a_command_line_that_serves_through_the_zygote(
        argv: list[str], expected: bool) -> None:
    assert serves_with_zygote(argv) is expected


# ``python -m wasmlet serve --no-such-flag``, with the zygote's pid printed when it is started.
_FAILING_SERVE = """
import sys
import wasmlet._early as early
real = early.spawn_zygote
def spawn_zygote():
    spawned = real()
    print("zygote", spawned.pid if spawned else None, flush=True)
    return spawned
early.spawn_zygote = spawn_zygote
sys.argv = ["wasmlet", "serve", "--no-such-flag"]
from wasmlet._launch import main
main()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the zygote is Linux only (os.fork, prctl)")
def test_a_serve_command_line_that_fails_leaves_no_zygote_and_no_metrics_folder(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path), "WASMLET_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run([sys.executable, "-c", _FAILING_SERVE], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr  # click's usage error, as without the head start
    assert "No such option '--no-such-flag'" in done.stderr
    started = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("zygote ")]
    assert len(started) == 1 and started[0] != "None", done.stdout  # the head start was taken, once
    zygote = int(started[0])
    deadline = time.monotonic() + 10
    while pid_alive(zygote):
        assert time.monotonic() < deadline, f"zygote {zygote} still running after the command failed"
        time.sleep(0.05)
    assert sorted(p.name for p in tmp_path.glob("wasmlet-metrics-*")) == []


_PLUGINS = """
import os, sys
sys.argv = ["wasmlet", "--version"]
from wasmlet._launch import main
try:
    main()
except SystemExit:
    pass
print(os.environ.get("PYDANTIC_DISABLE_PLUGINS"))
"""


@pytest.mark.parametrize(("given", "expected"), [(None, "__all__"), ("logfire", "logfire")])
def test_the_console_script_turns_pydantic_plugins_off_unless_told_otherwise(given: str | None,
                                                                             expected: str) -> None:
    # Their discovery reads every installed distribution's entry points (~4 ms in each of the supervisor
    # and the zygote, which inherits the setting); a user's explicit choice is kept.
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    if given is not None:
        env["PYDANTIC_DISABLE_PLUGINS"] = given
    out = subprocess.run([sys.executable, "-c", _PLUGINS], capture_output=True, text=True, timeout=60, env=env,
                         check=True)
    assert out.stdout.splitlines()[-1] == expected
