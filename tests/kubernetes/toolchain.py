"""The ``kubectl`` binaries that render deploy/kubernetes: the one on PATH, and Debian's.

deploy/kubernetes is written for kustomize v2.0.3 as well as current kustomize (see
deploy/kubernetes/base/kustomization.yaml). A machine here may have a current ``kubectl`` on PATH
(the ``kubectl`` package of a Google Cloud SDK repository: kubectl 1.32, kustomize 5.5); a fresh
Debian bookworm has none, and installing Debian's ``kubernetes-client`` system-wide would clash with
that package's /usr/bin/kubectl. So Debian's is never installed: its .deb is fetched from the
configured Debian mirror with ``apt-get download`` and unpacked with ``dpkg-deb -x`` into
``${XDG_CACHE_HOME:-~/.cache}/wasmlet/toolchains/kubernetes-client-VERSION/`` (once; kept for the
next run), where ``usr/bin/kubectl`` is a static Go binary that runs from anywhere.
"""

from __future__ import annotations

import fcntl
import functools
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

PACKAGE = "kubernetes-client"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wasmlet" / "toolchains"


@functools.cache
def path_kubectl() -> str | None:
    """The ``kubectl`` on PATH if it has the ``kustomize`` subcommand (kubectl 1.14 or later), else None."""
    path = shutil.which("kubectl")
    if path is None:
        return None
    probe = subprocess.run([path, "kustomize", "--help"], capture_output=True, timeout=60)
    return path if probe.returncode == 0 else None


def _candidate_version() -> str:
    """The version of ``kubernetes-client`` apt would install (from the local package lists)."""
    if shutil.which("apt-cache") is None or shutil.which("dpkg-deb") is None:
        pytest.fail(f"no kubectl on PATH, and no apt-cache/dpkg-deb to fetch Debian's {PACKAGE}: install "
                    "kubectl (1.14 or later) or run the tests on Debian")
    shown = subprocess.run(["apt-cache", "show", "--no-all-versions", PACKAGE], capture_output=True, text=True,
                           timeout=60)
    match = re.search(r"^Version: (\S+)$", shown.stdout, re.M)
    if shown.returncode != 0 or match is None:
        pytest.fail(f"apt-cache knows no {PACKAGE} package (run apt-get update?): {shown.stderr.strip()}")
    return match[1]


def _download(directory: Path, version: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["apt-get", "download", f"{PACKAGE}={version}"], cwd=directory, capture_output=True,
                          text=True, timeout=600)


@functools.cache
def debian_kubectl() -> str:
    """Debian's ``kubectl`` (package kubernetes-client: 1.20 with kustomize v2.0.3), unpacked in the cache."""
    version = _candidate_version()
    root = cache_root()
    target = root / f"{PACKAGE}-{version.replace(':', '_')}"
    binary = target / "usr" / "bin" / "kubectl"
    if binary.exists():
        return str(binary)
    root.mkdir(parents=True, exist_ok=True)
    # One process unpacks; others (pytest-xdist, a second checkout) wait for it and reuse the result.
    with open(root / f".{PACKAGE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists():
            return str(binary)
        with tempfile.TemporaryDirectory(dir=root, prefix=f".{PACKAGE}-") as scratch:
            work = Path(scratch)
            os.chmod(work, 0o755)  # apt-get drops to user _apt for the download where it can
            result = _download(work, version)
            if result.returncode != 0 and os.geteuid() == 0:
                # Package lists missing or stale (a machine where apt-get update never ran): once.
                subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600)
                result = _download(work, version)
            debs = sorted(work.glob(f"{PACKAGE}_*.deb"))
            if result.returncode != 0 or len(debs) != 1:
                pytest.fail(f"apt-get download {PACKAGE}={version} failed: {result.stderr.strip()}")
            unpacked = work / "root"
            subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], check=True, capture_output=True,
                           timeout=300)
            if not (unpacked / "usr" / "bin" / "kubectl").exists():
                pytest.fail(f"{debs[0].name} has no usr/bin/kubectl")
            os.replace(unpacked, target)  # atomic: a half-unpacked tree is never taken for the toolchain
    return str(binary)


def kubectl() -> str:
    """The ``kubectl`` the tests render with: the one on PATH, else Debian's from the cache."""
    return path_kubectl() or debian_kubectl()


def version(binary: str) -> str:
    """``kubectl version --client`` of ``binary``: its GitVersion, e.g. ``v1.20.2``."""
    result = subprocess.run([binary, "version", "--client"], capture_output=True, text=True, timeout=60)
    match = re.search(r'GitVersion:"(v[^"]+)"|Client Version: (v\d\S*)', result.stdout)
    assert result.returncode == 0 and match is not None, result.stdout + result.stderr
    return match[1] or match[2]
