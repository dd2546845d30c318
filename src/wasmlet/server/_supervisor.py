"""The server lifecycle: bind, start workers, watch them, drain on SIGTERM, force on a second signal.

The supervisor binds the listening socket once and hands it to each worker
process (``pass_fds``), so ``--listen 127.0.0.1:0`` works and all workers
accept from one queue. It restarts workers that die, and its watchdog
recycles a worker whose resident memory grows faster than the seed's
threshold (2 MB a minute): a replacement is started and ready before the old
worker is told to drain, so no request is refused on the way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from .._errors import ConfigError
from .._files import atomic_write
from ..plan import Plan
from ..telemetry import GrowthMeter
from ._settings import ServeSettings

__all__ = ["Supervisor", "WatchdogSettings", "bind_socket", "read_rss"]

log = logging.getLogger("wasmlet.server")


@dataclasses.dataclass(frozen=True)
class WatchdogSettings:
    memory_growth: float = 2 * 1024 * 1024  # bytes per minute (the seed's alert threshold)
    window: float = 60.0  # seconds of RSS history the growth is measured over
    interval: float = 5.0  # seconds between RSS samples


def bind_socket(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def _served(ready_file: Path) -> int:
    """The plan generation a worker reports in its ready file ("PID GENERATION"), -1 if none yet."""
    try:
        return int(ready_file.read_text(encoding="ascii").split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def read_rss(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclasses.dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    ready_file: Path
    growth: GrowthMeter
    retiring: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid


class Supervisor:
    def __init__(self, plan: Plan, settings: ServeSettings, log_level: str = "info",
                 multiproc_dir: str | None = None, log_dir: Path | None = None) -> None:
        self.log_dir = log_dir
        self.plan = plan
        self.settings = settings
        self.log_level = log_level
        self.watchdog = WatchdogSettings(settings.watchdog_memory_growth, settings.watchdog_window,
                                         settings.watchdog_interval)
        self.multiproc_dir = multiproc_dir
        self.sock: socket.socket | None = None
        self.workers: list[_Worker] = []
        self.draining = False
        self.forced = False
        self._runtime = Path(tempfile.mkdtemp(prefix="wasmlet-run-"))
        self._plan_file = self._runtime / "plan.json"
        self._last_sample = 0.0
        self._spawned = 0
        self.on_tick: Callable[[], None] | None = None  # housekeeping, run on the supervisor's loop

    @property
    def address(self) -> tuple[str, int]:
        assert self.sock is not None
        host, port = self.sock.getsockname()[:2]
        return host, port

    def publish(self, plan: Plan, timeout: float = 60.0) -> None:
        """Hand ``plan`` to every worker; return once each serves it (or raise ``ConfigError``).

        The file is replaced atomically (rename), so a worker reads the old plan
        or the new one, never half of one; workers poll it every 20 ms and report
        the generation they serve in their ready file.
        """
        atomic_write(self._plan_file, plan.to_json().encode())
        self.plan = plan
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            waiting = [w for w in list(self.workers)
                       if w.process.poll() is None and not w.retiring and _served(w.ready_file) < plan.generation]
            if not waiting:
                return
            time.sleep(0.005)
        raise ConfigError(f"workers did not apply plan generation {plan.generation} within {timeout:g}s")

    def worker_memory(self) -> dict[int, int]:
        return {w.pid: read_rss(w.pid) for w in self.workers if w.process.poll() is None}

    # Lifecycle ----------------------------------------------------------
    def startup(self) -> None:
        s = self.settings
        self.sock = bind_socket(s.host, s.port, s.backlog)
        self._plan_file.write_text(self.plan.to_json(), encoding="utf-8")
        self.workers = [self._spawn() for _ in range(s.workers)]

    def _spawn(self) -> _Worker:
        assert self.sock is not None
        fd = self.sock.fileno()
        self._spawned += 1
        ready_file = self._runtime / f"ready-{self._spawned}"
        command = [
            sys.executable, "-m", "wasmlet.server._worker",
            "--fd", str(fd), "--plan", str(self._plan_file),
            "--threads", str(self.settings.threads),
            "--drain", str(self.settings.drain_timeout),
            "--log-level", self.log_level,
            "--ready-file", str(ready_file),
        ]
        if self.log_dir is not None:
            command += ["--log-dir", str(self.log_dir)]
        if self.settings.otlp:
            command.append("--otlp")
        if not self.settings.metrics:
            command.append("--no-metrics")
        process = subprocess.Popen(command, pass_fds=(fd,))
        return _Worker(process, ready_file, GrowthMeter(self.watchdog.window))

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.draining:
            log.warning("second signal: forcing exit")
            self.forced = True
            for worker in self.workers:
                if worker.process.poll() is None:
                    worker.process.kill()
            return
        log.info("%s: draining in-flight requests (a second signal forces exit)", signal.Signals(signum).name)
        self.draining = True
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)

    def serve(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            while self._tick():
                time.sleep(0.05)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.shutdown()
        return 1 if self.forced else 0

    def _tick(self) -> bool:
        """One round of supervision; False once every worker has exited after a drain."""
        for worker in list(self.workers):
            code = worker.process.poll()
            if code is None:
                continue
            self._forget(worker)
            if self.draining or worker.retiring:
                log.info("worker %d stopped (exit status %s)", worker.pid, code)
                self.workers.remove(worker)
            else:
                log.error("worker %d exited with %s; restarting it", worker.pid, code)
                self.workers[self.workers.index(worker)] = self._spawn()
                time.sleep(0.2)  # do not spin if start-up keeps failing
        if self.draining:
            return bool(self.workers)
        if self.on_tick is not None:
            self.on_tick()
        now = time.monotonic()
        if now - self._last_sample >= self.watchdog.interval:
            self._last_sample = now
            self._watch_memory(now)
        return True

    def _watch_memory(self, now: float) -> None:
        for worker in list(self.workers):
            if worker.retiring or not worker.ready_file.exists():
                continue
            worker.growth.add(now, read_rss(worker.pid))
            rate = worker.growth.per_minute()
            if worker.growth.covered() >= 0.8 * self.watchdog.window and rate > self.watchdog.memory_growth:
                log.warning("watchdog: worker %d memory grows %.1f MiB/min (threshold %.1f); recycling it",
                            worker.pid, rate / 2**20, self.watchdog.memory_growth / 2**20)
                self._recycle(worker)

    def _recycle(self, worker: _Worker) -> None:
        replacement = self._spawn()
        self.workers.append(replacement)
        deadline = time.monotonic() + 60
        while not replacement.ready_file.exists() and time.monotonic() < deadline:
            if replacement.process.poll() is not None:
                log.error("watchdog: replacement worker failed to start; keeping worker %d", worker.pid)
                return
            time.sleep(0.05)
        worker.retiring = True
        worker.process.send_signal(signal.SIGTERM)  # drains in-flight requests, then exits

    def _forget(self, worker: _Worker) -> None:
        worker.ready_file.unlink(missing_ok=True)
        if self.multiproc_dir:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(worker.pid, self.multiproc_dir)  # type: ignore[no-untyped-call]

    def shutdown(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        with contextlib.suppress(OSError):
            shutil.rmtree(self._runtime)
