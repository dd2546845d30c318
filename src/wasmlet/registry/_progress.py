"""Transfer progress: a bar on a terminal, nothing otherwise.

A bar is drawn only when stderr is a TTY and the blob is large enough to be
worth watching; logs, CI output and piped stderr stay clean.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["PROGRESS_THRESHOLD", "Transfer"]

PROGRESS_THRESHOLD = 4 << 20  # below this a transfer is over before a bar would help


class Transfer:
    """``with Transfer(label, total) as t: t.advance(n)``."""

    def __init__(self, label: str, total: int, enabled: bool | None = None) -> None:
        if enabled is None:
            enabled = total >= PROGRESS_THRESHOLD and sys.stderr.isatty()
        self._progress: Progress | None = None
        if enabled:
            # Imported here: rich costs tens of milliseconds to import, and
            # deploys and workers that never draw a bar should not pay it.
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TimeRemainingColumn(),
                console=Console(stderr=True), transient=True,
            )
            self._task = self._progress.add_task(label, total=total)

    def __enter__(self) -> Transfer:
        if self._progress is not None:
            self._progress.start()
        return self

    def advance(self, count: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, count)

    def reset(self) -> None:
        """Start over (a retried upload)."""
        if self._progress is not None:
            self._progress.reset(self._task)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()
