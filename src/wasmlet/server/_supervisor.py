"""The server lifecycle: bind, start workers, drain on SIGTERM, force on a second signal.

The supervisor binds the listening socket once and hands it to each worker
process (``pass_fds``), so ``--listen 127.0.0.1:0`` works and all workers
accept from one queue. Workers that die while serving are restarted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from types import FrameType

from .._deploy import Plan
from ._settings import ServeSettings

__all__ = ["Supervisor", "bind_socket"]

log = logging.getLogger("wasmlet.server")


def bind_socket(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    def __init__(self, plan: Plan, settings: ServeSettings, log_level: str = "info") -> None:
        self.plan = plan
        self.settings = settings
        self.log_level = log_level
        self.sock: socket.socket | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.draining = False
        self.forced = False
        self._plan_file: str | None = None
        self._reported: set[int] = set()

    @property
    def address(self) -> tuple[str, int]:
        assert self.sock is not None
        host, port = self.sock.getsockname()[:2]
        return host, port

    def startup(self) -> None:
        s = self.settings
        self.sock = bind_socket(s.host, s.port, s.backlog)
        fd, self._plan_file = tempfile.mkstemp(prefix="wasmlet-plan-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(self.plan.to_json())
        self.workers = [self._spawn() for _ in range(s.workers)]

    def _spawn(self) -> subprocess.Popen[bytes]:
        assert self.sock is not None and self._plan_file is not None
        fd = self.sock.fileno()
        command = [
            sys.executable, "-m", "wasmlet.server._worker",
            "--fd", str(fd), "--plan", self._plan_file,
            "--threads", str(self.settings.threads),
            "--drain", str(self.settings.drain_timeout),
            "--log-level", self.log_level,
        ]
        return subprocess.Popen(command, pass_fds=(fd,))

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.draining:
            log.warning("second signal: forcing exit")
            self.forced = True
            for worker in self.workers:
                if worker.poll() is None:
                    worker.kill()
            return
        log.info("%s: draining in-flight requests (a second signal forces exit)", signal.Signals(signum).name)
        self.draining = True
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)

    def serve(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            while True:
                alive = False
                for index, worker in enumerate(self.workers):
                    code = worker.poll()
                    if code is None:
                        alive = True
                    elif self.draining:
                        if worker.pid not in self._reported:
                            self._reported.add(worker.pid)
                            log.info("worker %d stopped (exit status %s)", worker.pid, code)
                    else:
                        log.error("worker %d exited with %s; restarting it", worker.pid, code)
                        self.workers[index] = self._spawn()
                        alive = True
                        time.sleep(0.2)  # do not spin if start-up keeps failing
                if not alive:
                    break
                time.sleep(0.05)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.shutdown()
        return 1 if self.forced else 0

    def shutdown(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self._plan_file is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._plan_file)
            self._plan_file = None
