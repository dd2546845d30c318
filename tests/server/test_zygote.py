"""Workers forked from the zygote (issue 13): real ``wasmlet serve`` processes, real kills, real signals.

The zygote is the supervisor's child named ``wasmlet-zygote`` (``/proc/PID/comm``); the workers it forks
are re-parented to the supervisor (a child subreaper), so they are the supervisor's other children. Both
a forked worker and a spawned one show ``-m wasmlet.server._worker`` to ``ps``; the supervisor logs
which were forked.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import EXAMPLES, GUESTS, Server, write_manifest
from tests.server.test_serve import wait_inflight

from wasmlet._multiproc import pid_alive

Serve = Callable[..., Server]
HELLO = str(EXAMPLES / "hello" / "app.yaml")
ZYGOTE = "wasmlet-zygote"


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:  # reaped since the list of children was read
        return ""


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    except OSError:
        return []


def zygote_and_workers(server: Server) -> tuple[int | None, list[int]]:
    kids = children(server.process.pid)
    zygotes = [p for p in kids if comm(p) == ZYGOTE]
    assert len(zygotes) <= 1, zygotes
    return (zygotes[0] if zygotes else None), sorted(p for p in kids if p not in zygotes)


def forked(server: Server, pid: int) -> bool:
    return f"worker {pid} started (forked from zygote" in server.output()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def hello(server: Server) -> int:
    try:
        return httpx.get(server.url + "/", timeout=2).status_code
    except httpx.HTTPError:
        return 0


def test_workers_are_forked_from_the_zygote_and_serve(serve: Serve) -> None:
    server = serve(HELLO, workers=2)
    assert httpx.get(server.url + "/").text == "Hello, world!\n"
    zygote, workers = zygote_and_workers(server)
    assert zygote is not None and len(workers) == 2
    assert all(forked(server, p) for p in workers), server.output()
    assert all("wasmlet.server._worker" in cmdline(p) and comm(p) != ZYGOTE for p in workers)
    assert any("from wasmlet.server._zygote import main" in arg for arg in cmdline(zygote))
    parents = {int(Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()[1]) for p in workers}
    assert parents == {server.process.pid}  # the supervisor's own children: it waits for them as before


def test_a_killed_worker_is_restarted_through_the_zygote(serve: Serve) -> None:
    server = serve(HELLO, workers=1)
    zygote, (worker,) = zygote_and_workers(server)
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: zygote_and_workers(server)[1] not in ([], [worker]), 20, "a new worker")
    _, (new,) = zygote_and_workers(server)
    # The supervisor logs the fork once the zygote has answered it, which may be just after the process shows.
    wait_until(lambda: forked(server, new), 10, f"the supervisor logs worker {new} as forked")
    wait_until(lambda: hello(server) == 200, 20, "the new worker answers")
    assert zygote_and_workers(server)[0] == zygote  # the same zygote forked it
    assert "restarting it" in server.output()


def test_a_killed_zygote_leaves_the_workers_serving_and_is_replaced(serve: Serve) -> None:
    server = serve(HELLO, workers=2)
    zygote, workers = zygote_and_workers(server)
    assert zygote is not None
    os.kill(zygote, signal.SIGKILL)
    wait_until(lambda: zygote_and_workers(server)[0] not in (None, zygote), 20, "a new zygote")
    assert zygote_and_workers(server)[1] == workers  # untouched
    assert all(hello(server) == 200 for _ in range(10))
    assert f"zygote {zygote} exited with status -9" in server.output()
    # A later restart still works (through the new zygote once it is ready, else with Popen).
    os.kill(workers[0], signal.SIGKILL)
    wait_until(lambda: len(set(zygote_and_workers(server)[1]) - set(workers)) == 1, 20, "a replacement")
    (new,) = set(zygote_and_workers(server)[1]) - set(workers)
    wait_until(lambda: f"worker {new} ready" in server.output(), 20, "the replacement ready")
    assert all(hello(server) == 200 for _ in range(10))


def test_sigterm_drains_forked_workers_and_stops_the_zygote(serve: Serve, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "slow.yaml", [{"name": "slow", "properties": {
        "moduleURL": str(GUESTS / "slow.wasm")}}])
    server = serve(str(manifest), workers=2)
    zygote, workers = zygote_and_workers(server)
    assert zygote is not None and all(forked(server, p) for p in workers)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        pending = [pool.submit(httpx.get, server.url + "/?ms=1500", timeout=10) for _ in range(4)]
        wait_inflight(server, 4)
        server.process.send_signal(signal.SIGTERM)
        responses = [f.result() for f in pending]
    assert [r.status_code for r in responses] == [200] * 4
    assert server.process.wait(10) == 0
    for pid in (zygote, *workers):
        wait_until(lambda pid=pid: not pid_alive(pid), 5, f"{pid} gone")  # type: ignore[misc]


def test_sigterm_as_soon_as_a_forked_worker_answers_still_drains_and_cleans_up(serve: Serve, tmp_path: Path) -> None:
    # A forked worker answers before ``wasmlet serve`` has built its admin API (FastAPI's imports): a
    # SIGTERM then used to find Python's default handler, kill the supervisor on the spot and leave its
    # runtime folder behind (swept by the next host, under a worker still draining).
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    server = serve(HELLO, ready=False, extra_env={"TMPDIR": str(scratch)})
    wait_until(lambda: hello(server) == 200, 30, "a first answer")
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(20) == 0, server.output()[-3000:]
    assert list(scratch.glob("wasmlet-run-*")) == []


def test_a_killed_supervisor_takes_the_zygote_and_the_workers_with_it(serve: Serve) -> None:
    server = serve(HELLO, "--drain-timeout", "3", workers=2)
    zygote, workers = zygote_and_workers(server)
    assert zygote is not None and len(workers) == 2
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(10)
    # The zygote: PR_SET_PDEATHSIG SIGKILL. The workers: SIGTERM, then a drain of at most 3 s (nothing in flight).
    for pid in (zygote, *workers):
        wait_until(lambda pid=pid: not pid_alive(pid), 10, f"{pid} gone")  # type: ignore[misc]


def test_without_the_zygote_workers_are_spawned_and_restarted(serve: Serve) -> None:
    server = serve(HELLO, workers=1, extra_env={"WASMLET_ZYGOTE": "0"})
    zygote, (worker,) = zygote_and_workers(server)
    assert zygote is None and "wasmlet.server._worker" in cmdline(worker)
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: zygote_and_workers(server)[1] not in ([], [worker]), 20, "a new worker")
    (new,) = zygote_and_workers(server)[1]
    # Seen between Popen's fork and its exec, the child's command line can still be empty: polled.
    wait_until(lambda: "wasmlet.server._worker" in cmdline(new), 10, f"{new} runs the worker")
    # The supervisor logs the spawn once Popen has returned, which may be just after the process shows.
    wait_until(lambda: f"worker {new} started (spawned)" in server.output(), 10, f"the supervisor logs {new}")
    assert "forked from zygote" not in server.output()
    wait_until(lambda: hello(server) == 200, 20, "the new worker answers")


def test_a_zygote_that_cannot_fork_safely_leaves_workers_to_popen(serve: Serve, tmp_path: Path) -> None:
    # A thread started at import (here by a sitecustomize, in the zygote only) makes fork(2) unsafe: the
    # zygote says so and exits, is replaced a bounded number of times, and workers are spawned meanwhile.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys, threading, time\n"
        "if any('wasmlet.server._zygote' in arg for arg in sys.orig_argv):\n"
        "    threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n")
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    server = serve(HELLO, workers=1, extra_env={"PYTHONPATH": path})
    assert hello(server) == 200
    wait_until(lambda: "restarts used up" in server.output(), 60, "the zygote given up")
    zygote, (worker,) = zygote_and_workers(server)
    assert zygote is None and f"worker {worker} started (spawned)" in server.output()
    assert "2 threads after the imports; forking is unsafe" in server.output()
    assert server.output().count("zygote restarts used up") == 1
    os.kill(worker, signal.SIGKILL)  # and restarts still work, spawned
    wait_until(lambda: zygote_and_workers(server)[1] not in ([], [worker]), 20, "a new worker")
    wait_until(lambda: hello(server) == 200, 20, "the new worker answers")
    assert "forked from zygote" not in server.output()


# The start of the child scripts below (run by _run_with_a_zygote): a zygote of their own, ready, and
# GET / on a worker's port.
_PRELUDE = """
import http.client, json, os, socket, sys, time
from wasmlet._prefork import MAX_MESSAGE, Zygote
z = Zygote.start()
assert z is not None and z.ready(60), "zygote not ready"
def get(port):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", "/"); return c.getresponse().status
    except OSError:
        return 0
def until_200(port):
    seen, deadline = [], time.monotonic() + 60
    while time.monotonic() < deadline and seen[-1:] != [200]:
        status = get(port)
        if status:
            seen.append(status)
        else:
            time.sleep(0.05)
    return seen
"""


def _run_with_a_zygote(script: str, tmp_path: Path) -> dict[str, Any]:
    """``_PRELUDE`` + ``script`` in a child interpreter, with a hello plan file as its argument and a
    metrics folder of its own: what it printed last, as JSON. A child, because the process that starts
    a zygote becomes a child subreaper, which pytest itself must not become."""
    from tests.conftest import deploy_plan

    plan_file = tmp_path / "plan.json"
    plan_file.write_text(deploy_plan([Path(HELLO)], cache_dir=tmp_path / "cache").to_json())
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    out = subprocess.run([sys.executable, "-c", _PRELUDE + script, str(plan_file)], capture_output=True,
                         text=True, timeout=120, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# The control channel is an inherited AF_UNIX socketpair: no path, no name, nothing but the process that
# started the zygote holds its other end. So the garbage comes from that side.
_GARBAGE = """
fds = lambda: sorted(os.listdir(f"/proc/{z.pid}/fd"))
before = fds()
listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen(16)
idle = socket.socket()
r, w = os.pipe()
good = {"argv": ["--fd", str(listener.fileno()), "--plan", sys.argv[1], "--log-level", "warning"],
        "env": dict(os.environ), "cwd": os.getcwd()}
enc = lambda o: json.dumps(o).encode()
cases = {
    "not json": (b"\\xff\\x00garbage", [listener.fileno()]),
    "json array": (b"[1, 2]", [listener.fileno()]),
    "missing fields": (enc({"argv": []}), [listener.fileno()]),
    "extra field": (enc({**good, "x": 1}), [listener.fileno()]),
    "argv not strings": (enc({**good, "argv": [1, 2]}), [listener.fileno()]),
    "nul in argv": (enc({**good, "argv": [*good["argv"], "a\\u0000b"]}), [listener.fileno()]),
    "env not strings": (enc({**good, "env": {"A": 1}}), [listener.fileno()]),
    "relative cwd": (enc({**good, "cwd": "tmp"}), [listener.fileno()]),
    "no --fd": (enc({**good, "argv": ["--plan", "x"]}), [listener.fileno()]),
    "--fd 1": (enc({**good, "argv": ["--fd", "1", "--plan", "x"]}), [listener.fileno()]),
    "no descriptor": (enc(good), []),
    "two descriptors": (enc(good), [listener.fileno(), listener.fileno()]),
    "a pipe": (enc(good), [r]),
    "not listening": (enc(good), [idle.fileno()]),
    "other metrics dir": (enc({**good, "env": {**good["env"], "PROMETHEUS_MULTIPROC_DIR": "/elsewhere"}}),
                          [listener.fileno()]),
    "too large": (b"{" + b" " * (MAX_MESSAGE + 100) + b"}", [listener.fileno()]),
}
replies = {name: z.send_raw(message, fds_) for name, (message, fds_) in cases.items()}
after = fds()
worker = z.fork(good["argv"], listener.fileno())
status = (until_200(listener.getsockname()[1]) or [0])[-1]
worker.terminate(); code = worker.wait(30)
socket.send_fds(z.channel, [b""], [])  # an empty message reads as end of file: the zygote stops
exit_code = z.process.wait(10)
print(json.dumps({"replies": replies, "fds_before": before, "fds_after": after, "status": status,
                  "worker_exit": code, "zygote_exit": exit_code}))
"""


def test_garbage_on_the_control_channel_is_refused_and_the_zygote_goes_on(tmp_path: Path) -> None:
    result = _run_with_a_zygote(_GARBAGE, tmp_path)
    errors = {name: reply.get("error", "") for name, reply in result["replies"].items()}
    assert all(errors.values()) and not any("pid" in r for r in result["replies"].values()), result["replies"]
    expected = {"not json": "not JSON", "json array": "exactly argv, env and cwd", "missing fields": "exactly argv",
                "extra field": "exactly argv", "argv not strings": "argv", "nul in argv": "argv",
                "env not strings": "env", "relative cwd": "cwd", "no --fd": "--fd N", "--fd 1": "--fd 1",
                "no descriptor": "exactly one descriptor", "two descriptors": "exactly one descriptor",
                "a pipe": "not a socket", "not listening": "not a listening",
                "other metrics dir": "PROMETHEUS_MULTIPROC_DIR", "too large": "truncated"}
    for name, part in expected.items():
        assert part in errors[name], (name, errors[name])
    assert result["fds_after"] == result["fds_before"]  # every descriptor sent with a refused request is closed
    assert result["status"] == 200  # and the zygote still forks a worker that serves
    # As a spawned worker: uvicorn drains, then raises the SIGTERM again under the default handler.
    assert result["worker_exit"] == -signal.SIGTERM
    assert result["zygote_exit"] == 0


def test_requests_are_checked_before_anything_is_forked() -> None:
    from wasmlet.server._zygote import parse_request

    good = {"argv": ["--fd", "7", "--plan", "p"], "env": {"A": "b"}, "cwd": "/"}
    # The worker is told the number the socket has in the zygote (9), not the sender's (7).
    assert parse_request(json.dumps(good).encode(), [9], 0, {})["argv"] == ["--fd", "9", "--plan", "p"]
    assert good["argv"] == ["--fd", "7", "--plan", "p"]  # the request itself is left as it was
    with pytest.raises(ValueError, match="truncated"):
        parse_request(json.dumps(good).encode(), [9], socket.MSG_TRUNC, {})
    with pytest.raises(ValueError, match="--fd 70000"):
        parse_request(json.dumps({**good, "argv": ["--fd", "70000"]}).encode(), [9], 0, {})
    with pytest.raises(ValueError, match="env"):
        parse_request(json.dumps({**good, "env": {"A=B": "c"}}).encode(), [9], 0, {})


# The sender's number for the listening socket is one the zygote already uses for a file of its own
# (prometheus_client's metrics files, opened when it imported the worker's modules). Once, the worker
# was given the socket at the sender's number with dup2, which closed that file under it: its metrics
# then wrote to the socket ("Illegal seek") and its acceptor found a file where it expected a socket.
# A supervisor holding fewer descriptors than usual was enough (issue 13's start-up work).
_COLLIDING = """
def target(fd):
    try:
        return os.readlink(f"/proc/{z.pid}/fd/{fd}")
    except OSError:
        return ""
def free_here(fd):
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False
metrics = os.environ["PROMETHEUS_MULTIPROC_DIR"]
files = [int(fd) for fd in os.listdir(f"/proc/{z.pid}/fd") if target(fd).startswith(metrics)]
taken = next(fd for fd in sorted(files) if free_here(fd))
listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen(16)
os.dup2(listener.fileno(), taken)
argv = ["--fd", str(taken), "--plan", sys.argv[1], "--log-level", "warning"]
worker = z.fork(argv, taken)
statuses = until_200(listener.getsockname()[1])
for _ in range(5):  # five more, up to the first that fails (each may wait its 30 s)
    statuses.append(get(listener.getsockname()[1]))
    if statuses[-1] != 200:
        break
in_worker, in_zygote = os.readlink(f"/proc/{worker.pid}/fd/{taken}"), target(taken)
worker.terminate(); code = worker.wait(30)
socket.send_fds(z.channel, [b""], [])
z.process.wait(10)
print(json.dumps({"files": len(files), "in_zygote": in_zygote, "in_worker": in_worker,
                  "statuses": statuses, "worker_exit": code}))
"""


def test_a_socket_sent_under_a_number_the_zygote_uses_does_not_displace_its_file(tmp_path: Path) -> None:
    result = _run_with_a_zygote(_COLLIDING, tmp_path)
    assert result["files"] >= 1  # the zygote holds metrics files: the collision was made
    # In the worker, that number still holds a metrics file (prometheus_client reopens its own after the
    # fork, at the lowest free number): not the listening socket, which that reopening would have closed.
    assert result["in_zygote"].endswith(".db") and result["in_worker"].endswith(".db"), result
    assert result["statuses"][-6:] == [200] * 6, result["statuses"]
    assert result["worker_exit"] == -signal.SIGTERM


# The zygote's loop in a child interpreter (one thread, as in a zygote), its channel a socketpair
# whose other end is held here: idle, it imports the component stacks a WAGI-only host never needs
# on its way to its first response, and not before.
_IDLE = """
import json, os, socket, sys, time
from wasmlet.server import _zygote
names = _zygote.PRELOAD_IDLE
before = [n for n in names if n in sys.modules]
real, calls = _zygote._preload_idle, []
def spy(wanted):
    calls.append(time.monotonic() - start)
    real(wanted)
_zygote._preload_idle = spy
channel = socket.socket(fileno=int(sys.argv[1]))
start = time.monotonic()
code = _zygote.serve(channel, os.getppid())
print(json.dumps({"before": before, "after": [n for n in names if n in sys.modules], "calls": calls,
                  "idle": _zygote.IDLE, "returned": code}))
"""


def test_an_idle_zygote_imports_the_component_stacks_and_tracing_after_start_up() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours:
        child = subprocess.Popen([sys.executable, "-c", _IDLE, str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        theirs.close()
        time.sleep(1.5)
        socket.send_fds(ours, [b""], [])  # end of file: the loop returns
        out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["before"] == []  # not with the worker's modules
    assert len(result["calls"]) == 1 and result["calls"][0] >= result["idle"]  # once, after the channel idled
    assert len(result["after"]) == 5  # the component stacks and OpenTelemetry's API
    assert result["returned"] == 0
