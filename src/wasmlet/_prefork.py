"""The supervisor's side of the worker zygote (issue 13): start it, ask it for workers, watch them.

A worker started with ``python -m wasmlet.server._worker`` spends most of its
first 300 ms importing (pydantic, asyncio, wasmtime, uvicorn, prometheus_client).
The zygote (``wasmlet.server._zygote``) imports all that once, early, while
``wasmlet serve`` deploys, and then forks a worker on request: the child only
reads its plan and starts serving.

This module is stdlib only, so ``wasmlet serve`` can start the zygote before it
imports the server itself (``start_early``); the console script starts it sooner
still, with ``os`` alone (``wasmlet._early``), and ``take_early`` adopts that one. The control channel is an
``AF_UNIX`` ``SOCK_SEQPACKET`` socketpair the zygote inherits: no path, no name,
nothing else can connect to it. A request is one JSON message (the worker's
argv, environment and folder) with the listening socket attached
(``SCM_RIGHTS``, unix(7)); the reply is ``{"pid": N}`` or ``{"error": ...}``.

The supervisor must be able to ``waitpid`` its workers as before, so it makes
itself a child subreaper (``PR_SET_CHILD_SUBREAPER``, prctl(2), Linux >= 3.4)
and the zygote forks twice: the middle process exits at once, and the worker is
re-parented to the supervisor. ``ForkedProcess`` then watches it like a
``subprocess.Popen``; until it is reaped its pid cannot be reused, so signals
go to the right process. Without Linux, ``os.fork`` or the subreaper, or with
``WASMLET_ZYGOTE=0``, workers are spawned with ``Popen`` as before.

Two side effects of the subreaper: any orphaned descendant of the supervisor
(say, a daemon a worker started) becomes its child too, and is not reaped
(it only waits for its workers' pids, never ``waitpid(-1)``, which would take
exit statuses ``subprocess`` waits for). And the zygote's ``PR_SET_PDEATHSIG``
fires when the *thread* that started it exits: start it from the main thread.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Protocol

from ._early import ZYGOTE_ENV, ZYGOTE_MAIN, taken_spawn, zygote_enabled

__all__ = ["ZYGOTE_ENV", "ForkedProcess", "WorkerProcess", "Zygote", "ZygoteKeeper", "start_early", "take_early",
           "zygote_enabled"]

log = logging.getLogger("wasmlet.server")

# A request or reply larger than this is refused (the environment is in it: a larger one gets Popen, logged).
MAX_MESSAGE = 1 << 16

_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


class WorkerProcess(Protocol):
    """What the supervisor uses of a worker process: ``subprocess.Popen`` or ``ForkedProcess``."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def send_signal(self, sig: int) -> None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...


class ForkedProcess:
    """A worker the zygote forked, re-parented to this process: waited for and signalled as ``Popen`` does."""

    def __init__(self, pid: int, args: list[str]) -> None:
        self._pid = pid
        self.args = args
        self._returncode: int | None = None

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def returncode(self) -> int | None:
        return self._returncode

    def poll(self) -> int | None:
        if self._returncode is None:
            try:
                pid, status = os.waitpid(self._pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere (it is not our child): say it is gone
                self._returncode = 255
                return self._returncode
            if pid == self._pid:
                self._returncode = os.waitstatus_to_exitcode(status)
        return self._returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(0.005)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # not reaped: the pid is still this worker's
            os.kill(self._pid, sig)

    def terminate(self) -> None:
        self.send_signal(15)  # SIGTERM

    def kill(self) -> None:
        self.send_signal(9)  # SIGKILL


def become_subreaper() -> int:
    """Make orphaned descendants (the workers the zygote forks) children of this process: 0, or the errno."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return 0 if int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0 else ctypes.get_errno()


def _subreaper_or_say() -> bool:
    """``become_subreaper``; False, and a warning in the log, if it cannot."""
    error = become_subreaper()
    if error:
        log.warning("zygote: cannot become a child subreaper (prctl: %s); workers are spawned with Popen",
                    os.strerror(error))
    return not error


class Zygote:
    """One zygote process and its control channel (requests are serialised by a lock)."""

    def __init__(self, process: WorkerProcess, channel: socket.socket) -> None:
        self.process = process
        self.channel = channel
        self._ready = False
        self._failed = False  # it said why it cannot be ready, or closed its channel: said once, in the log
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    def start(cls, env: dict[str, str] | None = None) -> Zygote | None:
        """Start a zygote (None, logged, if this platform cannot have one). It imports in the background."""
        if not zygote_enabled():
            return None
        if not _subreaper_or_say():
            return None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            command = [sys.executable, "-c", ZYGOTE_MAIN, "--control", str(theirs.fileno()), "--parent",
                       str(os.getpid())]
            process = subprocess.Popen(command, pass_fds=(theirs.fileno(),), env=env)
        except OSError as exc:
            ours.close()
            log.warning("zygote: cannot start it (%s); workers are spawned with Popen", exc)
            return None
        finally:
            theirs.close()
        return cls(process, ours)

    def ready(self, timeout: float = 0.0) -> bool:
        """True once the zygote said it has imported everything (waits up to ``timeout`` seconds)."""
        if self._ready:
            return True
        with self._lock:
            if self._ready or self._failed:
                return self._ready
            try:
                self.channel.settimeout(max(timeout, 1e-6))
                hello = self._receive()
            except (TimeoutError, BlockingIOError):
                return False
            except OSError as exc:
                self._failed = True
                log.warning("zygote %d: no hello (%s)", self.pid, exc)
                return False
            if "ready" not in hello:
                self._failed = True
                log.warning("zygote %d: not ready: %s", self.pid, hello.get("error", hello))
                return False
            self._ready = True
            return True

    def fork(self, argv: list[str], fd: int, env: dict[str, str] | None = None, timeout: float = 10.0) -> ForkedProcess:
        """Ask for a worker run as ``python -m wasmlet.server._worker ARGV``, ``fd`` passed to it.

        Raises ``OSError`` if the zygote is not ready, gone, or refuses (its reason in the message).
        """
        if not self._ready:
            raise OSError("the zygote is not ready")
        request = {"argv": argv, "env": dict(os.environ if env is None else env), "cwd": os.getcwd()}
        with self._lock:
            self.channel.settimeout(timeout)
            try:
                socket.send_fds(self.channel, [json.dumps(request).encode()], [fd])
                reply = self._receive()
            except TimeoutError as exc:
                raise OSError(f"the zygote did not answer within {timeout:g}s") from exc
        pid = reply.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            raise OSError(f"the zygote refused: {reply.get('error', reply)}")
        return ForkedProcess(pid, [sys.executable, "-m", "wasmlet.server._worker", *argv])

    def send_raw(self, message: bytes, fds: list[int], timeout: float = 10.0) -> dict[str, object]:
        """Send ``message`` as is and return the reply (for tests of what the zygote refuses)."""
        with self._lock:
            self.channel.settimeout(timeout)
            socket.send_fds(self.channel, [message], fds)
            return self._receive()

    def _receive(self) -> dict[str, object]:
        data = self.channel.recv(MAX_MESSAGE)
        if not data:
            raise ConnectionError("the zygote closed its channel")
        try:
            reply = json.loads(data)
        except ValueError as exc:
            raise OSError(f"the zygote sent a malformed reply: {data[:80]!r}") from exc
        if not isinstance(reply, dict):
            raise OSError(f"the zygote sent a malformed reply: {data[:80]!r}")
        return reply

    def close(self, grace: float = 2.0) -> int | None:
        """Stop the zygote (it exits when its channel closes); its workers are not touched."""
        self.channel.close()
        try:
            return self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


class ZygoteKeeper:
    """The supervisor's zygote: workers are forked through it while it works; a lost one is replaced.

    A zygote that exits, fails to fork or refuses is let go (``forget(pid)`` is called, for its metrics
    files) and another is started, ``restarts`` times at most; meanwhile, and after, ``fork`` returns
    None and the supervisor spawns workers with Popen. Workers already forked are not touched.
    """

    def __init__(self, forget: Callable[[int], None], restarts: int = 5) -> None:
        self.current: Zygote | None = None
        self._forget = forget
        self._restarts = restarts

    def start(self, early: Zygote | None = None) -> None:
        self.current = early or Zygote.start()

    def fork(self, argv: list[str], fd: int) -> ForkedProcess | None:
        """A worker forked from the zygote, or None (no zygote, or not ready yet)."""
        zygote = self.current
        if zygote is None or not zygote.ready():
            return None
        try:
            process = zygote.fork(argv, fd)
        except OSError as exc:
            log.error("zygote %d failed to fork a worker (%s); spawning it with Popen", zygote.pid, exc)
            self._lost(kill=True)
            return None
        log.info("worker %d started (forked from zygote %d)", process.pid, zygote.pid)
        return process

    def watch(self) -> None:
        """Replace the zygote if it exited (called on the supervisor's loop)."""
        zygote = self.current
        if zygote is not None and zygote.process.poll() is not None:
            log.error("zygote %d exited with status %s; workers are spawned with Popen until a new one is ready",
                      zygote.pid, zygote.process.returncode)
            self._lost(kill=False)

    def _lost(self, kill: bool) -> None:
        zygote, self.current = self.current, None
        if zygote is None:
            return
        if kill:
            zygote.process.kill()
        self.close(zygote)
        if self._restarts <= 0:
            log.error("zygote restarts used up; every worker is spawned with Popen from now on")
            return
        self._restarts -= 1
        self.current = Zygote.start()

    def close(self, zygote: Zygote | None = None) -> None:
        if zygote is None:
            zygote, self.current = self.current, None
        if zygote is not None:
            zygote.close()
            self._forget(zygote.pid)


_early: Zygote | None = None


def start_early() -> None:
    """Start this process's zygote now, to import while ``wasmlet serve`` deploys (``take_early``)."""
    global _early
    if _early is None:
        _early = Zygote.start()


def take_early() -> Zygote | None:
    """The zygote ``start_early`` or the console script (``_early.spawn_zygote``) started, if any (once)."""
    global _early
    zygote, _early = _early, None
    spawned = taken_spawn()
    if spawned is None:
        return zygote
    adopted = Zygote(ForkedProcess(spawned.pid, spawned.args), socket.socket(fileno=spawned.fd))
    # Before it forks a worker: the workers must become this process's children. (A zygote of
    # start_early's made it one already.)
    if zygote is not None or not _subreaper_or_say():
        adopted.close()
        return zygote
    return adopted
