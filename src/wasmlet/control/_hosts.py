"""Where the running hosts of this user are: one small JSON record per ``wasmlet serve``.

``wasmlet serve`` writes ``host-<pid>.json`` into the runtime folder (atomically,
mode 0600, in a 0700 folder) once its admin API listens, and removes it when it
exits; ``wasmlet apps``, ``deploy``, ``logs``, ... read it, so one running host
is reachable with no flags. A record names the admin URL and the token *file*,
never the token itself.

The folder is ``$WASMLET_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/wasmlet`` (the
XDG Base Directory place for per-user runtime files), else
``$XDG_STATE_HOME/wasmlet/run`` (``~/.local/state/wasmlet/run``).

A record steers where a client sends its bearer token, so records are trusted
only from a folder and files this user owns that nobody else can write.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from .._errors import ConfigError
from .._files import atomic_write
from .._multiproc import pid_alive

__all__ = ["HostRecord", "default_state_dir", "recorded_host", "running_hosts", "runtime_dir"]

_PREFIX = "host-"
_MAX_RECORD = 64 * 1024


@dataclasses.dataclass(frozen=True)
class HostRecord:
    """One running ``wasmlet serve``, as it recorded itself."""

    pid: int
    admin: str  # http://HOST:PORT of the admin API
    listen: str  # http://HOST:PORT of the apps
    state_dir: str | None  # absolute
    token_file: str | None  # absolute; None: the host keeps its token in memory only
    path: Path  # the record file

    def describe(self) -> str:
        return f"pid {self.pid}: admin {self.admin}, apps {self.listen}, state {self.state_dir or '-'}"


def default_state_dir() -> Path:
    """``$WASMLET_STATE_DIR``, else ``$XDG_STATE_HOME/wasmlet``, else ``~/.local/state/wasmlet``."""
    explicit = os.environ.get("WASMLET_STATE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(xdg) / "wasmlet"


def runtime_dir() -> Path:
    """The folder holding the records (see the module's docstring)."""
    explicit = os.environ.get("WASMLET_RUNTIME_DIR")
    if explicit:
        return Path(explicit)
    xdg_runtime = os.environ.get("XDG_RUNTIME_DIR")
    if xdg_runtime and os.path.isabs(xdg_runtime):  # the spec: relative paths are invalid, ignore them
        return Path(xdg_runtime) / "wasmlet"
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "wasmlet" / "run"


def connect_url(host: str, port: int) -> str:
    """The URL a local client reaches a listener bound to ``host:port`` at (a wildcard becomes loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextlib.contextmanager
def recorded_host(admin: tuple[str, int], listen: tuple[str, int], state_dir: Path | None,
                  token_file: Path | None) -> Iterator[Path | None]:
    """Record this process as a running host for as long as the block runs.

    Yields the record's path, or None if it could not be written (the host
    serves anyway; clients then need ``--admin``): the caller logs why.
    """
    directory = runtime_dir()
    path = directory / f"{_PREFIX}{os.getpid()}.json"
    record = {
        "pid": os.getpid(),
        "admin": connect_url(*admin),
        "listen": connect_url(*listen),
        "state_dir": str(state_dir.resolve()) if state_dir is not None else None,
        "token_file": str(token_file.resolve()) if token_file is not None else None,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        _check_private(directory, is_dir=True)
        atomic_write(path, json.dumps(record, indent=2).encode() + b"\n", mode=0o600)
    except (OSError, ConfigError) as exc:
        raise ConfigError(f"cannot record this host in {directory}: {exc}") from exc
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


def running_hosts() -> list[HostRecord]:
    """The hosts recorded in ``runtime_dir()`` whose process still runs (stale records are removed)."""
    directory = runtime_dir()
    try:
        names = sorted(p.name for p in directory.iterdir() if p.name.startswith(_PREFIX) and p.suffix == ".json")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot read the running-host records in {directory}: {exc.strerror or exc}") from exc
    _check_private(directory, is_dir=True)
    hosts = []
    for name in names:
        record = _read(directory / name)
        if record is None:
            continue
        if not _alive(record.pid):
            with contextlib.suppress(OSError):  # a host that was killed could not remove it
                record.path.unlink()
            continue
        hosts.append(record)
    return hosts


def _check_private(path: Path, *, is_dir: bool) -> None:
    """Refuse a record (or folder) another user could have written: it decides where the token goes."""
    info = path.lstat()
    kind = "folder" if is_dir else "file"
    if (stat.S_ISDIR(info.st_mode) if is_dir else stat.S_ISREG(info.st_mode)) is False:
        raise ConfigError(f"{path}: expected a {kind}, found something else (a symbolic link?); remove it")
    if info.st_uid != os.getuid():
        raise ConfigError(f"{path}: the {kind} belongs to uid {info.st_uid}, not to you (uid {os.getuid()}); "
                          "remove it or set WASMLET_RUNTIME_DIR")
    if info.st_mode & 0o022:
        raise ConfigError(f"{path}: other users can write to this {kind} (mode {stat.S_IMODE(info.st_mode):04o}); "
                          f"run chmod go-w {path}")


def _read(path: Path) -> HostRecord | None:
    """The record in ``path``; None if it vanished meanwhile (its host exited)."""
    try:
        _check_private(path, is_dir=False)
        with path.open("rb") as handle:
            data = handle.read(_MAX_RECORD + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the host record {path}: {exc.strerror or exc}") from exc
    try:
        if len(data) > _MAX_RECORD:
            raise ValueError("larger than 64 KiB")
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("expected a JSON object")
        pid, admin, listen = raw.get("pid"), raw.get("admin"), raw.get("listen")
        state_dir, token_file = raw.get("state_dir"), raw.get("token_file")
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise ValueError("pid: expected a positive integer")
        for field, value in (("admin", admin), ("listen", listen)):
            if not isinstance(value, str) or not value.startswith("http://"):
                raise ValueError(f"{field}: expected an http:// URL")
        for field, value in (("state_dir", state_dir), ("token_file", token_file)):
            if value is not None and not (isinstance(value, str) and os.path.isabs(value)):
                raise ValueError(f"{field}: expected an absolute path or null")
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ConfigError(f"the host record {path} is damaged ({exc}); remove it") from exc
    assert isinstance(admin, str) and isinstance(listen, str)
    return HostRecord(pid, admin, listen, state_dir, token_file, path)


def _alive(pid: int) -> bool:
    if not pid_alive(pid):
        return False
    # A recycled pid: alive, but not a wasmlet (Linux shows the command line; elsewhere, trust the pid).
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"wasmlet" in cmdline
