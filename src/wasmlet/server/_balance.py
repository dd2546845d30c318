"""Connections spread evenly over the workers that share one listening socket (issue 13).

Every worker polls the supervisor's listening socket, and uvloop (libuv)
accepts until the queue is empty: when a client opens its keep-alive
connections in a burst, the worker that wakes first takes most of them (50/14
of 64 in ``docs/benchmarks.md`` section 24), and at half the peak rate that
worker carries 78 % of the load while the other idles. The kernel does not
help: the connections are not spread, and one per-worker ``SO_REUSEPORT``
socket each would reset the connections still queued on a draining worker's
socket (unless ``net.ipv4.tcp_migrate_req``), failing requests on every
recycle.

So a worker accepts by itself (``BalancedAcceptor``, in place of uvicorn's
``loop.create_server``) and only while it holds no more connections than the
least loaded of its peers, plus ``SLACK`` (``should_accept``, pure). The
counts live on a ``Board`` (``_board``): a small file in the supervisor's private runtime
folder, mapped by every worker, with two 32-bit numbers per worker slot: the
connections it holds (-1: no worker accepting there) and how many it has
accepted. The supervisor gives each worker its slot and clears it when the
worker exits; a worker clears its own when it stops accepting.

A worker that defers leaves the connection to its peers and looks again after
``RECHECK``. If for ``MAX_DEFER`` no peer accepts anything (its accept counter
stays put: the peer is stopped, busy in a long loop pass, or killed and not
yet reaped), the peers are not waited for during ``IGNORE_FOR``: balancing
never delays a connection by more than ``MAX_DEFER``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

from ._board import BALANCE_ENV, SLACK, SLOTS, Board, should_accept

__all__ = ["BALANCE_ENV", "SLOTS", "BalancedAcceptor", "Board", "should_accept"]

log = logging.getLogger("wasmlet.server")

RECHECK = 0.0005  # seconds between looks while deferring
MAX_DEFER = 0.01  # seconds a connection is left to the peers at most
IGNORE_FOR = 0.1  # seconds balancing is off after the peers left a connection waiting MAX_DEFER
MAX_BURST = 64  # connections accepted in one readiness callback, before the loop serves requests again


class BalancedAcceptor:
    """Accepts on ``sock`` for this worker while it is not busier than its peers (``should_accept``).

    Stands in for the ``asyncio.Server`` uvicorn would make: ``close()`` stops
    accepting (and takes this worker off the board), ``wait_closed()`` returns.
    It counts the connections it accepted until their protocol loses them: from
    the ``accept(2)``, so a burst taken in one pass is counted as it is taken.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 protocol_factory: Callable[[], asyncio.Protocol], board: Board, slot: int, *,
                 slack: int = SLACK, max_defer: float = MAX_DEFER) -> None:
        self._loop = loop
        self._slack = slack
        self._max_defer = max_defer
        self._sock = sock
        self._factory = protocol_factory
        self._board = board
        self._slot = slot
        self._open = 0  # connections accepted and not lost
        self._deferred_since: float | None = None
        self._progress = 0  # the peers' accepts when the current wait began
        self._ignore_until = 0.0
        self._recheck: asyncio.TimerHandle | None = None
        self._closed = False
        self._tasks: set[asyncio.Task[object]] = set()

    def start(self) -> None:
        self._sock.setblocking(False)
        self._board.set(self._slot, self._open)  # on the board from now: its peers leave connections to it
        self._loop.add_reader(self._sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        for _ in range(MAX_BURST):
            if self._closed:
                return
            mine = self._open  # on the board already: set at start, at each accept and each loss
            now = self._loop.time()
            peers, progress = self._board.snapshot(self._slot)
            if now >= self._ignore_until and not should_accept(mine, peers, self._slack):
                if self._deferred_since is None or progress != self._progress:
                    # A peer accepted since the wait began: it is taking connections (a burst keeps the
                    # socket readable across waits), so the wait for this one starts now.
                    self._deferred_since = now
                    self._progress = progress
                if now - self._deferred_since < self._max_defer:
                    self._pause()
                    return
                log.debug("connection balancing: no peer took a connection within %.0f ms; "
                          "accepting without it for %.2fs", self._max_defer * 1e3, IGNORE_FOR)
                self._ignore_until = now + IGNORE_FOR
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                self._deferred_since = None  # nothing queued: a peer took it
                return
            except OSError as exc:
                self._accept_failed(exc)
                return
            self._deferred_since = None
            self._start_connection(conn)

    def _accept_failed(self, exc: OSError) -> None:
        if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
            return  # that client gave up before it was accepted
        # EMFILE, ENFILE, ENOBUFS, ENOMEM: out of descriptors or memory. Stop polling for a while
        # instead of spinning on a socket that stays readable (asyncio does the same, for 1 s).
        log.error("accepting a connection failed: %s; trying again in 1s", exc)
        self._pause(1.0)

    def _start_connection(self, conn: socket.socket) -> None:
        # uvloop makes it non-blocking and sets TCP_NODELAY, as on the connections it accepts itself.
        self._open += 1
        self._board.set(self._slot, self._open)
        self._board.accepted(self._slot)
        state = _Open()
        task = self._loop.create_task(self._loop.connect_accepted_socket(lambda: self._protocol(state), conn))
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._started(done, state, conn))

    def _protocol(self, state: _Open) -> asyncio.Protocol:
        """The server's protocol, which tells the board when its connection closes.

        The count on the board changes when a connection is accepted and when it is
        lost, and at no other time: no timer wakes the worker to publish it."""
        protocol = self._factory()
        lost = protocol.connection_lost

        def connection_lost(exc: Exception | None) -> None:
            lost(exc)
            self._lost(state)

        protocol.connection_lost = connection_lost  # type: ignore[method-assign]
        return protocol

    def _lost(self, state: _Open) -> None:
        if state.open:
            state.open = False
            self._open -= 1
            if not self._closed:
                self._board.set(self._slot, self._open)

    def _started(self, task: asyncio.Task[object], state: _Open, conn: socket.socket) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is not None:
            if not task.cancelled():
                log.warning("a connection could not be set up: %s", task.exception())
            conn.close()
            self._lost(state)  # no protocol will report it lost

    def _pause(self, seconds: float = RECHECK) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._recheck = self._loop.call_later(seconds, self._resume)

    def _resume(self) -> None:
        self._recheck = None
        if self._closed:
            return
        # No look at the queue here: if a peer took what was queued, its accept counter moved, and
        # the next wait starts afresh (the progress check in _on_readable).
        self._loop.add_reader(self._sock.fileno(), self._on_readable)

    def close(self) -> None:
        """Stop accepting; the connections already made are uvicorn's to drain."""
        if self._closed:
            return
        self._closed = True
        if self._recheck is not None:
            self._recheck.cancel()
        self._loop.remove_reader(self._sock.fileno())
        self._board.clear(self._slot)

    async def wait_closed(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks))


class _Open:
    """One accepted connection, counted until it is lost (once)."""

    __slots__ = ("open",)

    def __init__(self) -> None:
        self.open = True

