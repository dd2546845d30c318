"""Which requests run their guest on the event loop's thread (``WagiHandler.handle_inline``).

A hello-sized guest runs in tens of microseconds; handing it to a worker
thread and back costs more than that (a queue, a wake-up, two GIL
hand-offs, ``call_soon_threadsafe``), and under load the event loop then
waits for the GIL behind the guest threads. So an app whose handler allows it
(``inline_ok``: no outbound HTTP, no directories) runs inline, and its guest
gives way to a worker thread at the first epoch check after
``INLINE_BUDGET`` or at its first ``poll_oneoff``. An app whose guest gave
way runs on threads for a while (one second, doubling up to a minute for
each give-way in a row), so a slow app costs the event loop at most about
one epoch tick per back-off period, and a fast one pays nothing.
"""

from __future__ import annotations

import time
from typing import Protocol, cast

from ..guest import CgiRequest, GuestResult, GuestStats

__all__ = ["INLINE_BUDGET", "InlineHandler", "InlinePolicy"]

INLINE_BUDGET = 0.001  # seconds of CPU a guest may use on the event loop's thread before it gives way


class InlineHandler(Protocol):
    """A handler that can run a request on the calling thread (``WagiHandler``)."""

    def handle(self, request: CgiRequest, traceparent: str = "", deadline: float | None = None) -> GuestResult: ...

    def handle_inline(self, request: CgiRequest, traceparent: str = "",
                      budget: float = ...) -> tuple[GuestResult | None, float]: ...

_BACKOFF_FIRST = 1.0  # seconds on threads after a guest gave way
_BACKOFF_MAX = 60.0


class InlinePolicy:
    """Per app: inline, or on threads until a time. One event loop; not thread-safe."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._until: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        self._warm: set[str] = set()  # apps that ran inline here at least once (see ran)
        self.gave_way_count = 0  # over all apps, for tests and benchmarks

    def handler(self, app: str, handler: object) -> InlineHandler | None:
        """``handler`` if this request may run inline, else None."""
        if not self.enabled or not getattr(handler, "inline_ok", False):
            return None
        until = self._until.get(app)
        if until is not None:
            if time.monotonic() < until:
                return None
            del self._until[app]  # try inline again; the back-off stays until a run finishes inline
        return cast(InlineHandler, handler)

    def gave_way(self, app: str) -> None:
        """The app's guest outran its inline budget: threads for a while, longer each time in a row."""
        self.gave_way_count += 1
        backoff = min(self._backoff.get(app, _BACKOFF_FIRST / 2) * 2, _BACKOFF_MAX)
        self._backoff[app] = backoff
        self._until[app] = time.monotonic() + backoff

    def finished(self, app: str) -> None:
        """A run finished inline: the next give-way starts the back-off afresh."""
        self._backoff.pop(app, None)

    def ran(self, app: str, stats: GuestStats | None) -> None:
        """A run ended inline (answered or failed): short, or long enough to count as a give-way.

        A guest can hold the thread inside one host call, where no epoch check
        reaches it (one ``fd_write`` of its whole memory, say) and then end: that
        run cost the loop more than the budget without giving way, so it backs
        off all the same, and a guest doing it on purpose does so once per back-off.

        Except an app's first run in this worker: it pays the cold costs (the
        loop thread's scratch files, the first page faults of a pool slot) and
        took 1.2 ms of CPU for hello, which sent hello to threads for the first
        second under load. A guest that holds the thread on purpose gets one
        such run per worker more, then backs off as above.
        """
        long = stats is not None and stats.cpu_seconds > INLINE_BUDGET
        if app not in self._warm:
            if len(self._warm) >= 4096:  # bounded: names are the plan's, but deploys come and go
                self._warm.clear()
            self._warm.add(app)
            if long:
                return
        if long:
            self.gave_way(app)
        else:
            self.finished(app)
