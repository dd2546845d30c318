"""``wasi:cli`` (environment, exit, stdio, terminals), ``wasi:clocks`` and ``wasi:random`` 0.2 for a proxy.

- environment: the manifest's ``environment`` only, no arguments, no cwd;
- stdin: an empty stream (``proxy.wit``: hosts must return an EOF stream);
- stdout and stderr: the host log, as WAGI's stderr (capped at 1 MiB together,
  past which the request fails as ``output-limit``);
- no terminals (``get-terminal-*`` return none);
- ``exit``: ``ok`` ends the guest and answers what it set; ``err`` is a
  failed run (``GuestExit``, 501);
- clocks: wall and monotonic, and their pollables, whose waits end by the
  request's deadline (``_io.Pollable``);
- random: ``os.urandom`` for both the secure and the insecure interfaces.
"""

from __future__ import annotations

import os
import random
import time

import wasmtime.component as wc

from . import _abi as abi
from . import _ids as ids
from ._abi import Trap
from ._io import InputStream, OutputStream, timer
from ._state import current, drop

__all__ = ["Exit", "define_cli", "define_clocks", "define_random"]

MAX_RANDOM = 1 << 20  # bytes per get-random-bytes call (a guest may ask for 2**64-1)


class Exit(Trap):
    """``wasi:cli/exit.exit``: the guest is done (``ok``) or failed (``err``)."""

    def __init__(self, ok: bool, code: int = 0) -> None:
        super().__init__(f"wasmlet: the guest exited ({'ok' if ok else f'status {code or 1}'})")
        self.ok = ok
        self.code = code


def _exit(status: tuple[bool, None]) -> None:
    session = current()
    session.exit = Exit(status[0], 0 if status[0] else 1)
    raise session.exit


def _exit_with_code(code: int) -> None:
    session = current()
    session.exit = Exit(code == 0, code)
    raise session.exit


def _log_stream() -> int:
    session = current()
    return session.add(OutputStream(session.write_log))


def define_cli(linker: wc.Linker, interface: str, instance: wc.LinkerInstance) -> None:
    """Define ``interface`` (``wasi:cli/NAME``, no version) on ``instance``."""
    name = interface.rsplit("/", 1)[1]
    f = abi.add_func
    if name == "environment":
        f(instance, "get-environment", lambda: list(current().environment),
          abi.list_of(abi.tuple_of(abi.string, abi.string)))
        f(instance, "get-arguments", lambda: [], abi.list_of(abi.string))
        f(instance, "initial-cwd", lambda: None, abi.option(abi.string))
    elif name == "exit":
        f(instance, "exit", _exit)
        f(instance, "exit-with-code", _exit_with_code)
    elif name == "stdin":
        f(instance, "get-stdin", lambda: current().add(InputStream(b"")), abi.own(ids.INPUT_STREAM))
    elif name in ("stdout", "stderr"):
        f(instance, f"get-{name}", _log_stream, abi.own(ids.OUTPUT_STREAM))
    elif name == "terminal-input":
        abi.add_resource(instance, "terminal-input", ids.TERMINAL_INPUT, drop)
    elif name == "terminal-output":
        abi.add_resource(instance, "terminal-output", ids.TERMINAL_OUTPUT, drop)
    elif name in ("terminal-stdin", "terminal-stdout", "terminal-stderr"):
        kind = ids.TERMINAL_INPUT if name == "terminal-stdin" else ids.TERMINAL_OUTPUT
        f(instance, f"get-{name}", lambda: None, abi.option(abi.own(kind)))
    else:
        raise KeyError(interface)


def _wall_now() -> tuple[int, int]:
    now = time.time_ns()
    return (now // 1_000_000_000, now % 1_000_000_000)


_DATETIME = abi.record(("seconds", abi.u64), ("nanoseconds", abi.u32))


def define_clocks(linker: wc.Linker, interface: str, instance: wc.LinkerInstance) -> None:
    f = abi.add_func
    if interface.endswith("/wall-clock"):
        f(instance, "now", _wall_now, _DATETIME)
        f(instance, "resolution", lambda: (0, 1), _DATETIME)
    elif interface.endswith("/monotonic-clock"):
        f(instance, "now", time.monotonic_ns, abi.u64)
        f(instance, "resolution", lambda: 1, abi.u64)
        f(instance, "subscribe-instant", timer, abi.own(ids.POLLABLE))
        f(instance, "subscribe-duration", lambda ns: timer(time.monotonic_ns() + ns), abi.own(ids.POLLABLE))
    else:
        raise KeyError(interface)


def _random_bytes(size: int) -> bytes:
    if size > MAX_RANDOM:
        raise Trap(f"wasmlet: get-random-bytes of {size} bytes (at most {MAX_RANDOM} per call)")
    return os.urandom(size)


def define_random(linker: wc.Linker, interface: str, instance: wc.LinkerInstance) -> None:
    f = abi.add_func
    u64 = lambda: int.from_bytes(os.urandom(8), "little")  # noqa: E731
    if interface.endswith("/random"):
        f(instance, "get-random-bytes", _random_bytes, abi.bytes_list)
        f(instance, "get-random-u64", u64, abi.u64)
    elif interface.endswith("/insecure"):
        f(instance, "get-insecure-random-bytes", _random_bytes, abi.bytes_list)
        f(instance, "get-insecure-random-u64", u64, abi.u64)
    elif interface.endswith("/insecure-seed"):
        f(instance, "insecure-seed", lambda: (random.getrandbits(64), random.getrandbits(64)),
          abi.tuple_of(abi.u64, abi.u64))
    else:
        raise KeyError(interface)
