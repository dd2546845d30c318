"""``wasmlet serve --worker-priority``: the workers' nice value, every thread of theirs, and refusals said up front.

Real processes: the nice value of each thread is read from ``/proc/PID/task/TID/stat``. A positive
value is used where the test needs it applied (anyone may lower their own priority); the refusal is
provoked without ``CAP_SYS_NICE`` (util-linux's ``setpriv`` drops it when the tests run as root).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.conftest import EXAMPLES, Server, free_port
from tests.server.test_serve import run_cli
from tests.server.test_zygote import ZYGOTE, comm, wait_until, zygote_and_workers

from wasmlet._errors import ConfigError
from wasmlet.server import ServeSettings, check_priority
from wasmlet.server._priority import lowest_allowed, priority_error

Serve = Callable[..., Server]
HELLO = str(EXAMPLES / "hello" / "app.yaml")
# What an unprivileged user gets: RLIMIT_NICE 0 and, when the tests run as root, no CAP_SYS_NICE.
UNPRIVILEGED = ["prlimit", "--nice=0", *(["setpriv", "--inh-caps=-sys_nice", "--bounding-set=-sys_nice", "--"]
                                        if os.geteuid() == 0 else [])]


def thread_nices(pid: int) -> dict[int, int]:
    """Each thread of ``pid`` and its nice value (proc(5): field 19 of stat)."""
    nices = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:  # ended since the folder was read
            continue
        nices[int(tid)] = int(stat.rpartition(")")[2].split()[16])
    return nices


def test_lowest_allowed_follows_setrlimit_and_the_capability() -> None:
    assert lowest_allowed(0, 0, cap_sys_nice=True) == -20
    assert lowest_allowed(0, -1, cap_sys_nice=False) == -20  # RLIM_INFINITY
    assert lowest_allowed(0, 0, cap_sys_nice=False) == 0  # no limit: only what it has, or higher
    assert lowest_allowed(0, 30, cap_sys_nice=False) == -10  # 20 - rlim_cur
    assert lowest_allowed(5, 10, cap_sys_nice=False) == 5  # the limit allows 10, the thread is at 5
    assert lowest_allowed(0, 1000, cap_sys_nice=False) == -20  # a limit a million times too large


def test_the_refusal_says_what_would_allow_it() -> None:
    message = str(priority_error(-5, 0, 0, False, "Permission denied"))
    assert message.startswith("--worker-priority -5: ")
    assert "the lowest it may set is 0" in message
    assert "CAP_SYS_NICE" in message and "RLIMIT_NICE to 25 or more" in message


@pytest.mark.parametrize("value", [-21, 20, 10**7, -(10**7)])
def test_a_value_out_of_range_is_refused(value: int) -> None:
    with pytest.raises(ConfigError, match=rf"^--worker-priority: expected a nice value from -20 .* got {value}$"):
        ServeSettings(worker_priority=value)


def test_granian_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^--worker-priority: not supported with --server granian$"):
        ServeSettings(server="granian", worker_priority=0)


def test_the_check_leaves_the_callers_threads_as_they_were() -> None:
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    check_priority(min(19, before + 3))  # always allowed: tried on a thread of its own
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


@pytest.mark.parametrize("zygote", ["1", "0"])
def test_every_worker_thread_takes_the_value_and_nothing_else_does(serve: Serve, zygote: str) -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    wanted = min(19, own + 5)
    server = serve(HELLO, "--worker-priority", str(wanted), workers=2, extra_env={"WASMLET_ZYGOTE": zygote})
    assert httpx.get(server.url + "/").text == "Hello, world!\n"
    zyg, workers = zygote_and_workers(server)
    assert len(workers) == 2 and (zyg is None) == (zygote == "0")
    for pid in workers:
        # Serving is one worker's answer; the other may still be importing (spawned), before its main() ran.
        wait_until(lambda: f"worker {pid} ready" in server.output(), 20, f"worker {pid} ready")  # noqa: B023
        nices = thread_nices(pid)
        assert len(nices) > 1  # its guest and engine threads too, started after the value was set
        assert set(nices.values()) == {wanted}, (pid, nices)
    assert set(thread_nices(server.process.pid).values()) == {own}  # the supervisor keeps its own
    if zyg is not None:
        assert comm(zyg) == ZYGOTE and set(thread_nices(zyg).values()) == {own}
    # A worker started to replace one takes it too.
    os.kill(workers[0], signal.SIGKILL)
    wait_until(lambda: len(set(zygote_and_workers(server)[1]) - set(workers)) == 1, 20, "a replacement")
    (new,) = set(zygote_and_workers(server)[1]) - set(workers)
    wait_until(lambda: f"worker {new} ready" in server.output(), 20, "the replacement ready")
    assert set(thread_nices(new).values()) == {wanted}


def test_a_priority_the_kernel_refuses_is_one_line_and_nothing_is_saved(tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = subprocess.run(
        [*UNPRIVILEGED, sys.executable, "-m", "wasmlet", "serve", HELLO, "--worker-priority", "-5",
         "--listen", f"127.0.0.1:{free_port()}", "--admin-listen", "none", "--state-dir", str(state)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "WASMLET_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert len(errors) == 1 and errors[0].startswith(
        "error: --worker-priority -5: this host may not set its workers' nice value to -5 (Permission denied; "
        "the lowest it may set is "), errors
    assert "Traceback" not in result.stderr
    assert not state.exists()  # refused before the state was opened, let alone the app saved


@pytest.mark.parametrize("value", ["20000000", "-21", "high"])
def test_a_bad_value_is_refused_by_the_cli(tmp_path: Path, value: str) -> None:
    state = tmp_path / "state"
    result = run_cli("serve", HELLO, "--worker-priority", value, "--admin-listen", "none",
                     "--listen", f"127.0.0.1:{free_port()}", "--state-dir", str(state))
    assert result.returncode == 2
    assert "Invalid value for '--worker-priority'" in result.stderr
    assert not state.exists()


def test_a_worker_the_kernel_refuses_still_serves_and_says_so(tmp_path: Path) -> None:
    # The supervisor checks first; this is the worker's side, should the limits change in between.
    from wasmlet.plan import EngineSettings, Plan

    plan = tmp_path / "plan.json"
    plan.write_text(Plan(components=(), engine=EngineSettings(), cache_dir=str(tmp_path / "cache")).to_json())
    ready = tmp_path / "ready"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        fd = listener.fileno()
        worker = subprocess.Popen(
            [*UNPRIVILEGED, sys.executable, "-m", "wasmlet.server._worker", "--fd", str(fd),
             "--plan", str(plan), "--ready-file", str(ready), "--priority", "-5", "--drain", "1"],
            pass_fds=(fd,), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_until(lambda: ready.exists() or worker.poll() is not None, 30, "the worker serves")
            assert worker.poll() is None
            assert httpx.get(f"http://127.0.0.1:{port}/nothing", timeout=5).status_code == 404
            assert -5 not in thread_nices(worker.pid).values()
        finally:
            worker.send_signal(signal.SIGTERM)
            output, _ = worker.communicate(timeout=30)
    assert "--worker-priority -5: this host may not set its workers' nice value to -5" in output
    assert "this worker serves at its inherited priority" in output
    assert "Traceback" not in output
