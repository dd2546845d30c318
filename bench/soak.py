"""A soak: a well-behaved app at 80% of its peak rate for minutes, hostile guests mixed in.

One ``wasmlet serve`` (2 workers) holds the well-behaved ``hello`` and the
hostile guests of ``tests/security`` (an infinite loop, a memory bomb, a stack
overflow, an output flood, a guest sleeping past its deadline, bad CGI). It runs:

1. the peak: ``hello`` alone under ``wrk -t2 -c32`` for ``--peak-seconds``;
2. the soak: ``hello`` at 80% of that rate (wrk throttled per connection with a
   Lua ``delay``, so the rate is offered, not closed-loop) for ``--seconds``,
   while a second client sends the hostile requests at ``--hostile-rate``;

and reports the well-behaved app's errors (the goal is none) and latency, the
hostile answers by status, and the workers' RSS growth per minute (a linear fit
of samples every 10 s after the first minute), against the seed's 2 MB/min alarm.

    .venv/bin/python bench/soak.py [--seconds 600] [--hostile-rate 20]
"""

from __future__ import annotations

import argparse
import collections
import re
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx

from _common import BENCH, ROOT, WASMLET, free_port, machine, memory_kib, run_wrk, running, temp_cache, wasmlet_env

GUESTS = ROOT / "tests" / "guests"
HOSTILE = {  # route -> (module, extra properties)
    "loop": (GUESTS / "loop.wasm", {"timeout": "300ms"}),
    "membomb": (GUESTS / "membomb.wasm", {"memoryLimit": "8Mi"}),
    "recursion": (GUESTS / "recursion.wasm", {}),
    "flood": (GUESTS / "flood.wasm", {"maxResponseSize": "1Mi"}),
    "sleep": (GUESTS / "security" / "sleep.wasm", {"timeout": "500ms"}),
    "badcgi": (GUESTS / "badcgi.wasm", {}),
}


def manifest(folder: Path) -> Path:
    import yaml

    components = [{"name": "hello", "type": "wasm", "properties": {
        "moduleURL": str(ROOT / "examples" / "hello" / "hello.wasm"), "route": "/hello"}}]
    for name, (module, extra) in HOSTILE.items():
        components.append({"name": name, "type": "wasm", "properties": {
            "moduleURL": str(module), "route": f"/{name}", **extra}})
    document = {"apiVersion": "core.oam.dev/v1beta1", "kind": "Application", "metadata": {"name": "soak"},
                "spec": {"components": components}}
    path = folder / "soak.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def throttle_script(folder: Path, delay_ms: float) -> Path:
    """wrk Lua: each connection waits ``delay_ms`` before each request (an offered rate)."""
    script = folder / "throttle.lua"
    percentiles = (BENCH / "wrk_percentiles.lua").read_text()
    script.write_text(f"delay = function() return {delay_ms:.3f} end\n" + percentiles)
    return script


def hostile_client(url: str, rate: float, stop: threading.Event, seen: collections.Counter[str]) -> None:
    names = list(HOSTILE)
    with httpx.Client(timeout=30) as client:
        n = 0
        while not stop.is_set():
            name = names[n % len(names)]
            query = "?rel=5000" if name == "sleep" else ""  # asleep ten times past its 500 ms deadline
            try:
                status = client.get(f"{url}/{name}{query}").status_code
                seen[f"{name} {status}"] += 1
            except httpx.HTTPError as exc:
                seen[f"{name} {type(exc).__name__}"] += 1
            n += 1
            stop.wait(1 / rate)


def slope_mib_per_min(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of (seconds, KiB) in MiB per minute."""
    if len(samples) < 3:
        return float("nan")
    xs = [t for t, _ in samples]
    ys = [kib / 1024 for _, kib in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--peak-seconds", type=int, default=10)
    parser.add_argument("--hostile-rate", type=float, default=20.0, help="hostile requests per second")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    print(machine())
    port = free_port()
    with temp_cache() as cache, tempfile.TemporaryDirectory(prefix="wasmlet-soak-") as folder:
        work = Path(folder)
        argv = [WASMLET, "serve", str(manifest(work)), "--listen", f"127.0.0.1:{port}", "--workers", "2"]
        with running(argv, port, env=wasmlet_env(cache)) as server:
            url = f"http://127.0.0.1:{port}"
            run_wrk(url + "/hello", seconds=3, connections=args.connections)  # warm-up
            peak = run_wrk(url + "/hello", seconds=args.peak_seconds, connections=args.connections)
            target = 0.8 * peak["rps"]
            # Each connection waits, then asks, then waits for the answer: the think time is
            # the period less the answer's time (taken as the peak's median, an overestimate).
            delay_ms = max(0.0, 1000 * args.connections / target - peak["p50"])
            print(f"\npeak: {peak['rps']:.0f} req/s (p99 {peak['p99']:.2f} ms); soak at 80%: {target:.0f} req/s "
                  f"offered ({args.connections} connections, one request every {delay_ms:.1f} ms each)", flush=True)
            stop = threading.Event()
            seen: collections.Counter[str] = collections.Counter()
            hostile = threading.Thread(target=hostile_client, args=(url, args.hostile_rate, stop, seen))
            samples: list[tuple[float, int]] = []
            started = time.monotonic()

            def sample() -> None:
                while not stop.wait(10):
                    samples.append((time.monotonic() - started, memory_kib(server.pids()[1:])[0]))

            sampler = threading.Thread(target=sample)
            hostile.start()
            sampler.start()
            try:
                script = throttle_script(work, delay_ms)
                text = subprocess.run(
                    ["wrk", "-t2", f"-c{args.connections}", f"-d{args.seconds}s", "--timeout=10s", "--latency",
                     "-s", str(script), url + "/hello"],
                    capture_output=True, text=True, check=True, timeout=args.seconds + 120).stdout
            finally:
                stop.set()
                hostile.join(60)
                sampler.join(15)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    counts = re.search(r"^requests=(\d+) errors=(\d+) non2xx=(\d+)", text, re.M)
    assert counts is not None
    p = {k: int(m.group(1)) / 1000 for k in ("50", "99", "99.9")
         if (m := re.search(rf"^p{re.escape(k)}_us=(\d+)", text, re.M))}
    settled = [s for s in samples if s[0] >= 60]
    print(f"\nsoak: {args.seconds} s, hello {rps:.0f} req/s achieved, {counts.group(1)} requests, "
          f"errors {counts.group(2)}, non-2xx {counts.group(3)}; p50 {p.get('50', 0):.2f} ms, "
          f"p99 {p.get('99', 0):.2f} ms, p99.9 {p.get('99.9', 0):.2f} ms")
    print("hostile answers: " + ", ".join(f"{k}: {v}" for k, v in sorted(seen.items())))
    if samples:
        print(f"worker RSS (both workers): {samples[0][1] / 1024:.1f} MiB at 10 s, {samples[-1][1] / 1024:.1f} MiB "
              f"at the end; growth after the first minute {slope_mib_per_min(settled):.2f} MiB/min "
              f"(the seed's alarm: 2 MB/min)")


if __name__ == "__main__":
    main()
