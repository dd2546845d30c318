"""The worker zygote (issue 13): import what a worker needs once, then fork workers on request.

``python -m wasmlet.server._zygote --control FD --parent PID`` runs it;
``wasmlet._prefork.Zygote.start`` and the console script's head start (``wasmlet._early``)
call ``main`` through ``python -c`` instead (``ZYGOTE_MAIN``), with the collector turned off
before anything is imported (the protocol is described in ``_prefork``). It imports
the worker's modules (with the supervisor's environment, so prometheus_client,
which picks its multi-process storage at import, writes where the workers must)
but creates no wasmtime Engine, no thread, no event loop and no socket: a fork
of it is as clean as a fresh interpreter that has run its imports.

It forks twice per worker: the middle process exits at once, so the worker is
re-parented to the supervisor (a child subreaper) and the supervisor watches it
as its own child. The worker then does what ``python -m wasmlet.server._worker``
does with the same arguments, on the listening socket it was sent (its ``--fd`` rewritten to
the number the socket has here, see ``parse_request``), and shows that command line (as much of it as
fits in the zygote's) and the interpreter's name to ``ps``. It gets a fresh ``random`` state (``random``
re-seeds itself after a fork), the default SIGINT/SIGTERM handlers, and no
logging set up until its ``main`` configures it.

The zygote dies with the supervisor: ``PR_SET_PDEATHSIG`` (SIGKILL), and it
exits when its channel reads EOF. It ignores SIGINT, so a Ctrl-C in a terminal
leaves it to the supervisor, which stops it once its workers have drained.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import gc
import importlib
import json
import os
import signal
import socket
import stat
import sys
import time
import traceback
from typing import Any

from .._prefork import MAX_MESSAGE

__all__ = ["main"]

# What a worker imports on its way to its first request, beyond ``_worker`` itself: uvicorn's loop,
# lifespan and protocol modules are imported by name when it starts (measured with -X importtime).
PRELOAD = ("wasmlet.server._worker", "uvloop", "uvicorn.loops.uvloop", "uvicorn.lifespan.on",
           "uvicorn.protocols.http.httptools_impl", "uvicorn.protocols.websockets.auto",
           "uvicorn.middleware.proxy_headers", "concurrent.futures.thread")
# What a worker serving components imports (guest._handlers loads these with the first component):
# not on the way to the host's first response, so imported once the channel has been idle IDLE seconds.
# OpenTelemetry's API likewise (a worker loads it with the first request that brings a trace context).
PRELOAD_IDLE = ("wasmlet.guest._component", "wasmlet.guest._proxy", "wasmlet.guest._spin", "opentelemetry.trace",
                "opentelemetry.propagate")
IDLE = 0.2

_PR_SET_NAME = 15  # linux/prctl.h
_PR_GET_NAME = 16
_PR_SET_PDEATHSIG = 1
_REPARENT_WAIT = 5.0  # seconds a new worker waits to be re-parented to the supervisor
_MAX_ARGS = 256


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _comm() -> bytes:
    buf = ctypes.create_string_buffer(16)
    _libc().prctl(_PR_GET_NAME, buf, 0, 0, 0)
    return buf.value


def _set_comm(name: bytes) -> None:
    """The name ``ps -o comm``/``pgrep`` show (the workers get back the interpreter's)."""
    _libc().prctl(_PR_SET_NAME, ctypes.c_char_p(name[:15]), 0, 0, 0)


def _set_cmdline(args: list[str]) -> None:
    """Show ``args`` as this process's command line (``ps``, ``pgrep -f``), as many as fit whole.

    The kernel reads /proc/PID/cmdline from the process's own memory between
    ``arg_start`` and ``arg_end`` (proc(5), /proc/PID/stat fields 48 and 49);
    a process may write its own memory through /proc/self/mem. Best effort.
    """
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/stat", "rb") as handle:
            fields = handle.read().rpartition(b")")[2].split()
        start, end = int(fields[45]), int(fields[46])  # fields 48 and 49; fields[0] is field 3
        text = b""
        for arg in args:
            piece = arg.encode() + b"\0"
            if len(text) + len(piece) > end - start:
                break
            text += piece
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            mem.write(text.ljust(end - start, b"\0"))


def _die_with(parent: int, sig: int) -> None:
    """``sig`` when ``parent`` dies (prctl(2) PR_SET_PDEATHSIG); exit now if it is already gone."""
    _libc().prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(70)


def parse_request(message: bytes, fds: list[int], flags: int, own_env: dict[str, str]) -> dict[str, Any]:
    """Check a fork request (pure; raises ``ValueError`` naming what is wrong, sent back as the reply)."""
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        raise ValueError(f"request truncated (larger than {MAX_MESSAGE} bytes, or more than one descriptor)")
    if len(fds) != 1:
        raise ValueError(f"expected exactly one descriptor (the listening socket), got {len(fds)}")
    try:
        request = json.loads(message)
    except ValueError as exc:
        raise ValueError(f"request is not JSON: {exc}") from exc
    if not isinstance(request, dict) or set(request) != {"argv", "env", "cwd"}:
        raise ValueError("expected a JSON object with exactly argv, env and cwd")
    argv, env, cwd = request["argv"], request["env"], request["cwd"]
    if not isinstance(argv, list) or not all(isinstance(a, str) and "\0" not in a for a in argv) \
            or len(argv) > _MAX_ARGS:
        raise ValueError(f"argv: expected a list of at most {_MAX_ARGS} strings")
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) and k and "=" not in k
                                            and "\0" not in k + v for k, v in env.items()):
        raise ValueError("env: expected an object of NAME: value strings")
    if not isinstance(cwd, str) or not cwd.startswith("/") or "\0" in cwd:
        raise ValueError("cwd: expected an absolute path")
    if "--fd" not in argv or argv.index("--fd") + 1 >= len(argv) or not argv[argv.index("--fd") + 1].isdigit():
        raise ValueError("argv: expected --fd N")
    named = int(argv[argv.index("--fd") + 1])
    if not 3 <= named < 65536:
        raise ValueError(f"argv: --fd {named} is not a descriptor a worker can use (3 to 65535)")
    # prometheus_client chose its storage when the zygote imported it: a worker wanting another would count wrong.
    for name in ("PROMETHEUS_MULTIPROC_DIR",):
        if env.get(name) != own_env.get(name):
            raise ValueError(f"env: {name} differs from the zygote's ({own_env.get(name)!r}); start a new zygote")
    # The worker is told the socket's number here, not the sender's: that number may be one of this
    # process's own descriptors (a metrics file of prometheus_client's, say), which a dup2 onto it would
    # close under the worker's feet. The descriptor received is free here by construction (recvmsg(2)).
    argv = [*argv]
    argv[argv.index("--fd") + 1] = str(fds[0])
    return {"argv": argv, "env": env, "cwd": cwd}


def _check_listening(fd: int) -> None:
    if not stat.S_ISSOCK(os.fstat(fd).st_mode):
        raise ValueError("the descriptor sent is not a socket")
    with socket.socket(fileno=os.dup(fd)) as sock:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        kind = sock.type
    if not listening or kind != socket.SOCK_STREAM:
        raise ValueError("the descriptor sent is not a listening stream socket")


def _fork_worker(request: dict[str, Any], fd: int, channel: socket.socket, comm: bytes, parent: int) -> int:
    """Fork twice; return the worker's pid once it is the supervisor's child."""
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle == 0:
        code = 1
        try:
            os.close(read_end)
            # Renamed here, before the worker is forked, so the worker has its name from birth: it is
            # the supervisor's child as soon as this process exits, possibly before it first runs, and
            # would show as a second "wasmlet-zygote" under the supervisor until then.
            _set_comm(comm)
            _set_cmdline([sys.executable, "-m", "wasmlet.server._worker", *request["argv"]])
            pid = os.fork()
            if pid == 0:
                os.close(write_end)
                _become_worker(request, channel, parent)  # does not return
            os.write(write_end, str(pid).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        data = reader.read()
    os.waitpid(middle, 0)  # once it is reaped, the worker has been re-parented
    if not data.isdigit():
        raise OSError("the middle process could not fork the worker")
    pid = int(data)
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            ppid = int(handle.read().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError) as exc:
        raise OSError(f"worker {pid} exited at once") from exc
    if ppid != parent:  # the supervisor is not a subreaper: it could not wait for this worker
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        raise OSError(f"worker {pid} was re-parented to {ppid}, not to the supervisor {parent}")
    return pid


def _become_worker(request: dict[str, Any], channel: socket.socket, parent: int) -> None:
    code: int = 1
    try:
        channel.close()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh interpreter
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        deadline = time.monotonic() + _REPARENT_WAIT
        while os.getppid() != parent:  # the middle process exits at once
            if time.monotonic() > deadline:
                os._exit(70)
            time.sleep(0.0002)
        _die_with(parent, signal.SIGTERM)  # as ``_worker.main`` does, but before it: no gap after the re-parenting
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        from . import _worker

        sys.argv = [_worker.__file__ or "wasmlet.server._worker", *request["argv"]]
        code = _worker.main(request["argv"])
    except SystemExit as exc:  # argparse, or main's own sys.exit
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            atexit._run_exitfuncs()  # as an interpreter that exits does (logging flushes its handlers)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _reply(channel: socket.socket, reply: dict[str, object]) -> bool:
    """Send ``reply``; False if the supervisor closed its end (it is exiting): the zygote then just exits."""
    try:
        channel.sendall(json.dumps(reply).encode())
    except ConnectionError:  # EPIPE, ECONNRESET
        return False
    return True


def serve(channel: socket.socket, parent: int) -> int:
    """Answer fork requests until the channel closes."""
    comm = _comm()
    _set_comm(b"wasmlet-zygote")
    own_env = dict(os.environ)
    later = list(PRELOAD_IDLE)
    while True:
        channel.settimeout(IDLE if later else None)
        try:
            message, fds, flags, _ = socket.recv_fds(channel, MAX_MESSAGE, 4)
        except TimeoutError:
            _preload_idle(later)
            later = []
            continue
        except ConnectionError:
            return 0
        finally:
            channel.settimeout(None)  # the reply blocks as it did
        if not message and not fds:
            return 0  # EOF: the supervisor closed the channel, or is gone
        try:
            request = parse_request(message, fds, flags, own_env)
            _check_listening(fds[0])
            reply: dict[str, object] = {"pid": _fork_worker(request, fds[0], channel, comm, parent)}
        except ValueError as exc:
            reply = {"error": str(exc)}
        except OSError as exc:
            reply = {"error": f"fork failed: {exc}"}
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if not _reply(channel, reply):
            return 0


def _preload_idle(names: list[str]) -> None:
    """Import ``names`` as the start-up imports were: without the collector, then frozen. Best effort:
    a worker that needs one of them and finds it missing imports it itself."""
    gc.disable()
    try:
        for name in names:
            importlib.import_module(name)
    except Exception:  # a broken module: the worker that needs it will say so, with its own traceback
        traceback.print_exc()
    finally:
        gc.freeze()
        gc.enable()
    if len(os.listdir("/proc/self/task")) != 1:  # as checked before "ready": forking would be unsafe now
        print("wasmlet-zygote: a thread started while importing; exiting (workers are spawned instead)",
              file=sys.stderr, flush=True)
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wasmlet-zygote")
    parser.add_argument("--control", type=int, required=True, help="this end of the socketpair")
    parser.add_argument("--parent", type=int, required=True, help="the supervisor's pid")
    args = parser.parse_args(argv)
    _die_with(args.parent, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = socket.socket(fileno=args.control)
    gc.disable()  # the imports make only long-lived objects: no pass until they are frozen below
    try:
        for name in PRELOAD:
            importlib.import_module(name)
        from ..plan import wasmtime_version

        wasmtime_version()  # cached here, not looked up by every worker on its way to the first response
    except Exception as exc:
        traceback.print_exc()
        _reply(channel, {"error": f"import failed: {exc!r}"})
        return 1
    # What is imported stays shared with every worker, copy-on-write: out of the collector's sight, its
    # pages are not written to by collections in the workers. CPython's docs for gc.freeze advise exactly
    # this: gc.disable() early, gc.freeze() right before fork(), no collection in between. A collection
    # here would find ~930 of the ~94,000 objects unreachable (~280 KiB, shared by every worker) and take
    # 20-30 ms, all of it on the way to `wasmlet serve`'s first response: that garbage stays frozen instead.
    gc.freeze()
    gc.enable()  # the workers forked from here collect as usual (and freeze their own start-up)
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:  # fork(2) copies only the calling thread: a lock another held would stay locked
        _reply(channel, {"error": f"{threads} threads after the imports; forking is unsafe"})
        return 1
    if not _reply(channel, {"ready": os.getpid()}):
        return 0
    return serve(channel, args.parent)


if __name__ == "__main__":
    sys.exit(main())
