"""Tail latency of wasmlet serving hello: closed loop at 32 connections, then a constant rate.

1. ``wrk -t2 -c32 -d{seconds}s --latency`` (closed loop, as in issue 13): req/s (the peak used
   below), p50/p99/p99.99. Goal: p99 under 5 ms.
2. Half that peak, at a constant rate, for ``--seconds``, measured three ways:
   * an open-loop generator in C (``bench/openloop.c``, one thread on epoll, built here with
     ``cc``): request i is due at ``start + i / rate`` whatever happened to the ones before, on
     one of ``--connections`` keep-alive connections, and its latency counts from when it was
     due (so a stall is charged to every request it delays: no coordinated omission; the
     client's own lateness is charged too, which makes it conservative). This is the figure
     the goal is judged on;
   * the same schedule from asyncio + uvloop (below), the generator of earlier sessions: it
     spends ~100 us of CPU a request on the 2 cores the server runs on, and its own lateness
     (the "waiting in the client" column) lands in its figures;
   * Debian's ``hey -q`` (``-c 16`` workers, each at rate/16 per second, ``-o csv`` for every
     sample): closed loop per worker under a rate limit, latency from the actual send, so a stall
     delays later sends instead of counting against them (coordinated omission; an optimistic
     figure, shown for comparison).
   Goal: p99.99 under 10 ms.

3. With ``--reference``, the same phases against the reference host, ``wasmtime serve -O
   pooling-allocator=y`` on the C ``wasi:http`` hello (as ``bench/http_hello.py``), at the rates
   wasmlet ran: the tail this machine and these clients allow a host written in Rust, under the
   same load.

Every load is bounded in time (``--seconds``) and count (rate x seconds); servers on 127.0.0.1.
The load generators share the 2 cores with the server.

    .venv/bin/python bench/tail.py [--seconds 20] [--workers 2] [--server uvicorn]
        [--fractions 0.5,0.25 | --rates 3563,4679] [--reference] [--repeat 5] [--no-hey] [--no-asyncio]
        [--worker-priority -10] [--client-batch] [--python VENV]

With ``--worker-priority NICE``, each round runs wasmlet twice, without and with ``wasmlet serve
--worker-priority NICE`` (the second at the first one's rates), and with ``--reference`` the reference
host twice too, the second under ``nice -n NICE``: a priority is compared with a priority. With
``--client-batch`` the C open loop runs under ``SCHED_BATCH``: a client that shares the server's cores
then does not preempt a server thread each time it wakes (perf sched counted ~6,000 such preemptions
a second at 6,700 req/s, docs/benchmarks.md section 32); its own lateness still counts.

With ``--python VENV`` (a virtualenv of another interpreter with wasmlet's requirements installed), each
round runs these sources again under VENV's interpreter, at the first one's rates: the interpreter's
build is compared with the same code and load (docs/benchmarks.md section 33).

Every row also has the server's CPU time and context switches per request over its phase
(``Usage``): under wrk's batches and in the sparse stream of the open loop, for both hosts; and how
busy the whole machine was (every CPU, every process, the client included: /proc/stat), which
compares the two hosts' tails at the load each put on the machine (docs/benchmarks.md section 35).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import csv
import functools
import io
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import (
    HELLO_WASM,
    OUT,
    WASMLET,
    Server,
    context_switches,
    cpu_seconds,
    free_port,
    interpreters,
    machine,
    other_venv,
    percentile,
    run_wrk,
    running,
    temp_cache,
    wasmlet_env,
    write_manifest,
)

PERCENTILES = (50, 90, 99, 99.9, 99.99)
OPENLOOP_C = Path(__file__).with_name("openloop.c")


async def _one_connection(port: int, request: bytes, due: asyncio.Queue[float | None], latencies: list[float],
                          lags: list[float], errors: list[str], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while (when := await due.get()) is not None:
        try:
            if connection is None:
                connection = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
            reader, writer = connection
            lags.append(loop.time() - when)  # late client, or every connection busy: counted in the latency
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            length = 0
            chunked = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
                chunked |= name.strip().lower() == b"transfer-encoding" and value.strip().lower() == b"chunked"
            if chunked:  # `wasmtime serve`'s responses (RFC 9112 section 7.1; no trailers)
                while (size := int((await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)).strip(), 16)) > 0:
                    await asyncio.wait_for(reader.readexactly(size + 2), timeout)
                await asyncio.wait_for(reader.readexactly(2), timeout)
            else:
                await asyncio.wait_for(reader.readexactly(length), timeout)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            latencies.append(loop.time() - when)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            errors.append(type(exc).__name__)
            if connection is not None:
                connection[1].close()
            connection = None
    if connection is not None:
        connection[1].close()


class OpenLoop:
    """What one open-loop phase measured: latencies and send lags (s), errors, elapsed seconds."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.lags: list[float] = []
        self.errors: list[str] = []
        self.elapsed = 0.0
        self.split = ""  # connections per server process, if known


async def _open_loop(port: int, path: str, rate: float, seconds: float, connections: int, timeout: float) -> OpenLoop:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: open-loop\r\n\r\n".encode()
    due: asyncio.Queue[float | None] = asyncio.Queue()
    result = OpenLoop()
    workers = [asyncio.create_task(_one_connection(port, request, due, result.latencies, result.lags, result.errors,
                                                   timeout)) for _ in range(connections)]
    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    start = loop.time() + 0.1
    for i in range(total):
        when = start + i / rate
        if (delay := when - loop.time()) > 0:
            await asyncio.sleep(delay)
        due.put_nowait(when)
    for _ in workers:
        due.put_nowait(None)
    await asyncio.wait_for(asyncio.gather(*workers), timeout + 5)
    result.elapsed = loop.time() - start
    return result


def open_loop(port: int, path: str, rate: float, seconds: float, connections: int = 64,
              timeout: float = 10.0) -> OpenLoop:
    """Latencies counted from each request's due time at a constant ``rate``, bounded by ``rate * seconds``."""
    try:
        import uvloop  # uvicorn's loop, in the venv: the client must not be the bottleneck

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner as r:
        return r.run(_open_loop(port, path, rate, seconds, connections, timeout))


def build_openloop(work: Path) -> Path:
    """``bench/openloop.c`` compiled into ``work`` with the machine's C compiler."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        raise SystemExit("bench/tail.py needs a C compiler (cc, gcc or clang) for bench/openloop.c")
    binary = work / "openloop"
    subprocess.run([compiler, "-O2", "-Wall", "-o", str(binary), str(OPENLOOP_C)], check=True, timeout=120)
    return binary


#: Run the C open loop under SCHED_BATCH (``--client-batch``): sched(7), a waking batch thread does not
#: preempt the running one, so the generator no longer preempts a server worker each time its timer fires.
CLIENT_PREFIX: list[str] = []


def open_loop_c(binary: Path, port: int, path: str, rate: float, seconds: float, connections: int = 64,
                timeout: float = 10.0) -> OpenLoop:
    """As ``open_loop``, by ``bench/openloop.c``: latencies from each request's due time at a constant rate."""
    result = OpenLoop()
    with tempfile.TemporaryDirectory() as work:
        samples = Path(work) / "latencies.txt"
        client = subprocess.Popen([*CLIENT_PREFIX, str(binary), str(port), path, f"{rate:.3f}", f"{seconds:g}",
                                   str(connections), str(int(timeout * 1000)), str(samples)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(min(1.0, seconds / 2))
            result.split = connections_per_process(port)
            stdout, stderr = client.communicate(timeout=seconds + timeout + 30)
        finally:
            client.kill()
        if client.returncode != 0:  # its stderr is the connections' ports (bench/spells.py reads them), or why
            raise SystemExit(f"bench/openloop failed with status {client.returncode}: {stderr[-500:]}")
        for line in samples.read_text().splitlines():
            latency_us, lag_us, *_ = line.split()  # then the connection and the due time
            result.latencies.append(int(latency_us) / 1e6)
            result.lags.append(int(lag_us) / 1e6)
    fields = stdout.split()  # sent N completed N errors N elapsed_s S
    result.errors = ["error"] * int(fields[5])
    result.elapsed = float(fields[7])
    return result


def port_owners(port: int) -> dict[int, int]:
    """Client port -> the server process holding it, for the connections established to ``port`` (``ss``)."""
    text = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"], capture_output=True,
                          text=True, timeout=10).stdout
    owners = {}
    for line in text.splitlines():
        fields = line.split()  # Recv-Q Send-Q Local Peer users:(("python",pid=N,fd=M))
        found = re.search(r"pid=(\d+)", line)
        if len(fields) >= 4 and found:
            owners[int(fields[3].rsplit(":", 1)[1])] = int(found.group(1))
    return owners


def connections_per_process(port: int) -> str:
    """How the established connections to ``port`` are spread over the server's processes, e.g. "38/26".

    The workers share one listening socket, and long-lived connections opened in a burst land
    unevenly: the busier worker's queue sets the tail."""
    try:
        counts = collections.Counter(port_owners(port).values())
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return "/".join(str(n) for n in sorted(counts.values(), reverse=True)) or "?"


def run_hey(url: str, rate: float, seconds: int, workers: int = 16) -> tuple[list[float], int, int]:
    """hey -z -q -c -o csv: latencies (s), non-2xx count, errors."""
    per_worker = max(1, round(rate / workers))
    command = ["hey", "-z", f"{seconds}s", "-q", str(per_worker), "-c", str(workers), "-t", "10", "-o", "csv", url]
    text = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    latencies: list[float] = []
    non2xx = errors = 0
    for row in csv.DictReader(io.StringIO(text)):
        try:
            latencies.append(float(row["response-time"]))
            non2xx += not row["status-code"].startswith("2")
        except (KeyError, ValueError):
            errors += 1
    return latencies, non2xx, errors


def figures(latencies_s: list[float]) -> str:
    ordered = sorted(v * 1e3 for v in latencies_s)
    return " | ".join(f"{percentile(ordered, q):7.2f}" for q in PERCENTILES) + f" | {ordered[-1]:7.2f}"


class Usage:
    """The server's CPU time and context switches over one phase, per request answered.

    Read from /proc for the server process, its descendants and all their threads
    (the workers, the zygote, the supervisor; or ``wasmtime serve``'s one process).
    A request costs more CPU when it arrives at an idle worker than in wrk's batches
    (``bench/cold_after_idle.py``): the two columns show by how much, host by host.
    """

    def __init__(self, server: Server) -> None:
        self.pids = server.pids()
        self.cpu = cpu_seconds(self.pids)
        self.switches = context_switches(self.pids)
        self.machine = machine_ticks()

    def per_request(self, requests: float) -> str:
        """Three table cells: CPU microseconds and context switches per request, and the machine's
        busy share, since this was made."""
        requests = max(requests, 1)
        cpu = (cpu_seconds(self.pids) - self.cpu) / requests * 1e6
        (busy, total), (busy0, total0) = machine_ticks(), self.machine
        busy, total = busy - busy0, total - total0
        return (f"{cpu:.0f} | {(context_switches(self.pids) - self.switches) / requests:.2f} |"
                f" {100 * busy / max(total, 1):.0f} % |")


def machine_ticks() -> tuple[int, int]:
    """Busy and total clock ticks of all CPUs so far (proc(5), the ``cpu`` line of /proc/stat:
    idle and iowait are the idle ones; guest time is already counted in user)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def measure(label: str, server: Server, url: str, port: int, openloop: Path, seconds: int, connections: int,
            hey: bool, asyncio_client: bool, fractions: list[float],
            rates: list[float]) -> tuple[list[str], list[str], list[float], dict[str, list[float]]]:
    """One server's phases: wrk at 32 connections, then each constant rate (``rates``, or ``fractions``
    of the wrk peak) from the C and asyncio open loops and ``hey -q``. Rows, verdicts, the rates run,
    and the p99.99 at each rate (ms) of the C open loop and of ``hey -q``, by client."""
    rows: list[str] = []
    verdicts: list[str] = []
    tails: dict[str, list[float]] = {}
    run_wrk(url, seconds=3, connections=32)  # warm-up: pools, caches, connections
    usage = Usage(server)
    closed = run_wrk(url, seconds=seconds, connections=32)
    rows.append(f"| {label}: wrk -t2 -c32 (closed loop) | {closed['rps']:,.0f} | " + " | ".join(
        f"{closed.get(f'p{q}', float('nan')):.2f}" for q in ("50", "90", "99", "99.9", "99.99"))
        + f" | | | {usage.per_request(closed.get('requests', closed['rps'] * seconds))}"
        f" {closed.get('errors', 0):.0f} errors, {closed.get('non2xx', 0):.0f} non-2xx |")
    verdicts.append(f"{label}: p99 at 32 connections = {closed['p99']:.2f} ms -> "
                    f"{'MEETS' if closed['p99'] < 5 else 'MISSES'} the 5 ms goal")
    rates = rates or [closed["rps"] * f for f in fractions]
    for rate in rates:
        fraction = rate / closed["rps"]
        for client in ("C, epoll", "asyncio + uvloop") if asyncio_client else ("C, epoll",):
            time.sleep(1)
            usage = Usage(server)
            phase = (open_loop_c(openloop, port, "/", rate, seconds, connections)
                     if client == "C, epoll" else open_loop(port, "/", rate, seconds, connections))
            if not phase.latencies:
                verdicts.append(f"{label}: open loop ({client}) at {rate:,.0f} req/s: no request completed")
                continue
            lag99 = percentile(sorted(phase.lags), 99) * 1e3
            split = f", per process {phase.split}" if phase.split else ""
            rows.append(f"| {label}: open loop at {fraction:.2g} x its peak = {rate:,.0f} req/s, {connections} "
                        f"connections{split} ({client}) | {len(phase.latencies) / phase.elapsed:,.0f} |"
                        f" {figures(phase.latencies)} | {lag99:.2f} | {usage.per_request(len(phase.latencies))}"
                        f" {len(phase.errors)} |")
            tail = percentile(sorted(phase.latencies), 99.99) * 1e3
            if client == "C, epoll":
                tails.setdefault("C open loop", []).append(tail)
            verdict = ("MEETS" if tail < 10 else "MISSES") if client == "C, epoll" else "for comparison"
            goal = " the 10 ms goal" if client == "C, epoll" else ""
            verdicts.append(f"{label}: open-loop p99.99 at {rate:,.0f} req/s ({fraction:.2g} x its peak), {client} "
                            f"client = {tail:.2f} ms -> {verdict}{goal}")
            if phase.errors:
                verdicts.append(f"  open-loop errors (first 5): {phase.errors[:5]}")
        if hey and shutil.which("hey"):
            time.sleep(1)
            usage = Usage(server)
            latencies, non2xx, errors = run_hey(url, rate, seconds)
            per_worker = max(1, round(rate / 16))
            rows.append(f"| {label}: hey -q {per_worker} -c 16 (= {per_worker * 16:,} req/s; closed loop per worker)"
                        f" | {len(latencies) / seconds:,.0f} | {figures(latencies)} | |"
                        f" {usage.per_request(len(latencies))} {non2xx + errors} |")
            if latencies:
                tails.setdefault("hey -q", []).append(percentile(sorted(latencies), 99.99) * 1e3)
    return rows, verdicts, rates, tails


def wasmlet_argv(manifest: Path, workers: int, server: str, extra: list[str], port: int,
                 wasmlet: str = WASMLET) -> list[str]:
    return [wasmlet, "serve", str(manifest), "--listen", f"127.0.0.1:{port}", "--workers", str(workers),
            "--server", server, *extra]


def prefixed(prefix: list[str], argv: Callable[[int], list[str]], port: int) -> list[str]:
    return [*prefix, *argv(port)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=20, help="length of each load phase")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server", default="uvicorn", choices=("uvicorn", "granian"))
    parser.add_argument("--fractions", default="0.5", help="constant rates as fractions of the wrk peak, e.g. 0.5,0.25")
    parser.add_argument("--rates", default="", help="constant rates in req/s instead of --fractions, e.g. 3563,4679")
    parser.add_argument("--connections", type=int, default=64, help="open-loop connections")
    parser.add_argument("--no-hey", action="store_true", help="skip the hey rows")
    parser.add_argument("--no-asyncio", action="store_true", help="skip the asyncio open-loop rows")
    parser.add_argument("--reference", action="store_true",
                        help="then the same phases against `wasmtime serve` on the C wasi:http hello, at the rates "
                             "wasmlet ran (the machine's floor for the tail, from the reference host)")
    parser.add_argument("--worker-priority", type=int, default=None, metavar="NICE",
                        help="in each round, wasmlet again with `--worker-priority NICE` (at the first one's rates) "
                             "and, with --reference, `wasmtime serve` again under `nice -n NICE`")
    parser.add_argument("--client-batch", action="store_true",
                        help="run the C open loop under SCHED_BATCH (chrt -b 0): on waking it does not preempt a "
                             "server thread, as a client on another machine would not")
    parser.add_argument("--python", default=None, metavar="VENV",
                        help="in each round, these sources again under VENV's interpreter (a virtualenv with "
                             "wasmlet's requirements installed), at the first one's rates")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds, each with fresh servers (wasmlet, then the reference): the p99.99 of one "
                             "15-second phase moves run to run, so a verdict should rest on several")
    args = parser.parse_args()
    if args.client_batch:
        CLIENT_PREFIX[:] = ["chrt", "--batch", "0"]
    fractions = [float(f) for f in args.fractions.split(",")]
    print(machine())
    if args.python:
        print(interpreters(args.python))
    print(f"load average before: {os.getloadavg()[0]:.1f} (2 cores shared with other work)")
    OUT.mkdir(parents=True, exist_ok=True)
    rows: list[str] = []
    verdicts: list[str] = []
    tails: dict[str, list[float]] = {}
    with temp_cache() as cache:
        openloop = build_openloop(Path(cache))
        manifest = write_manifest(Path(cache) / "hello.yaml", "hello", [("hello", HELLO_WASM, "/")],
                                  queue=2000)
        for round_ in range(1, args.repeat + 1):
            tag = f" (round {round_})" if args.repeat > 1 else ""
            rates = [float(r) for r in args.rates.split(",")] if args.rates else []
            nice = args.worker_priority
            # (label, argv for a port, environment, log, readiness path): wasmlet first, its wrk peak sets the rates.
            hosts: list[tuple[str, Callable[[int], list[str]], dict[str, str], Path, str]] = []
            for label, extra in [("wasmlet", [])] + (
                    [(f"wasmlet --worker-priority {nice}", ["--worker-priority", str(nice)])] if nice is not None
                    else []):
                hosts.append((label, functools.partial(wasmlet_argv, manifest, args.workers, args.server, extra),
                              wasmlet_env(cache), OUT / "tail-serve.log", "/.well-known/wasmlet/ready"))
            if args.python:
                other, other_env = other_venv(args.python, wasmlet_env(cache))
                hosts.append((f"wasmlet on {args.python}",
                              functools.partial(wasmlet_argv, manifest, args.workers, args.server, [], wasmlet=other),
                              other_env, OUT / "tail-serve.log", "/.well-known/wasmlet/ready"))
            if args.reference:
                from http_hello import wasmtime_serve_argv

                for label, prefix in [("wasmtime serve", [])] + (
                        [(f"wasmtime serve under nice -n {nice}", ["nice", "-n", str(nice)])] if nice is not None
                        else []):
                    hosts.append((label, functools.partial(prefixed, prefix, wasmtime_serve_argv), dict(os.environ),
                                  OUT / "tail-wasmtime-serve.log", "/"))
            for label, argv, env, log, ready_path in hosts:
                port = free_port()
                url = f"http://127.0.0.1:{port}/"
                with running(argv(port), port, env=env, log=log, ready_path=ready_path) as server:
                    more_rows, more_verdicts, ran, more_tails = measure(
                        f"{label}{tag}", server, url, port, openloop, args.seconds, args.connections,
                        not args.no_hey, not args.no_asyncio, fractions, rates)
                rates = rates or ran
                rows += more_rows
                verdicts += more_verdicts
                for client, values in more_tails.items():
                    tails.setdefault(f"{label}, {client}", []).extend(values)
    print(f"\nwasmlet serve hello, --workers {args.workers} --server {args.server}"
          f"{f' (and with --worker-priority {args.worker_priority})' if args.worker_priority is not None else ''}"
          f"{'; then wasmtime serve on the C wasi:http hello at the same rates' if args.reference else ''}"
          f"{'; the C open loop under SCHED_BATCH' if args.client_batch else ''};"
          f" {args.seconds} s per phase; ms; load average after: {os.getloadavg()[0]:.1f}\n")
    print("| load | req/s achieved | p50 | p90 | p99 | p99.9 | p99.99 | max | waiting in the client p99 |"
          " server CPU us/request | server context switches/request | machine busy | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    print("\n".join(verdicts))
    if args.repeat > 1:
        print()
        for label, values in tails.items():
            met = sum(value < 10 for value in values)
            listed = ", ".join(f"{value:.1f}" for value in values)
            print(f"{label}: p99.99 in each phase: {listed} ms; under 10 ms in {met} of {len(values)}")


if __name__ == "__main__":
    main()
