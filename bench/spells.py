"""Where wasmlet's slow spells at half its peak come from: which CPU each worker ran on, and for how long.

``bench/tail.py`` finds wasmlet's open-loop p99.99 at half the peak over 10 ms in most
15-second phases, where ``wasmtime serve`` stays near 5 ms at the same rate on the same
two cores. This looks inside such a phase. It serves hello with ``--workers 2``, runs the
C open loop (``bench/openloop.c``, 64 keep-alive connections) at ``--fraction`` of the
wrk -t2 -c32 peak it measures first, and meanwhile samples, every ``--sample-ms``, each
worker's event-loop thread and the generator's thread: the CPU it last ran on
(``/proc/PID/task/TID/stat``, field 39) and its time running and runnable-but-waiting
(``schedstat``, proc(5)). Each request is charged to the worker holding its connection
(``ss -tnp``). Then, in windows of ``--window-ms``, per worker: the slowest request, the
share of samples on the generator's CPU, and the milliseconds run and waited.

What it prints, for the windows where a worker answered a request over 5 ms against the
others: whether the slow worker was sharing a CPU with the generator, how long it ran and
waited, and how long its peer ran in the same windows; how often both workers were slow
at once; and how long the spells lasted. The sampler itself (a Python thread in this
process) costs a few percent of a core. Every load is bounded in time and count; the
server binds 127.0.0.1; nothing is asserted.

    .venv/bin/python bench/spells.py [--rounds 3] [--seconds 15] [--fraction 0.5 | --rate 7200]
"""

from __future__ import annotations

import argparse
import collections
import itertools
import os
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    HELLO_WASM,
    OUT,
    WASMLET,
    free_port,
    machine,
    run_wrk,
    running,
    temp_cache,
    wasmlet_env,
    worker_pids,
    write_manifest,
)
from tail import build_openloop, port_owners

SLOW_MS = 5.0


@dataclass
class Sampler:
    """Every ``period`` s: (monotonic ns, [(cpu, run ns, wait ns)] for each thread), on a thread of its own."""

    threads: list[tuple[int, int]]  # (pid, tid)
    period: float
    rows: list[tuple[int, list[tuple[int, int, int]]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> threading.Thread:
        fds = [(os.open(f"/proc/{pid}/task/{tid}/stat", os.O_RDONLY),
                os.open(f"/proc/{pid}/task/{tid}/schedstat", os.O_RDONLY)) for pid, tid in self.threads]
        thread = threading.Thread(target=self._run, args=(fds,), daemon=True)
        thread.start()
        return thread

    def _run(self, fds: list[tuple[int, int]]) -> None:
        try:
            while not self._stop.is_set():
                values = []
                for stat, schedstat in fds:
                    cpu = int(os.pread(stat, 4096, 0).rsplit(b")", 1)[1].split()[36])  # proc(5): field 39, processor
                    run, wait, _ = os.pread(schedstat, 4096, 0).split()
                    values.append((cpu, int(run), int(wait)))
                self.rows.append((time.monotonic_ns(), values))
                time.sleep(self.period)
        except (OSError, ValueError, IndexError):
            pass  # a thread ended (the generator exits at the end of its phase)
        finally:
            for pair in fds:
                for fd in pair:
                    os.close(fd)

    def stop(self) -> None:
        self._stop.set()


def one_round(openloop: Path, manifest: Path, cache: str, args: argparse.Namespace) -> None:
    port = free_port()
    argv = [WASMLET, "serve", str(manifest), "--listen", f"127.0.0.1:{port}", "--workers", "2"]
    with running(argv, port, env=wasmlet_env(cache), log=OUT / "spells-server.log") as server:
        url = f"http://127.0.0.1:{port}/"
        run_wrk(url, seconds=3, connections=32)  # warm-up
        peak = run_wrk(url, seconds=5, connections=32)["rps"]
        rate = args.rate or peak * args.fraction
        workers = worker_pids(server.proc.pid)
        time.sleep(1)
        with tempfile.TemporaryDirectory() as work:
            samples = Path(work) / "latencies.txt"
            client = subprocess.Popen([str(openloop), str(port), "/", f"{rate:.3f}", str(args.seconds), "64", "10000",
                                       str(samples)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                conn_ports: dict[int, int] = {}
                start = 0
                said: list[str] = []
                assert client.stderr is not None
                for line in client.stderr:  # the connections, then the start (the schedule's time zero)
                    words = line.split()
                    if words[:1] == ["conn"]:
                        conn_ports[int(words[1])] = int(words[2])
                    elif words[:1] == ["start"]:
                        start = int(words[1])
                        break
                    else:
                        said.append(line.strip())
                if not start:  # it exited first, e.g. "openloop: connect: Connection refused"
                    raise SystemExit(f"bench/openloop did not start (status {client.wait(10)}): {' '.join(said)}")
                sampler = Sampler([(pid, pid) for pid in workers] + [(client.pid, client.pid)], args.sample_ms / 1e3)
                sampler.start()
                time.sleep(1)
                owners = port_owners(port)
                client.communicate(timeout=args.seconds + 40)
                sampler.stop()
            finally:
                client.kill()
            rows = [tuple(int(v) for v in line.split()) for line in samples.read_text().splitlines()]
    report(rows, conn_ports, owners, workers, start, sampler.rows, rate, peak, args.window_ms)


def report(rows: list[tuple[int, ...]], conn_ports: dict[int, int], owners: dict[int, int], workers: list[int],
           start: int, samples: list[tuple[int, list[tuple[int, int, int]]]], rate: float, peak: float,
           window_ms: int) -> None:
    window_us = window_ms * 1000
    latencies = sorted(row[0] for row in rows)
    p9999 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.9999))] / 1e3
    split = collections.Counter(owners.get(port) for port in conn_ports.values())
    print(f"\n{rate:,.0f} req/s ({rate / peak:.2f} of the wrk peak, {peak:,.0f}), {len(rows):,} requests, "
          f"connections {'/'.join(str(split[w]) for w in workers)} over the workers: p99.99 {p9999:.1f} ms")
    slowest: dict[tuple[int, int], int] = collections.defaultdict(int)  # (window, worker) -> us
    for latency, _lag, conn, due in rows:
        worker = owners.get(conn_ports.get(conn, -1), -1)
        key = (due // window_us, worker)
        slowest[key] = max(slowest[key], latency)
    # per (window, worker): samples, samples on the generator's CPU, run ns, wait ns, samples on a peer's CPU,
    # the longest stretch of samples it spent mostly waiting (ns), the stretch so far
    use: dict[tuple[int, int], list[int]] = collections.defaultdict(lambda: [0, 0, 0, 0, 0, 0, 0])
    waiting: dict[int, int] = collections.defaultdict(int)
    for (then, before), (at, after) in itertools.pairwise(samples):
        window = (at - start) // (window_us * 1000)
        if window < 0:
            continue
        generator_cpu = after[-1][0]
        for i, worker in enumerate(workers):
            entry = use[(window, worker)]
            entry[0] += 1
            entry[1] += after[i][0] == generator_cpu
            entry[2] += after[i][1] - before[i][1]
            entry[3] += after[i][2] - before[i][2]
            entry[4] += any(after[j][0] == after[i][0] for j in range(len(workers)) if j != i)
            waited = after[i][2] - before[i][2]
            waiting[worker] = waiting[worker] + waited if waited > (at - then) // 2 else 0
            entry[5] = max(entry[5], waiting[worker])
    last_slow = -2
    windows = sorted({w for w, _ in use if any((w, worker) in slowest for worker in workers)})
    slow: list[tuple[float, ...]] = []
    calm: list[tuple[float, ...]] = []
    peer_of_slow: list[float] = []
    both = 0
    spell_lengths: list[int] = []  # consecutive windows with a slow worker
    for window in windows:
        slow_here = [w for w in workers if slowest.get((window, w), 0) > SLOW_MS * 1e3]
        both += len(slow_here) == len(workers)
        if slow_here and spell_lengths and window - 1 == last_slow:
            spell_lengths[-1] += 1
        elif slow_here:
            spell_lengths.append(1)
        last_slow = window if slow_here else -2
        for worker in workers:
            entry = use[(window, worker)]
            shares = (entry[1] / max(entry[0], 1), entry[4] / max(entry[0], 1), entry[2] / 1e6, entry[3] / 1e6,
                      entry[5] / 1e6)
            if worker in slow_here:
                slow.append(shares)
                if len(slow_here) == 1:
                    peer = use[(window, next(w for w in workers if w != worker))]
                    peer_of_slow.append(peer[2] / 1e6)
            else:
                calm.append(shares)

    def line(label: str, values: list[tuple[float, ...]]) -> str:
        if not values:
            return f"| {label} | 0 | | | | | |"
        means = [statistics.mean(v[i] for v in values) for i in range(5)]
        return (f"| {label} | {len(values)} | {100 * means[0]:.0f} % | {100 * means[1]:.0f} % | {means[2]:.1f} | "
                f"{means[3]:.1f} | {means[4]:.1f} |")

    print(f"\n| a worker's {window_ms} ms windows | windows | on the generator's CPU | on its peer's CPU | ran (ms) | "
          f"waited for a CPU (ms) | longest wait (ms) |\n|---|---:|---:|---:|---:|---:|---:|")
    print(line(f"with a request over {SLOW_MS:g} ms", slow))
    print(line("the others", calm))
    if peer_of_slow:
        print(f"\nIn the windows where one worker alone was slow, its peer ran {statistics.mean(peer_of_slow):.1f} ms "
              f"(the slow one {statistics.mean(v[2] for v in slow):.1f} ms on average over all its slow windows).")
    print(f"Windows with both workers slow: {both} of {len(windows)}. Spells (consecutive windows with a slow "
          f"worker): {len(spell_lengths)}, lasting {window_ms} ms x "
          f"{', '.join(str(n) for n in sorted(spell_lengths, reverse=True)[:12])}"
          f"{' ...' if len(spell_lengths) > 12 else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each with a fresh server")
    parser.add_argument("--seconds", type=int, default=15, help="length of the open-loop phase")
    parser.add_argument("--fraction", type=float, default=0.5, help="the rate, as a fraction of the wrk peak")
    parser.add_argument("--rate", type=float, default=0.0, help="a rate in req/s instead of --fraction")
    parser.add_argument("--window-ms", type=int, default=50)
    parser.add_argument("--sample-ms", type=float, default=5.0)
    args = parser.parse_args()
    print(machine())
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    OUT.mkdir(parents=True, exist_ok=True)
    with temp_cache() as cache:
        openloop = build_openloop(Path(cache))
        manifest = write_manifest(Path(cache) / "hello.yaml", "hello", [("hello", HELLO_WASM, "/")], queue=2000)
        for round_ in range(1, args.rounds + 1):
            print(f"\n## round {round_}")
            one_round(openloop, manifest, cache, args)


if __name__ == "__main__":
    main()
