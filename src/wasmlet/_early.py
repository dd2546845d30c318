"""The worker zygote's head start (issue 13): spawned by the console script with ``os`` alone.

``wasmlet serve``'s first response waits for the zygote's imports, the longest step on the way
(``docs/benchmarks.md`` sections 28-29). ``_prefork.Zygote.start`` spawns it with ``subprocess``,
``socket``, ``tempfile`` and ``logging``, ~25 ms of imports before the zygote can start its own.
Here the same start takes about a millisecond after the interpreter's: the metrics folder (named as
``tempfile.mkdtemp`` names it, so ``_multiproc.sweep_stale_dirs`` knows it), the control socketpair,
and a fork and exec, with only the modules every interpreter has loaded. ``_prefork.take_early``
adopts what this started as a ``Zygote``.

Forking is safe here because it happens before the process has a second thread (the console
script's first act); a zygote started later, in a supervisor with threads, goes through
``subprocess`` (``Zygote.start``), which forks and execs in C.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing is not imported for this: it would cost more than everything below
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["MULTIPROC_ENV", "ZYGOTE_ENV", "ZYGOTE_MAIN", "EarlySpawn", "make_metrics_dir", "spawn_zygote",
           "taken_spawn", "zygote_enabled"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client reads it once, when it is imported
ZYGOTE_ENV = "WASMLET_ZYGOTE"  # "0": no zygote, every worker is spawned with Popen

# The zygote, with the collector off before anything is imported: collections over the ~94,000 objects
# its imports make would cost ~20-40 ms of the host's start (``wasmlet.server._zygote`` freezes them).
ZYGOTE_MAIN = "import gc, sys; gc.disable(); from wasmlet.server._zygote import main; sys.exit(main())"

# tempfile.mkdtemp's name: a prefix and 8 characters of this alphabet (``_multiproc._OURS`` matches it).
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789_"


class EarlySpawn:
    """A zygote this process forked and exec'd: its pid, this end of its channel, its command line."""

    __slots__ = ("args", "fd", "pid")

    def __init__(self, pid: int, fd: int, args: list[str]) -> None:
        self.pid = pid
        self.fd = fd
        self.args = args


_spawned: EarlySpawn | None = None


def zygote_enabled() -> bool:
    return os.environ.get(ZYGOTE_ENV, "1") != "0" and hasattr(os, "fork") and sys.platform.startswith("linux")


def _temp_dirs(env: Mapping[str, str]) -> list[str]:
    """Where ``tempfile.gettempdir`` looks, in its order (Python's tempfile._candidate_tempdir_list)."""
    dirs = [env[name] for name in ("TMPDIR", "TEMP", "TMP") if env.get(name)] + ["/tmp", "/var/tmp", "/usr/tmp"]
    try:
        dirs.append(os.getcwd())
        return [os.path.abspath(d) for d in dirs]
    except OSError:  # the working folder is gone: a relative name cannot be resolved either
        return [d for d in dirs if os.path.isabs(d)]


def make_metrics_dir() -> str | None:
    """A new private folder ``wasmlet-metrics-PID-XXXXXXXX`` in the first usable temporary folder,
    named in ``MULTIPROC_ENV``; None (nothing changed) if none would take it."""
    for base in _temp_dirs(os.environ):
        for _ in range(8):  # a name already taken: draw another, as mkdtemp does
            suffix = "".join(_ALPHABET[b % len(_ALPHABET)] for b in os.urandom(8))
            path = os.path.join(base, f"wasmlet-metrics-{os.getpid()}-{suffix}")
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                continue
            except OSError:
                break  # not writable, or not there: the next candidate, as gettempdir does
            os.environ[MULTIPROC_ENV] = path
            return path
    return None


def spawn_zygote() -> EarlySpawn | None:
    """Fork and exec the zygote with this process's environment; None if this platform has none.

    Only for a process without threads yet. The child keeps its end of the socketpair (as
    ``--control``) and stdin, stdout and stderr, and nothing else (``close_fds``, as Popen).
    """
    global _spawned
    if not zygote_enabled():
        return None
    import _socket  # builtin: no socket.py, no selectors

    ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    ours_fd, theirs_fd = ours.detach(), theirs.detach()
    args = [sys.executable, "-c", ZYGOTE_MAIN, "--control", str(theirs_fd), "--parent", str(os.getpid())]
    try:
        pid = os.fork()
    except OSError:
        os.close(ours_fd)
        os.close(theirs_fd)
        return None
    if pid == 0:  # the child: nothing here may raise past os._exit
        try:
            os.set_inheritable(theirs_fd, True)
            os.closerange(3, theirs_fd)
            os.closerange(theirs_fd + 1, os.sysconf("SC_OPEN_MAX"))
            os.execv(sys.executable, args)
        finally:
            os._exit(127)  # exec failed: the supervisor reads EOF instead of "ready", and spawns workers
    os.close(theirs_fd)
    _spawned = EarlySpawn(pid, ours_fd, args)
    return _spawned


def taken_spawn() -> EarlySpawn | None:
    """The zygote ``spawn_zygote`` started, if any (once)."""
    global _spawned
    spawned, _spawned = _spawned, None
    return spawned
