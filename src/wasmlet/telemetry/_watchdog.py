"""The watchdog's signals, as pure logic (no clocks, no processes).

- ``CpuStreaks``: the seed's "CPU preemption > 50 ms three times in a row",
  computed per app from each request's measured guest CPU time.
- ``GrowthMeter``: a least-squares slope of RSS samples over a window, in
  bytes per minute, for the seed's "memory grows > 2 MB per minute" (the
  supervisor feeds it; thresholds, window and warm-up are ``wasmlet.server``'s
  ``WATCHDOG_*`` defaults).
"""

from __future__ import annotations

import collections
import dataclasses

__all__ = ["CpuStreaks", "GrowthMeter"]


@dataclasses.dataclass
class CpuStreaks:
    threshold: float = 0.050  # seconds of CPU per request
    run_length: int = 3
    _streaks: dict[str, int] = dataclasses.field(default_factory=dict)

    def record(self, app: str, cpu_seconds: float) -> bool:
        """Count one request; True exactly when the app's streak reaches ``run_length``."""
        if cpu_seconds > self.threshold:
            streak = self._streaks.get(app, 0) + 1
            self._streaks[app] = streak
            return streak == self.run_length
        self._streaks[app] = 0
        return False

    def streak(self, app: str) -> int:
        return self._streaks.get(app, 0)


class GrowthMeter:
    """Growth rate of a quantity sampled over a sliding time window."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._samples: collections.deque[tuple[float, float]] = collections.deque()

    def add(self, when: float, value: float) -> None:
        self._samples.append((when, value))
        while self._samples and when - self._samples[0][0] > self.window:
            self._samples.popleft()

    def covered(self) -> float:
        """Seconds between the oldest and newest sample."""
        return self._samples[-1][0] - self._samples[0][0] if len(self._samples) > 1 else 0.0

    def per_minute(self) -> float:
        """Least-squares slope, in units per minute (0 with fewer than 3 samples)."""
        n = len(self._samples)
        if n < 3:
            return 0.0
        mean_t = sum(t for t, _ in self._samples) / n
        mean_v = sum(v for _, v in self._samples) / n
        var = sum((t - mean_t) ** 2 for t, _ in self._samples)
        if var == 0:
            return 0.0
        cov = sum((t - mean_t) * (v - mean_v) for t, v in self._samples)
        return cov / var * 60.0

    def reset(self) -> None:
        self._samples.clear()
