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


if _RATE > 0 and "wasmlet.server._worker" in sys.orig_argv:
    threading.Thread(target=_leak, name="test-leak", daemon=True).start()
