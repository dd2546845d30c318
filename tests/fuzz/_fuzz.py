"""Settings shared by the property-based fuzz tests (hypothesis).

The normal test suite runs a bounded, derandomised pass: the same examples on
every run, so a failure reproduces, and the whole of ``tests/fuzz`` stays
under about 30 s on two cores. ``bench/fuzz.py`` runs the same properties for
longer with fresh random examples by setting ``WASMLET_FUZZ_SCALE`` (a factor
on every test's example count) and keeps hypothesis' example database in
``bench/out/hypothesis``; what it finds is fixed and kept as an ``@example``.

Every property also bounds time: an example that takes longer than
``DEADLINE`` fails (the parsers answer in microseconds; seconds mean a
quadratic or worse path).
"""

from __future__ import annotations

import datetime
import os

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

__all__ = ["DEADLINE", "LONG", "fuzz"]

SCALE = float(os.environ.get("WASMLET_FUZZ_SCALE", "1"))
LONG = SCALE > 1
DEADLINE = datetime.timedelta(seconds=5)  # generous: a shared 2-core machine, not a speed assertion
_DATABASE = os.environ.get("WASMLET_FUZZ_DATABASE")


def fuzz(examples: int) -> settings:
    """Settings for a property: ``examples`` in the bounded run, scaled in the long one."""
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=DEADLINE,
        derandomize=not LONG,
        database=DirectoryBasedExampleDatabase(_DATABASE) if _DATABASE else None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
        print_blob=True,
    )
