"""Per-thread scratch files that carry a guest's stdout and stderr.

wasmtime's WASI lets a host capture output through a callback or a file. The
callback path costs about 170 us per write (a tokio worker re-entering
Python), the file path about 15 us, so guests write to files. Even a callback
in C that never enters Python is slower: a run of hello took 41-49 us with
stdout and stderr captured so, 22 us with the files (the write goes through a
tokio task; docs/benchmarks.md section 22). Each worker
thread owns one pair on tmpfs (``/dev/shm`` when present) and reuses it:
WASI opens the path with ``O_TRUNC`` for every request, and the thread reads
it back through its own descriptor when the guest is done. Figures:
``docs/architecture.md`` ("Guest output capture"); measured with wasmtime-py 50.

The folder is ``wasmlet-PID-XXXXXXXX`` (0700) under ``$WASMLET_SCRATCH_DIR``,
else ``/dev/shm``: the pid lets ``wasmlet serve`` sweep the folder of a
worker killed before it could remove it (``wasmlet._multiproc``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from pathlib import Path

from .._multiproc import scratch_base
from ._capi import Lane

__all__ = ["ScratchFiles", "remove_scratch_root", "scratch_files"]

_local = threading.local()
_root_lock = threading.Lock()
_root: Path | None = None


def _scratch_root() -> Path:
    global _root
    with _root_lock:
        if _root is None:
            _root = Path(tempfile.mkdtemp(prefix=f"wasmlet-{os.getpid()}-", dir=scratch_base()))
        elif not _root.exists():
            _root.mkdir(mode=0o700, parents=True)
        return _root


def remove_scratch_root() -> None:
    """Delete this process's scratch folder (at shutdown)."""
    global _root
    with _root_lock:
        if _root is not None:
            shutil.rmtree(_root, ignore_errors=True)
            _root = None


class ScratchFiles:
    """One thread's stdout and stderr files, and descriptors to read them.

    ``lane`` is the thread's reusable C structures for a run (``_capi.Lane``),
    kept here because both live exactly as long as the thread's files.
    """

    def __init__(self) -> None:
        root = _scratch_root()
        ident = threading.get_ident()
        self.stdout_path = str(root / f"{ident}.out")
        self.stderr_path = str(root / f"{ident}.err")
        self.stdout_bytes = os.fsencode(self.stdout_path)
        self.stderr_bytes = os.fsencode(self.stderr_path)
        self.lane = Lane()
        self.stdout_fd = os.open(self.stdout_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.stderr_fd = os.open(self.stderr_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def sizes(self) -> tuple[int, int]:
        # lseek to the end is fstat's st_size without building a stat_result (reads use pread: offsets unused).
        return os.lseek(self.stdout_fd, 0, os.SEEK_END), os.lseek(self.stderr_fd, 0, os.SEEK_END)

    def read(self, fd: int, limit: int) -> bytes:
        size = min(os.fstat(fd).st_size, limit)
        return os.pread(fd, size, 0) if size else b""


def scratch_files(renew: bool = False) -> ScratchFiles:
    """The calling thread's scratch files, created on first use (or anew with ``renew``,
    after something removed them: WASI then fails to open the path)."""
    files: ScratchFiles | None = getattr(_local, "files", None)
    if files is None or renew:
        if files is not None:
            for fd in (files.stdout_fd, files.stderr_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)
        files = ScratchFiles()
        _local.files = files
    return files
