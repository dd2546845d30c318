"""Test-only fault injection for the memory watchdog's test: worker processes that leak.

The watchdog test puts this folder on ``PYTHONPATH``; Python imports
``sitecustomize`` at start-up in every process it starts, so each wasmlet
worker (and only a worker) leaks ``WASMLET_TEST_LEAK_BYTES_PER_SECOND`` of
host memory while it lives, up to 256 MiB. wasmlet itself has no switch for
this: the hot path carries no test code.
"""

import os
import sys
import threading
import time

_RATE = int(os.environ.get("WASMLET_TEST_LEAK_BYTES_PER_SECOND", "0"))
_CAP = 256 << 20


def _leak() -> None:
    kept = []
    step = 0.05
    while len(kept) * int(_RATE * step) < _CAP:
        block = bytearray(int(_RATE * step))
        block[::4096] = b"x" * len(block[::4096])  # touch every page, so it is resident
        kept.append(block)
        time.sleep(step)
    while True:
        time.sleep(3600)


def _start() -> None:
    threading.Thread(target=_leak, name="test-leak", daemon=True).start()


if _RATE > 0 and "wasmlet.server._worker" in sys.orig_argv:
    _start()
elif _RATE > 0 and any("wasmlet.server._zygote" in arg for arg in sys.orig_argv):
    # Workers forked from the zygote (issue 13) start no interpreter: leak from the fork on, in the
    # worker only (the zygote forks a middle process, whose child is the worker).
    _ZYGOTE = os.getpid()
    os.register_at_fork(after_in_child=lambda: None if os.getppid() == _ZYGOTE else _start())
