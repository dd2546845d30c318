"""Where prometheus_client's multi-process mode keeps its files, and what dead hosts left behind.

Kept apart from ``telemetry`` on purpose: it must run before anything imports
``prometheus_client``, which chooses its storage once, at import time.

Every folder or file wasmlet makes in the temporary or shared-memory folder
carries the pid of the process that owns it (``wasmlet-metrics-PID-XXXXXXXX``,
``wasmlet-run-PID-...``, ``wasmlet-plan-PID-....json``, a worker's
``wasmlet-PID-...`` scratch folder). A clean stop removes them; ``kill -9``
cannot, so ``wasmlet serve`` sweeps, at start, those whose owner is gone
(``sweep_stale_dirs``) and leaves every live process's alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable

from ._early import MULTIPROC_ENV, make_metrics_dir

__all__ = ["MULTIPROC_ENV", "SCRATCH_ENV", "pid_alive", "prepare_metrics_dir", "scratch_base", "sweep_stale_dirs"]

SCRATCH_ENV = "WASMLET_SCRATCH_DIR"  # where workers keep guest output files (default: /dev/shm)

log = logging.getLogger("wasmlet.server")

# mkdtemp/mkstemp add 8 characters of [a-z0-9_] after the prefix.
_OURS = re.compile(r"^wasmlet-(?:(?:run|metrics|plan)-)?(?P<pid>[1-9][0-9]*)-[a-z0-9_]{8}(?:\.json)?$")


def prepare_metrics_dir() -> str:
    """Point multi-process mode at a fresh folder (workers inherit the variable)."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prepare_metrics_dir() must run before prometheus_client is imported")
    path = make_metrics_dir()
    if path is None:  # no temporary folder would take it: tempfile.mkdtemp says why (OSError)
        path = tempfile.mkdtemp(prefix=f"wasmlet-metrics-{os.getpid()}-")
        os.environ[MULTIPROC_ENV] = path
    return path


def scratch_base() -> str | None:
    """The folder for the workers' scratch folders: ``$WASMLET_SCRATCH_DIR``, else ``/dev/shm``
    (tmpfs: guest output never touches a disk) when writable, else None (the temporary folder)."""
    explicit = os.environ.get(SCRATCH_ENV)
    if explicit:
        return explicit
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def pid_alive(pid: int) -> bool:
    """True unless ``pid`` is certainly gone (no such process, or a zombie nobody reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            state = handle.read().rpartition(")")[2].split()[:1]
    except OSError:
        return True
    return state != ["Z"]


def sweep_stale_dirs(folders: Iterable[str] | None = None) -> list[str]:
    """Remove what wasmlet processes that are gone left in ``folders`` (default: the temporary
    folder and ``scratch_base()``); only entries of this user named as wasmlet names them.
    Returns their paths."""
    removed: list[str] = []
    default = [tempfile.gettempdir(), *filter(None, [scratch_base()])]
    for folder in folders if folders is not None else default:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            match = _OURS.match(entry.name)
            if match is None:
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if info.st_uid != os.geteuid() or pid_alive(int(match["pid"])):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
            removed.append(entry.path)
    if removed:
        log.info("removed %d folder(s) and file(s) left by wasmlet processes that are gone (killed?)", len(removed))
    return removed
