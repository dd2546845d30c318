"""Helpers shared by the benchmark scripts: paths, servers, percentiles, RSS, wrk.

Nothing here is imported by wasmlet itself. Servers are always stopped with
SIGTERM, then SIGKILL after a grace period (``Server.stop``).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from wasmlet.plan import Plan
from wasmlet.signing import custom_section

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
VENV_BIN = ROOT / ".venv" / "bin"
WASMLET = str(VENV_BIN / "wasmlet")
HELLO_WASM = ROOT / "examples" / "hello" / "hello.wasm"
ECHO_WASM = ROOT / "examples" / "echo" / "echo.wasm"
SLOW_WASM = ROOT / "tests" / "guests" / "slow.wasm"
WRK_LUA = BENCH / "wrk_percentiles.lua"


def deploy_plan(manifests: list[Path], cache_dir: str | Path | None = None) -> Plan:
    """The plan ``wasmlet serve MANIFEST...`` gives its workers: ``ControlPlane.deploy_files`` over a fresh state."""
    from wasmlet.control import ControlPlane, StateStore
    from wasmlet.engine import default_cache_dir
    from wasmlet.plan import EngineSettings

    with StateStore(Path(tempfile.mkdtemp(prefix="wasmlet-bench-state-"))) as store:
        control = ControlPlane(store, EngineSettings(), Path(cache_dir) if cache_dir else default_cache_dir())
        control.deploy_files(list(manifests))
        return control.plan()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


def summary_us(samples_s: Sequence[float]) -> dict[str, float]:
    """p50/p99/mean/min of samples in seconds, in microseconds."""
    values = sorted(s * 1e6 for s in samples_s)
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values),
        "min": values[0],
    }


def write_manifest(path: Path, app: str, modules: Sequence[tuple[str, Path, str]], memory: str = "16Mi",
                   queue: int | None = None) -> Path:
    """An OAM manifest with one component per (name, module path, route); ``queue``: concurrency.queue."""
    lines = ["apiVersion: core.oam.dev/v1beta1", "kind: Application", "metadata:", f"  name: {app}",
             "spec:", "  components:"]
    for name, module, route in modules:
        lines += [f"    - name: {name}", "      type: wasm", "      properties:",
                  f"        moduleURL: {module}", f'        memoryLimit: "{memory}"', f"        route: {route}"]
        if queue is not None:  # let every request wait for a guest instead of a fast 503
            lines += ["        concurrency:", f"          queue: {queue}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def with_custom_section(wasm: bytes, name: str, payload: bytes) -> bytes:
    """``wasm`` plus a custom section: same behaviour, different bytes (and digest)."""
    return wasm + custom_section(name, payload).encode()


def http_get(port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Server:
    """A server process started in its own process group, stopped on exit."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None, log: Path | None = None) -> None:
        self.argv = list(argv)
        self.log = log
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed in stop()
        self._out = out
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, port: int, path: str = "/.well-known/wasmlet/ready", timeout: float = 30.0) -> float:
        """Poll ``path`` until it answers 200; return the seconds since the spawn."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.argv[0]} exited with {self.proc.returncode}; see {self.log}")
            try:
                status, _ = http_get(port, path, timeout=timeout)
                if status == 200:
                    return time.perf_counter() - self.started
            except OSError:
                time.sleep(0.002)
        raise TimeoutError(f"{' '.join(self.argv)} not ready after {timeout}s; see {self.log}")

    def pids(self) -> list[int]:
        """The server process and all its descendants."""
        return [self.proc.pid, *descendants(self.proc.pid)]

    def stop(self, grace: float = 10.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # Workers left behind by a supervisor that died first.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self._out is not subprocess.DEVNULL:
            self._out.close()  # type: ignore[union-attr]


@contextlib.contextmanager
def running(argv: Sequence[str], port: int, env: dict[str, str] | None = None, log: Path | None = None,
            ready_path: str = "/.well-known/wasmlet/ready") -> Iterator[Server]:
    server = Server(argv, env=env, log=log)
    try:
        server.wait_ready(port, ready_path)
        yield server
    finally:
        server.stop()


def wasmlet_env(cache_dir: str | Path) -> dict[str, str]:
    """A server's environment: the given cache, a fresh control-plane state, no admin listener."""
    return {**os.environ, "WASMLET_CACHE_DIR": str(cache_dir), "PYTHONUNBUFFERED": "1",
            "WASMLET_STATE_DIR": tempfile.mkdtemp(prefix="wasmlet-bench-state-"), "WASMLET_ADMIN_LISTEN": "none"}


def temp_cache() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="wasmlet-bench-cache-")


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        try:
            text = Path(f"/proc/{parent}/task/{parent}/children").read_text()
        except OSError:
            continue
        children = [int(c) for c in text.split()]
        found += children
        stack += children
    return found


def worker_pids(serve_pid: int) -> list[int]:
    """The serving workers among ``wasmlet serve``'s descendants (not the supervisor, not the zygote)."""
    pids = []
    for pid in descendants(serve_pid):
        with contextlib.suppress(OSError):
            if b"wasmlet.server._worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
    return sorted(pids)


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of ``pids`` (and their threads), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / tick


def context_switches(pids: Sequence[int]) -> int:
    """Voluntary + involuntary context switches of every thread of ``pids`` still alive, from /proc."""
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines():
                    if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                        total += int(line.split()[1])
    return total


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory_kib(pids: Sequence[int]) -> tuple[int, int]:
    """(sum of VmRSS, sum of Pss) in KiB over ``pids``."""
    return sum(_status_kib(p, "VmRSS") for p in pids), sum(_pss_kib(p) for p in pids)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        return float("nan")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(url: str, seconds: int = 10, connections: int = 64, threads: int = 2,
            timeout: str = "10s") -> dict[str, float]:
    """Run wrk with ``--latency`` and the percentile script; return req/s and latencies in ms."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout}",
               "--latency", "-s", str(WRK_LUA), url]
    text = subprocess.run(command, capture_output=True, text=True, check=True,
                          timeout=seconds + 60).stdout
    result: dict[str, float] = {}
    if match := re.search(r"Requests/sec:\s+([\d.]+)", text):
        result["rps"] = float(match.group(1))
    for key in ("50", "90", "99", "99.9", "99.99"):
        if match := re.search(rf"^p{re.escape(key)}_us=(\d+)", text, re.M):
            result[f"p{key}"] = int(match.group(1)) / 1000
    if match := re.search(r"^requests=(\d+) errors=(\d+) non2xx=(\d+)", text, re.M):
        result["requests"] = float(match.group(1))
        result["errors"] = float(match.group(2))
        result["non2xx"] = float(match.group(3))
    if "rps" not in result:
        raise RuntimeError(f"unexpected wrk output:\n{text}")
    return result


def interpreter(python: str | Path) -> str:
    """``python``'s version and the binary it resolves to, e.g. ``3.11.2 (/usr/bin/python3.11)``.

    The path tells the build apart (Debian's, pyenv's, ...): sysconfig does not say whether a build
    used profile-guided or link-time optimization (Debian passes those flags in its own rules).
    """
    code = "import os, sys; print(sys.version.split()[0], os.path.realpath(sys.executable))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=30, check=True).stdout
    version, path = out.split(maxsplit=1)
    return f"{version} ({path.strip()})"


def other_venv(venv: str | Path, env: dict[str, str]) -> tuple[str, dict[str, str]]:
    """``wasmlet`` from ``venv`` (a virtualenv of another interpreter with wasmlet's requirements) and
    ``env`` with this tree's sources first on the path: the same code, served by another interpreter."""
    return str(Path(venv) / "bin" / "wasmlet"), {**env, "PYTHONPATH": str(ROOT / "src")}


def interpreters(venv: str | Path) -> str:
    """This virtualenv's interpreter and ``venv``'s, for a benchmark's header."""
    return f"this virtualenv: {interpreter(VENV_BIN / 'python')}; {venv}: {interpreter(Path(venv) / 'bin' / 'python')}"


def machine() -> str:
    """``nproc``, the head of ``lscpu``, memory and kernel, as text."""
    def sh(cmd: str) -> str:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()

    return "\n".join([
        f"nproc: {sh('nproc')}",
        sh("lscpu | grep -E '^(Model name|CPU\\(s\\)|Thread|Core|Hypervisor)'"),
        sh("grep MemTotal /proc/meminfo"),
        f"kernel: {sh('uname -r')}",
        f"python: {interpreter(sys.executable)}",
    ])
