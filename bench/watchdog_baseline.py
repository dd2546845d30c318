"""The memory watchdog's baseline: how fast does a *healthy* host's worker RSS grow?

Runs a real ``wasmlet serve`` (2 workers by default) with the watchdog
disarmed (``--watchdog-memory-growth 1Ti``), and for ``--minutes``:

- deploys every ``--deploy-every`` seconds through the admin API, in turn: a
  new spec of the same module (an environment value changes), a new module
  (``hello`` with a fresh custom section: a new digest, compiled and loaded),
  every ``--big-every``-th time a module with an 8 MiB data segment, and every
  fifth time a rollback;
- drives bounded traffic on loopback (``--rps`` requests per second in total,
  from 4 client threads): GET ``/`` (hello, 45 %), POST ``/echo`` with 1 KiB
  (25 %), GET ``/churn`` (the app being redeployed, 20 %), GET ``/fail`` (a
  guest that exits with 3: a 501 and a log line, 5 %) and GET ``/mem``
  (``membomb`` under a 4Mi limit: touches its memory, then a 507, 5 %), a new
  connection for one request in four;
- samples every worker's VmRSS once a second.

It prints RSS per worker at each minute, the growth per minute over the whole
run and over its second half, and what the watchdog itself would compute (the
same ``GrowthMeter``, fed every ``--interval`` s over a ``--window`` s window,
judging once the window is 80 % covered): the highest slope it would see
after each candidate warm-up, so a default threshold and warm-up can be
chosen that never fire here; and the same with the fit restarted a sixth of a
window after each deploy (a deploy is a step, not a leak), as the supervisor
does. Nothing is asserted. Raw samples and deploy times go to
``bench/out/watchdog_baseline.json``.

    .venv/bin/python bench/watchdog_baseline.py [--minutes 10] [--workers 2]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import (
    ECHO_WASM,
    HELLO_WASM,
    OUT,
    ROOT,
    WASMLET,
    free_port,
    machine,
    with_custom_section,
    worker_pids,
)
from wasmlet.control import AdminClient
from wasmlet.telemetry import GrowthMeter

EXIT3_WASM = ROOT / "tests" / "guests" / "exit3.wasm"
MEMBOMB_WASM = ROOT / "tests" / "guests" / "membomb.wasm"
WARMUPS = (0, 30, 60, 90, 120, 180, 300)  # candidate warm-ups, seconds after a worker is first seen


def base_manifest(path: Path) -> Path:
    """The steady apps; their modules copied beside the manifest (the one folder the host allows)."""
    modules = {}
    for source in (HELLO_WASM, ECHO_WASM, EXIT3_WASM, MEMBOMB_WASM):
        modules[source] = path.parent / source.name
        modules[source].write_bytes(source.read_bytes())
    path.write_text(f"""\
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: base
spec:
  components:
    - name: hello
      type: wasm
      properties:
        moduleURL: {modules[HELLO_WASM]}
        memoryLimit: "16Mi"
        route: /
    - name: echo
      type: wasm
      properties:
        moduleURL: {modules[ECHO_WASM]}
        memoryLimit: "16Mi"
        route: /echo
    - name: fail
      type: wasm
      properties:
        moduleURL: {modules[EXIT3_WASM]}
        memoryLimit: "16Mi"
        route: /fail
    - name: mem
      type: wasm
      properties:
        moduleURL: {modules[MEMBOMB_WASM]}
        memoryLimit: "4Mi"
        route: /mem
""")
    return path


def big_module() -> bytes:
    """A WAGI module with an 8 MiB data segment (a big static table, as compiled languages' runtimes have)."""
    import wasmtime

    def escaped(data: bytes) -> str:
        return "".join(f"\\{b:02x}" for b in data)

    body = b"Content-Type: text/plain\n\nbig\n"
    return bytes(wasmtime.wat2wasm(f"""(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 256)
      (data (i32.const 64) "{escaped(body)}")
      (data (i32.const 0) "{escaped(bytes([64, 0, 0, 0, len(body), 0, 0, 0]))}")
      (data (i32.const 1048576) "{escaped(random.Random(1).randbytes(8 << 20))}")
      (func (export "_start") (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))"""))


def churn_manifest(module: Path, n: int, memory: str = "16Mi") -> str:
    return f"""\
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: churn
spec:
  components:
    - name: web
      type: wasm
      properties:
        moduleURL: {module}
        memoryLimit: "{memory}"
        route: /churn
        environment:
          - name: DEPLOY
            value: "{n}"
"""


class Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: dict[str, int] = {}
        self.deploys = 0
        self.rollbacks = 0
        self.deploy_times: list[float] = []  # seconds since the run began, once each deploy returned
        self.deploy_errors: list[str] = []

    def status(self, key: str) -> None:
        with self.lock:
            self.statuses[key] = self.statuses.get(key, 0) + 1


def traffic(port: int, rate: float, stop: threading.Event, counters: Counters, seed: int) -> None:
    """One client thread: ``rate`` requests per second, paced, until ``stop``."""
    rng = random.Random(seed)
    conn: http.client.HTTPConnection | None = None
    body = b"x" * 1024
    next_at = time.monotonic()
    while not stop.is_set():
        next_at += 1.0 / rate
        delay = next_at - time.monotonic()
        if delay > 0:
            stop.wait(delay)
        else:
            next_at = time.monotonic()  # behind: do not burst to catch up
        roll = rng.random()
        method, path, data = (("GET", "/", None) if roll < 0.45 else ("POST", "/echo", body) if roll < 0.70
                              else ("GET", "/churn", None) if roll < 0.90 else ("GET", "/fail", None) if roll < 0.95
                              else ("GET", "/mem", None))
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request(method, path, body=data)
            response = conn.getresponse()
            response.read()
            counters.status(f"{path} {response.status}")
            if rng.random() < 0.25 or response.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as exc:
            counters.status(f"{path} {type(exc).__name__}")
            if conn is not None:
                conn.close()
            conn = None
    if conn is not None:
        conn.close()


def deployer(admin: AdminClient, work: Path, every: float, big_every: int, started: float, stop: threading.Event,
             counters: Counters) -> None:
    base = HELLO_WASM.read_bytes()
    big = big_module() if big_every else b""
    module = work / "churn-0.wasm"
    memory = "16Mi"
    n = 0
    while not stop.wait(every):
        n += 1
        try:
            if n % 5 == 0:
                admin.rollback("churn/web")
                counters.rollbacks += 1
                counters.deploy_times.append(time.monotonic() - started)
                continue
            if big_every and n % big_every == 0:  # a new big module: 8 MiB more to compile, store and map
                module = work / f"churn-{n}.wasm"
                module.write_bytes(with_custom_section(big, "wasmlet-bench", f"deploy {n}".encode()))
                memory = "32Mi"
            elif n % 2 == 0:  # a new module: new digest, compiled by the control plane, loaded by the workers
                module = work / f"churn-{n}.wasm"
                module.write_bytes(with_custom_section(base, "wasmlet-bench", f"deploy {n}".encode()))
                memory = "16Mi"
            admin.deploy(churn_manifest(module, n, memory), str(work / "churn.yaml"))
            counters.deploys += 1
            counters.deploy_times.append(time.monotonic() - started)
        except Exception as exc:  # keep going; the report lists them
            counters.deploy_errors.append(f"{n}: {exc}")


def rss(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, bytes) in bytes per minute."""
    meter = GrowthMeter(window=float("inf"))
    for t, v in points:
        meter.add(t, v)
    return meter.per_minute()


def watchdog_view(points: list[tuple[float, float]], window: float, interval: float, warmup: float,
                  resets: Sequence[float] = ()) -> tuple[float, int]:
    """The highest slope the watchdog would act on: samples every ``interval`` from age ``warmup`` on,
    judged once ``0.8 * window`` is covered, and with ``resets`` (deploys: seconds, same clock as
    ``points``) the fit restarted a sixth of a window after each, as the supervisor does; and how many
    times it judged (``(0.0, 0)`` if never)."""
    meter = GrowthMeter(window)
    highest = float("-inf")
    judged = 0
    next_sample = warmup
    pending = sorted(resets)
    last = float("-inf")
    for t, v in points:
        if t < next_sample:
            continue
        next_sample = t + interval
        while pending and pending[0] <= t:
            last = pending.pop(0)
            meter.reset()
        if t - last < window / 6:
            continue
        meter.add(t, v)
        if meter.covered() >= 0.8 * window:
            highest = max(highest, meter.per_minute())
            judged += 1
    return (highest, judged) if judged else (0.0, 0)


def report(result: dict[str, Any], window: float, interval: float) -> None:
    """Per worker: RSS at start and end, growth per minute, and what the watchdog would have judged."""
    cell = {w: f"w>={w}s" for w in WARMUPS}
    print(f"\nper worker (MiB/min): whole run, second half; the watchdog's highest slope after a warm-up of\n"
          f"{'worker':>8} {'start':>7} {'end':>7} {'whole':>6} {'2nd½':>6}  {'  '.join(cell.values())}"
          "   ('-': never judged)")
    highest: dict[bool, dict[int, tuple[float, int]]] = {r: dict.fromkeys(WARMUPS, (0.0, 0)) for r in (False, True)}
    for pid, worker in result["workers"].items():
        seen = worker["first_seen"]
        aged = [(t - seen, v) for t, v in worker["samples"]]  # seconds since this worker was first seen
        half = [(t, v) for t, v in aged if t >= aged[-1][0] / 2]
        for reset in (False, True):
            resets = [t - seen for t in result["deploy_times"]] if reset else []
            views = {w: watchdog_view(aged, window, interval, w, resets) for w in WARMUPS}
            for w, (rate, judged) in views.items():
                best, count = highest[reset][w]
                highest[reset][w] = (max(best, rate) if count else rate, count + judged) if judged else (best, count)
            print(f"{pid:>8} {aged[0][1] / 2**20:7.1f} {aged[-1][1] / 2**20:7.1f} "
                  f"{slope_per_minute(aged) / 2**20:6.2f} {slope_per_minute(half) / 2**20:6.2f}  "
                  + "  ".join(f"{rate / 2**20 if judged else '-':>{len(cell[w])}{'.2f' if judged else ''}}"
                              for w, (rate, judged) in views.items())
                  + ("  fit restarted after deploys" if reset else ""))
    for reset in (False, True):
        print(f"\nhighest slope the watchdog judged{' with the fit restarted after each deploy' if reset else ''}, "
              "MiB/min (judgements), by warm-up: "
              + ", ".join(f"{w}s: {rate / 2**20:.2f} ({n})" if n else f"{w}s: never judged"
                          for w, (rate, n) in highest[reset].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--deploy-every", type=float, default=5.0, help="seconds between deploys")
    parser.add_argument("--rps", type=float, default=60.0, help="requests per second, all clients together")
    parser.add_argument("--big-every", type=int, default=6, help="every Nth deploy is an 8 MiB module (0: never)")
    parser.add_argument("--window", type=float, default=60.0, help="the watchdog's window (s)")
    parser.add_argument("--interval", type=float, default=5.0, help="the watchdog's sampling interval (s)")
    parser.add_argument("--analyze", type=Path, default=None, metavar="JSON",
                        help="only report on a saved run (bench/out/watchdog_baseline.json)")
    args = parser.parse_args()
    if args.analyze is not None:
        saved = json.loads(args.analyze.read_text())
        print(f"{args.analyze}: {saved['args']}")
        report(saved, saved["args"]["window"], saved["args"]["interval"])
        return

    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="wasmlet-watchdog-"))
    port, admin_port = free_port(), free_port()
    state = work / "state"
    env = {**os.environ, "WASMLET_CACHE_DIR": str(work / "cache"), "PYTHONUNBUFFERED": "1"}
    argv = [WASMLET, "serve", str(base_manifest(work / "base.yaml")), "--listen", f"127.0.0.1:{port}",
            "--admin-listen", f"127.0.0.1:{admin_port}", "--state-dir", str(state),
            "--workers", str(args.workers), "--threads", str(args.threads),
            "--allow-files", str(work),  # the churn app's modules, deployed through the admin API
            "--watchdog-memory-growth", "1Ti"]  # disarmed: this run measures, it must not recycle
    log_path = OUT / "watchdog_baseline.log"
    print(machine())
    print(f"\n{' '.join(argv)}\nlog: {log_path}; deploy every {args.deploy_every:g} s, {args.rps:g} req/s, "
          f"{args.minutes:g} min", flush=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    counters = Counters()
    stop = threading.Event()
    samples: dict[int, list[tuple[float, float]]] = {}  # worker pid -> (seconds since the run began, rss)
    first_seen: dict[int, float] = {}
    threads: list[threading.Thread] = []
    admin: AdminClient | None = None
    started = time.monotonic()
    try:
        deadline = time.monotonic() + 60
        while not (state / "admin-token").exists() or len(worker_pids(proc.pid)) < args.workers:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"wasmlet serve did not start; see {log_path}")
            time.sleep(0.1)
        admin = AdminClient(f"http://127.0.0.1:{admin_port}", (state / "admin-token").read_text().strip())
        (work / "churn-0.wasm").write_bytes(HELLO_WASM.read_bytes())
        admin.deploy(churn_manifest(work / "churn-0.wasm", 0), str(work / "churn.yaml"))
        started = time.monotonic()
        for i in range(4):
            threads.append(threading.Thread(target=traffic, args=(port, args.rps / 4, stop, counters, i), daemon=True))
        threads.append(threading.Thread(target=deployer, args=(admin, work, args.deploy_every, args.big_every,
                                                               started, stop, counters), daemon=True))
        for thread in threads:
            thread.start()
        end = started + args.minutes * 60
        next_minute = 0
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise SystemExit(f"wasmlet serve exited with {proc.returncode}; see {log_path}")
            now = time.monotonic() - started
            for pid in worker_pids(proc.pid):
                value = rss(pid)
                if value:
                    first_seen.setdefault(pid, now)
                    samples.setdefault(pid, []).append((now, value))
            if now >= next_minute * 60:
                row = "  ".join(f"{pid}={points[-1][1] / 2**20:7.1f}" for pid, points in sorted(samples.items()))
                print(f"t={now / 60:4.1f} min  RSS MiB  {row}  deploys={counters.deploys} "
                      f"rollbacks={counters.rollbacks} requests={sum(counters.statuses.values())}", flush=True)
                next_minute += 1
            time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
        if admin is not None:
            admin.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    print(f"\nrequests by path and status: {dict(sorted(counters.statuses.items()))}")
    print(f"deploys {counters.deploys}, rollbacks {counters.rollbacks}, deploy errors {len(counters.deploy_errors)}")
    for line in counters.deploy_errors[:5]:
        print(f"  {line}")
    result = {"args": vars(args), "deploy_times": counters.deploy_times,
              "workers": {str(pid): {"first_seen": first_seen[pid], "samples": points}
                          for pid, points in sorted(samples.items())}}
    (OUT / "watchdog_baseline.json").write_text(json.dumps(result))
    report(result, args.window, args.interval)


if __name__ == "__main__":
    main()
