"""The server lifecycle: bind, start workers, watch them, drain on SIGTERM, force on a second signal.

The supervisor binds the listening socket once and hands it to each worker
process (``pass_fds``), so ``--listen 127.0.0.1:0`` works and all workers
accept from one queue; each takes a connection only while it holds no more
than the others (``_balance``: their counts on a board the supervisor keeps
in its runtime folder, one slot per worker, cleared when it exits). It
restarts workers that die, and its watchdog recycles a worker whose resident
memory grows faster than a threshold (the seed's 2 MB a minute by default,
``--watchdog-*``, defaults in ``_settings``), fitted after its warm-up and
after the last deploy (a step, not a trend): a replacement is started and
ready before the old worker is told to drain, so no request is refused on
the way.

Both are bounded (issue 14: a replacement that failed to start used to stay
in the list and be restarted for ever beside the worker it was to replace,
six workers for ``--workers 1`` after five failed recycles, and the restart
loop ran at a fixed 0.2 s). A worker that dies is restarted after a delay that
doubles with each worker in a row that failed to serve ``_STABLE`` seconds
(``_RESTART_BASE`` up to ``_RESTART_MAX``). One recycle runs at a time and
only while no old worker is still draining, so at most ``--workers`` + 1
processes run; a replacement that exits or is not ready within
``_READY_TIMEOUT`` is dropped, the old worker keeps serving, and the next
recycle waits ``_RECYCLE_BASE``, doubling up to ``_RECYCLE_MAX``. Nothing
here sleeps: the loop ticks every 50 ms and acts on what is due.

Workers are forked from a zygote that imported everything a worker needs
(``_zygote``, ``wasmlet._prefork``; ``wasmlet serve`` starts it before it
deploys), so a new worker only reads its plan. The supervisor is a child
subreaper and the workers are its children, watched, signalled and drained
as before. If the zygote dies or refuses, that worker is spawned with
``Popen`` (``python -m wasmlet.server._worker``, as without a zygote or with
``WASMLET_ZYGOTE=0``) and a new zygote is started (``ZygoteKeeper``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from .._errors import ConfigError
from .._files import atomic_write
from .._prefork import WorkerProcess, ZygoteKeeper, take_early
from ..plan import Plan
from ..telemetry import GrowthMeter
from ._board import BALANCE_ENV, SLOTS, Board
from ._settings import ServeSettings

__all__ = ["Supervisor", "WatchdogSettings", "bind_socket", "read_rss"]

log = logging.getLogger("wasmlet.server")

_RESTART_BASE = 0.25  # seconds before restarting a worker that failed early; doubled for each in a row
_RESTART_MAX = 30.0
_STABLE = 10.0  # seconds a worker must serve for the failures before it to be forgotten
_RECYCLE_BASE = 5.0  # seconds before another recycle once a replacement failed; doubled for each in a row
_RECYCLE_MAX = 600.0
_READY_TIMEOUT = 60.0  # a replacement not ready by then is stopped; the old worker keeps serving
_ZYGOTE_WAIT = 10.0  # seconds startup waits for a zygote started early to finish its imports


@dataclasses.dataclass(frozen=True)
class WatchdogSettings:
    """``ServeSettings``' watchdog fields (defaults there, in ``_settings``)."""

    memory_growth: float  # bytes per minute
    window: float  # seconds of RSS history the growth is measured over
    interval: float  # seconds between RSS samples
    warmup: float  # seconds after a worker starts before it is judged


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


@dataclasses.dataclass(eq=False)
class _Worker:
    process: WorkerProcess  # a subprocess.Popen, or a ForkedProcess from the zygote
    ready_file: Path
    growth: GrowthMeter
    started: float = dataclasses.field(default_factory=time.monotonic)
    retiring: bool = False
    ready: bool = False  # its ready file appeared
    replaces: _Worker | None = None  # a watchdog replacement for this worker, until it is ready
    measured_since: float = 0.0  # the plan change its growth samples start after (time.monotonic())
    slot: int | None = None  # its slot on the connection board (``_balance``), if any

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
                                         settings.watchdog_interval, settings.watchdog_warmup)
        self.multiproc_dir = multiproc_dir
        self.sock: socket.socket | None = None
        self.workers: list[_Worker] = []
        self.draining = False
        self.forced = False
        self._runtime = Path(tempfile.mkdtemp(prefix=f"wasmlet-run-{os.getpid()}-"))  # the pid: swept once dead
        self._plan_file = self._runtime / "plan.json"
        self._last_sample = 0.0
        self._published = 0.0  # when the workers last applied a new plan (time.monotonic())
        self._spawned = 0
        self._failures = 0  # workers in a row that exited before serving _STABLE seconds
        self._restarts: list[float] = []  # when each pending restart is due (time.monotonic())
        self._recycle_failures = 0  # replacements in a row that failed to start
        self._next_recycle = 0.0  # no recycle before this
        self.on_tick: Callable[[], None] | None = None  # housekeeping, run on the supervisor's loop
        self.zygotes = ZygoteKeeper(self._mark_dead)
        self.board: Board | None = None  # the workers' connection counts (``_board``)
        self._previous_handlers: dict[int, Callable[[int, FrameType | None], Any] | int | None] | None = None

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
        atomic_write(self._plan_file, plan.to_json().encode(), durable=False)  # the runtime folder's: see _files
        self.plan = plan
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # A replacement still starting reads the new plan when it starts: not waited for.
            waiting = [w for w in list(self.workers)
                       if w.process.poll() is None and not w.retiring and w.replaces is None
                       and _served(w.ready_file) < plan.generation]
            if not waiting:
                self._published = time.monotonic()  # read by the watchdog, on the supervisor's loop
                return
            time.sleep(0.005)
        raise ConfigError(f"workers did not apply plan generation {plan.generation} within {timeout:g}s")

    def worker_memory(self) -> dict[int, int]:
        return {w.pid: read_rss(w.pid) for w in self.workers if w.process.poll() is None}

    # Lifecycle ----------------------------------------------------------
    def startup(self) -> None:
        s = self.settings
        early = take_early()  # started by ``wasmlet serve`` before it deployed: worth waiting for
        self.zygotes.start(early)
        self.sock = bind_socket(s.host, s.port, s.backlog)
        self._plan_file.write_text(self.plan.to_json(), encoding="utf-8")
        if os.environ.get(BALANCE_ENV, "1") != "0":
            self.board = Board.create(self._runtime / "connections")
        if early is not None and not early.ready(_ZYGOTE_WAIT):
            log.warning("zygote %d not ready (within %.0fs); spawning the first workers with Popen", early.pid,
                        _ZYGOTE_WAIT)
        self.workers = []
        for _ in range(s.workers):
            self.workers.append(self._spawn())  # one by one: each spawn picks a board slot no worker holds
        self._catch_signals()  # after the spawns: a drain signals every worker there is

    def _spawn(self) -> _Worker:
        assert self.sock is not None
        fd = self.sock.fileno()
        self._spawned += 1
        ready_file = self._runtime / f"ready-{self._spawned}"
        args = [
            "--fd", str(fd), "--plan", str(self._plan_file),
            "--threads", str(self.settings.threads),
            "--drain", str(self.settings.drain_timeout),
            "--log-level", self.log_level,
            "--ready-file", str(ready_file),
            *self.settings.worker_http_args(),
        ]
        if self.log_dir is not None:
            args += ["--log-dir", str(self.log_dir)]
        slot = self._free_slot()
        if slot is not None:
            assert self.board is not None
            self.board.clear(slot)
            args += ["--board", str(self.board.path), "--slot", str(slot)]
        if self.settings.otlp:
            args.append("--otlp")
        if not self.settings.metrics:
            args.append("--no-metrics")
        if self.settings.worker_priority is not None:
            args += ["--priority", str(self.settings.worker_priority)]
        process: WorkerProcess | None = self.zygotes.fork(args, fd)  # as ``python -m ..._worker ARGS``
        if process is None:
            process = subprocess.Popen([sys.executable, "-m", "wasmlet.server._worker", *args], pass_fds=(fd,))
            log.info("worker %d started (spawned)", process.pid)
        return _Worker(process, ready_file, GrowthMeter(self.watchdog.window), time.monotonic(), slot=slot)

    def _free_slot(self) -> int | None:
        """A board slot no worker holds (None without a board, or with every slot held: no balancing then)."""
        if self.board is None:
            return None
        held = {w.slot for w in self.workers}
        return next((i for i in range(SLOTS) if i not in held), None)

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
        self._catch_signals()
        try:
            while self._tick():
                time.sleep(0.05)
        finally:
            self.shutdown()
        return 1 if self.forced else 0

    def _catch_signals(self) -> None:
        """Drain on SIGTERM/SIGINT from the moment workers can serve: forked ones answer before
        ``wasmlet serve`` has built its admin API and called ``serve``."""
        if self._previous_handlers is None and threading.current_thread() is threading.main_thread():
            self._previous_handlers = {sig: signal.signal(sig, self._on_signal)
                                       for sig in (signal.SIGTERM, signal.SIGINT)}

    def _tick(self) -> bool:
        """One round of supervision; False once every worker has exited after a drain."""
        now = time.monotonic()
        if not self.draining:
            self.zygotes.watch()
        for worker in list(self.workers):
            code = worker.process.poll()
            if code is None:
                self._check_start(worker, now)
                continue
            self._forget(worker)
            self.workers.remove(worker)
            if self.draining or worker.retiring:
                log.info("worker %d stopped (exit status %s)", worker.pid, code)
            elif worker.replaces is not None:
                self._replacement_failed(worker, f"exited with status {code}", now)
            else:
                self._died(worker, code, now)
        if self.draining:
            self._restarts.clear()
            return bool(self.workers)
        due = [t for t in self._restarts if t <= now]
        if due:
            self._restarts = [t for t in self._restarts if t > now]
            for _ in due:
                self.workers.append(self._spawn())
        if self.on_tick is not None:
            self.on_tick()
        if now - self._last_sample >= self.watchdog.interval:
            self._last_sample = now
            self._watch_memory(now)
        return True

    def _check_start(self, worker: _Worker, now: float) -> None:
        if not worker.ready and worker.ready_file.exists():
            worker.ready = True
            if worker.replaces is not None:
                self._replaced(worker)
        elif not worker.ready and worker.replaces is not None and now - worker.started > _READY_TIMEOUT:
            log.error("watchdog: replacement worker %d not ready after %.0fs; stopping it", worker.pid,
                      _READY_TIMEOUT)
            worker.process.kill()  # reaped on the next tick, as a replacement that failed
        if worker.ready and self._failures and now - worker.started >= _STABLE:
            self._failures = 0

    def _died(self, worker: _Worker, code: int, now: float) -> None:
        """A serving (or starting) worker exited: its replacement takes over, or a restart is scheduled."""
        successor = next((w for w in self.workers if w.replaces is worker), None)
        if successor is not None:
            successor.replaces = None
            log.error("worker %d exited with %s; its replacement %d takes over", worker.pid, code, successor.pid)
            return
        if not worker.ready or now - worker.started < _STABLE:
            self._failures += 1  # it failed to start, or to keep serving: back off
        else:
            self._failures = 0  # it served for a while: restart it at once
        delay = 0.0 if self._failures == 0 else min(_RESTART_MAX, _RESTART_BASE * 2 ** (self._failures - 1))
        log.error("worker %d exited with %s; restarting it in %.2fs (%d failed start(s) in a row)",
                  worker.pid, code, delay, self._failures)
        self._restarts.append(now + delay)

    def _watch_memory(self, now: float) -> None:
        for worker in list(self.workers):
            if worker.retiring or worker.replaces is not None or not worker.ready:
                continue
            if now - worker.started < self.watchdog.warmup:
                continue  # its pools and arenas are still filling: growth, but not a leak
            if worker.measured_since < self._published:
                # A deploy loads and drops versions, and the new ones' first instances touch their memory:
                # a step in RSS, not a trend. The fit restarts a sixth of a window after it (bench/
                # watchdog_baseline.py: fitted across, an 8 MiB module's step reads as 5 MiB/min).
                if now - self._published < self.watchdog.window / 6:
                    continue
                worker.growth.reset()
                worker.measured_since = self._published
            worker.growth.add(now, read_rss(worker.pid))
            rate = worker.growth.per_minute()
            if worker.growth.covered() >= 0.8 * self.watchdog.window and rate > self.watchdog.memory_growth:
                log.warning("watchdog: worker %d memory grows %.1f MiB/min (threshold %.1f); recycling it",
                            worker.pid, rate / 2**20, self.watchdog.memory_growth / 2**20)
                self._recycle(worker, now)

    def _recycle(self, worker: _Worker, now: float) -> None:
        """Start a replacement for ``worker``; ``worker`` drains once it is ready (``_replaced``)."""
        busy = [w for w in self.workers if w.replaces is not None or (w.retiring and w.process.poll() is None)]
        if busy or now < self._next_recycle:
            log.info("watchdog: worker %d waits to be recycled (%s)", worker.pid,
                     "another recycle is under way" if busy else
                     f"backing off for {self._next_recycle - now:.0f}s after a replacement failed")
            return
        replacement = self._spawn()
        replacement.replaces = worker
        self.workers.append(replacement)

    def _replaced(self, replacement: _Worker) -> None:
        old, replacement.replaces = replacement.replaces, None
        self._recycle_failures = 0
        if old is not None and old in self.workers and old.process.poll() is None:
            old.retiring = True
            old.process.send_signal(signal.SIGTERM)  # drains in-flight requests, then exits

    def _replacement_failed(self, replacement: _Worker, why: str, now: float) -> None:
        old = replacement.replaces
        self._recycle_failures += 1
        delay = min(_RECYCLE_MAX, _RECYCLE_BASE * 2 ** (self._recycle_failures - 1))
        self._next_recycle = now + delay
        log.error("watchdog: replacement worker %d failed to start (%s); worker %d keeps serving; "
                  "next recycle in %.0fs at the earliest", replacement.pid, why, old.pid if old else -1, delay)

    def _forget(self, worker: _Worker) -> None:
        worker.ready_file.unlink(missing_ok=True)
        if self.board is not None and worker.slot is not None:
            self.board.clear(worker.slot)  # a killed worker's count no longer holds its peers back
        self._mark_dead(worker.pid)

    def _mark_dead(self, pid: int) -> None:
        if self.multiproc_dir:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, self.multiproc_dir)  # type: ignore[no-untyped-call]

    def shutdown(self) -> None:
        if self._previous_handlers is not None and threading.current_thread() is threading.main_thread():
            for sig, handler in self._previous_handlers.items():
                signal.signal(sig, handler)
            self._previous_handlers = None
        self.zygotes.close()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.board is not None:
            self.board.close()
            self.board = None
        with contextlib.suppress(OSError):
            shutil.rmtree(self._runtime)
