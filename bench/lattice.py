"""The lattice (docs/lattice.md), each figure beside its single-host one from the same run.

One nats-server (-js) and three `wasmlet serve --lattice` hosts on loopback
(one worker each), plus a single host without a lattice (one worker). The
app is the echo example.

1. Added latency of a forwarded request: sequential GETs on one keep-alive
   connection, answered by a host that runs the app (local) and through one
   that forwards to it (p50, p99; goal: p50 under 1 ms added).
2. Requests per second through one host of the lattice (wrk, 64 connections):
   forwarded to another host, and for an app the host runs itself; beside a
   single host.
3. Deploy to serving on every placed host (replicas 3): from the deploy call
   until each host answers from its own workers (goal: under 2 s); beside a
   single host's deploy to first response.
4. Failover: kill -9 the only host running an app, until another host
   answers for it (goal: under 5 s); beside a single host restarted after kill -9.

    .venv/bin/python bench/lattice.py [--requests 2000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from _common import ECHO_WASM, ROOT, Server, free_port, machine, run_wrk, summary_us

NATS = Path(sys.executable).parent / "nats-server"
WASMLET = [sys.executable, "-m", "wasmlet"]


def manifest(path: Path, name: str, route: str, replicas: int = 1, role: str | tuple[str, ...] | None = None) -> Path:
    traits: list[dict[str, object]] = [{"type": "scaler", "properties": {"replicas": replicas}}]
    if role:
        traits.append({"type": "affinity", "properties": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "role", "operator": "In",
                                   "values": [role] if isinstance(role, str) else list(role)}]}]}}}})
    document = {"apiVersion": "core.oam.dev/v1beta1", "kind": "Application", "metadata": {"name": name},
                "spec": {"components": [{"name": "web", "type": "wasm", "traits": traits,
                                         "properties": {"moduleURL": str(ECHO_WASM), "route": route}}]}}
    path.write_text(json.dumps(document))
    return path


class Host:
    def __init__(self, tmp: Path, name: str, lattice: str | None, *args: str) -> None:
        self.name = name
        self.port, self.admin_port = free_port(), free_port()
        self.state = tmp / f"state-{name}"
        argv = [*WASMLET, "serve", "--listen", f"127.0.0.1:{self.port}", "--admin-listen",
                f"127.0.0.1:{self.admin_port}", "--state-dir", str(self.state), "--workers", "1",
                "--allow-files", str(ROOT / "examples"), *args]
        if lattice:
            argv += ["--lattice", lattice, "--host-name", name]
        self.argv = argv
        self.env = {**os.environ, "WASMLET_CACHE_DIR": str(tmp / "cache"), "WASMLET_RUNTIME_DIR": str(tmp / "run")}
        self.log = tmp / f"{name}.log"
        self.server = Server(argv, env=self.env, log=self.log)

    def wait(self) -> float:
        return self.server.wait_ready(self.port, timeout=60)

    def deploy(self, path: Path) -> None:
        token = (self.state / "admin-token").read_text().strip()
        response = httpx.post(f"http://127.0.0.1:{self.admin_port}/v1/deploy", content=path.read_text(),
                              headers={"authorization": f"Bearer {token}", "content-type": "application/yaml"},
                              timeout=60)
        response.raise_for_status()

    def restart(self) -> None:
        self.server = Server(self.argv, env=self.env, log=self.log.with_suffix(".2.log"))


def latency(port: int, path: str, count: int) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    samples = []
    for index in range(count + 50):
        started = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{path} on {port}: {response.status}")
        if index >= 50:  # warm-up
            samples.append(time.perf_counter() - started)
    conn.close()
    return summary_us(samples)


def local_answer(port: int, path: str) -> bool:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and "x-wasmlet-served-by" not in response.headers


def any_answer(port: int, path: str) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def until(check: object, timeout: float = 30.0, step: float = 0.005) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if check():  # type: ignore[operator]
            return time.perf_counter() - started
        time.sleep(step)
    raise TimeoutError("not within the timeout")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory(prefix="wasmlet-bench-lattice-") as folder:
        tmp = Path(folder)
        nats_port = free_port()
        nats = subprocess.Popen([str(NATS), "-js", "-a", "127.0.0.1", "-p", str(nats_port), "-sd", str(tmp / "js")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"nats://127.0.0.1:{nats_port}"
        hosts: list[Host] = []
        try:
            time.sleep(0.5)
            single = Host(tmp, "single", None)
            a, b, c = (Host(tmp, name, url, "--label", f"role={name}") for name in ("a", "b", "c"))
            hosts = [single, a, b, c]
            for host in hosts:
                try:
                    host.wait()
                except RuntimeError:
                    print(host.log.read_text(errors="replace")[-3000:])
                    raise
            rows: list[tuple[str, str, str]] = []

            # 3. Deploy to serving (first, so every host compiles once here; the cache is shared).
            started = time.perf_counter()
            single.deploy(manifest(tmp / "s.yaml", "solo", "/solo"))
            until(lambda: local_answer(single.port, "/solo"))
            one = time.perf_counter() - started
            started = time.perf_counter()
            a.deploy(manifest(tmp / "all.yaml", "all", "/all", replicas=3))
            for host in (a, b, c):
                until(lambda h=host: local_answer(h.port, "/all"))
            every = time.perf_counter() - started
            rows.append(("deploy to serving (s)", f"{one:.3f}", f"{every:.3f} (all 3 placed hosts)"))

            # 1. Latency: the app runs on b only; a forwards.
            b.deploy(manifest(tmp / "fwd.yaml", "fwd", "/fwd", role="b"))
            until(lambda: local_answer(b.port, "/fwd"))
            until(lambda: any_answer(a.port, "/fwd"))
            here = latency(single.port, "/solo", args.requests)
            on_b = latency(b.port, "/fwd", args.requests)
            via_a = latency(a.port, "/fwd", args.requests)
            rows.append(("latency p50 (us)", f"{here['p50']:.0f}",
                         f"{via_a['p50']:.0f} forwarded a->b; {on_b['p50']:.0f} local on b; "
                         f"added {via_a['p50'] - on_b['p50']:.0f}"))
            rows.append(("latency p99 (us)", f"{here['p99']:.0f}", f"{via_a['p99']:.0f} forwarded; "
                         f"{on_b['p99']:.0f} local; added {via_a['p99'] - on_b['p99']:.0f}"))

            # 2. Throughput through one host.
            solo = run_wrk(f"http://127.0.0.1:{single.port}/solo", seconds=args.seconds)
            forwarded = run_wrk(f"http://127.0.0.1:{a.port}/fwd", seconds=args.seconds)
            local = run_wrk(f"http://127.0.0.1:{a.port}/all", seconds=args.seconds)
            rows.append(("req/s through one host", f"{solo['rps']:.0f}",
                         f"{forwarded['rps']:.0f} forwarded (errors {forwarded.get('non2xx', 0):.0f}); "
                         f"{local['rps']:.0f} local on a lattice host"))

            # 4. Failover: an app on b or c (one replica); kill -9 its host; until a answers for it again.
            a.deploy(manifest(tmp / "fo.yaml", "fo", "/fo", role=("b", "c")))
            until(lambda: any_answer(a.port, "/fo"))
            runs = httpx.get(f"http://127.0.0.1:{a.port}/fo", timeout=5).headers["x-wasmlet-served-by"]
            victim = b if runs == "b" else c
            os.killpg(victim.server.proc.pid, signal.SIGKILL)
            started = time.perf_counter()
            time.sleep(0.05)  # its answers in flight are gone
            until(lambda: any_answer(a.port, "/fo"), timeout=30, step=0.02)
            failover = time.perf_counter() - started
            os.killpg(single.server.proc.pid, signal.SIGKILL)
            single.server.proc.wait()
            started = time.perf_counter()
            single.restart()
            until(lambda: any_answer(single.port, "/solo"), timeout=60, step=0.02)
            restart = time.perf_counter() - started
            rows.append(("failover after kill -9 (s)", f"{restart:.2f} (restart by hand)",
                         f"{failover:.2f} (re-placed on another host)"))

            print(f"\n{'':28s}  {'single host':>22s}  lattice of 3 hosts")
            for label, one_host, lattice in rows:
                print(f"{label:28s}  {one_host:>22s}  {lattice}")
        finally:
            for host in hosts:
                host.server.stop()
            nats.terminate()
            nats.wait(10)


if __name__ == "__main__":
    main()
