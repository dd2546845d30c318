"""Connections spread over the workers sharing one listening socket (``_balance``, issue 13).

The pure rule, the board the workers share, the acceptor on a real listening
socket (with a peer that takes connections, one that never does, and a board
holding garbage), and a real ``wasmlet serve --workers 2`` under a burst of
keep-alive connections, before and after a worker is killed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import EXAMPLES, Server
from tests.server.test_zygote import wait_until, zygote_and_workers

from wasmlet._errors import ConfigError
from wasmlet.server._balance import IGNORE_FOR, SLOTS, BalancedAcceptor, Board, should_accept

Serve = Callable[..., Server]
HELLO = str(EXAMPLES / "hello" / "app.yaml")


# The rule ---------------------------------------------------------------------------------------
def test_a_worker_accepts_unless_a_peer_holds_fewer_connections_than_it_by_more_than_the_slack() -> None:
    assert should_accept(0, [])
    assert should_accept(50, [])  # alone: always
    assert should_accept(3, [3, 9])
    assert should_accept(4, [3, 9])  # within the slack of the least loaded
    assert not should_accept(5, [3, 9])
    assert not should_accept(5, [9, 3])  # the least loaded peer, wherever it is
    assert should_accept(5, [3], slack=2)
    assert not should_accept(1, [0], slack=0)


# The board --------------------------------------------------------------------------------------
def test_a_new_board_has_every_slot_empty_and_shows_each_worker_its_peers(tmp_path: Path) -> None:
    board = Board.create(tmp_path / "connections")
    assert board.peers(0) == [] and all(board.get(i) == -1 for i in range(SLOTS))
    board.set(0, 7)
    board.set(5, 2)
    worker = Board.open(tmp_path / "connections")  # another process's view of the same file
    assert sorted(worker.peers(0)) == [2] and sorted(worker.peers(5)) == [7] and sorted(worker.peers(1)) == [2, 7]
    worker.set(5, 3)
    assert board.get(5) == 3
    board.clear(0)
    assert worker.peers(5) == []
    assert (tmp_path / "connections").stat().st_mode & 0o077 == 0  # the supervisor's alone


def test_the_board_counts_each_workers_accepts_so_a_waiting_worker_sees_its_peers_progress(tmp_path: Path) -> None:
    board = Board.create(tmp_path / "connections")
    assert board.snapshot(0) == ([], 0)
    board.set(1, 0)
    for _ in range(3):
        board.accepted(1)
    board.accepted(0)  # its own accepts are not its peers' progress
    assert board.snapshot(0) == ([0], 3) and board.snapshot(1) == ([], 1)
    offset = 4 * SLOTS + 4 * 2  # slot 2's accepts, past every slot's count
    Board.open(tmp_path / "connections")._memory[offset:offset + 4] = b"\xff\xff\xff\xff"  # about to wrap
    board.accepted(2)
    assert board.snapshot(0)[1] == 3  # wrapped to 0: still a number that changes with every accept


def test_a_missing_board_or_one_of_the_wrong_size_or_a_symlink_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--board .*missing: cannot open the connection board"):
        Board.open(tmp_path / "missing")
    short = tmp_path / "short"
    short.write_bytes(b"\xff" * 12)
    with pytest.raises(ConfigError, match=rf"--board .*short: expected a connection board of {Board.SIZE} bytes, "
                                          r"found 12"):
        Board.open(short)
    Board.create(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(ConfigError, match="cannot open the connection board"):
        Board.open(tmp_path / "link")
    with pytest.raises(FileExistsError):
        Board.create(tmp_path / "real")  # never over another server's


# The acceptor on a real socket ------------------------------------------------------------------
class Recorder(asyncio.Protocol):
    """Stands in for uvicorn's protocol: notes which acceptor's factory made it."""

    made: list[str]

    def __init__(self, name: str) -> None:
        self.name = name

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        Recorder.made.append(self.name)

    def connection_lost(self, exc: Exception | None) -> None:
        pass


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock
    sock.close()


async def _connect(port: int, count: int) -> list[socket.socket]:
    loop = asyncio.get_running_loop()
    clients = []
    for _ in range(count):
        client = socket.socket()
        client.setblocking(False)
        await loop.sock_connect(client, ("127.0.0.1", port))
        clients.append(client)
    return clients


async def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "not within the deadline"
        await asyncio.sleep(0.001)


def test_a_busier_worker_leaves_new_connections_to_its_less_loaded_peer(tmp_path: Path,
                                                                         listener: socket.socket) -> None:
    Recorder.made = []
    board = Board.create(tmp_path / "connections")
    port = listener.getsockname()[1]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        # Two workers on one socket (two descriptors, as two processes have); max_defer is long:
        # no fallback here. "busy" starts alone and takes the first 5 connections.
        busy = BalancedAcceptor(loop, listener.dup(), lambda: Recorder("busy"), board, 0, max_defer=30)
        busy.start()
        clients = await _connect(port, 5)
        await _until(lambda: len(Recorder.made) == 5)
        assert board.get(0) == 5
        idle = BalancedAcceptor(loop, listener.dup(), lambda: Recorder("idle"), board, 1, max_defer=30)
        idle.start()
        clients += await _connect(port, 6)
        await _until(lambda: len(Recorder.made) == 11)
        # busy (5) waits while idle holds fewer than 4 (the slack is 1); then either takes the rest.
        assert Recorder.made[5:9] == ["idle"] * 4, Recorder.made
        assert board.get(0) + board.get(1) == 11 and board.get(1) >= 4
        for client in clients[:3]:
            client.close()
        await _until(lambda: board.get(0) + board.get(1) == 8)  # each tells the board when a connection closes
        for acceptor in (busy, idle):
            acceptor.close()
            await acceptor.wait_closed()
        assert board.peers(2) == []  # both off the board once they stop accepting
        for client in clients[3:]:
            client.close()

    asyncio.run(main())


def test_a_peer_that_never_accepts_delays_a_connection_by_max_defer_at_most(
        tmp_path: Path, listener: socket.socket, caplog: pytest.LogCaptureFixture) -> None:
    Recorder.made = []
    board = Board.create(tmp_path / "connections")
    board.set(7, 0)  # a worker stopped (or killed and not yet reaped) with no connections: it never accepts

    async def main() -> None:
        loop = asyncio.get_running_loop()
        acceptor = BalancedAcceptor(loop, listener.dup(), lambda: Recorder("me"), board, 0, max_defer=0.05)
        acceptor.start()
        started = loop.time()
        clients = await _connect(listener.getsockname()[1], 20)  # it defers from the third (2 > 0 + 1)
        await _until(lambda: len(Recorder.made) == 20, timeout=10)
        waited = loop.time() - started
        acceptor.close()
        for client in clients:
            client.close()
        assert waited < 30, waited  # generous, for a loaded machine: the point is the count below

    with caplog.at_level(logging.DEBUG, logger="wasmlet.server"):
        asyncio.run(main())
    # One wait of max_defer, then IGNORE_FOR (100 ms) without balancing, in which the 18 queued
    # connections are taken at once: not one wait per connection.
    assert 1 <= caplog.text.count("no peer took a connection within 50 ms") <= 2, caplog.text


@pytest.mark.parametrize("value", [2**31 - 1, -5, -2**31])
def test_a_board_holding_garbage_does_not_stop_a_worker_accepting(tmp_path: Path, listener: socket.socket,
                                                                  value: int) -> None:
    """A huge count (a million times too large, and more) is a busy peer; a negative one other than -1
    is no peer. Either way this worker accepts at once, without the fallback."""
    Recorder.made = []
    board = Board.create(tmp_path / "connections")
    for slot in range(1, SLOTS):
        board.set(slot, value)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        acceptor = BalancedAcceptor(loop, listener.dup(), lambda: Recorder("me"), board, 0, max_defer=30)
        acceptor.start()
        clients = await _connect(listener.getsockname()[1], 5)
        await _until(lambda: len(Recorder.made) == 5)
        acceptor.close()
        for client in clients:
            client.close()

    asyncio.run(main())


def test_a_closed_acceptor_takes_no_more_connections(tmp_path: Path, listener: socket.socket) -> None:
    Recorder.made = []
    board = Board.create(tmp_path / "connections")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        acceptor = BalancedAcceptor(loop, listener.dup(), lambda: Recorder("me"), board, 3)
        acceptor.start()
        assert board.get(3) == 0
        acceptor.close()
        acceptor.close()  # twice is harmless
        await acceptor.wait_closed()
        assert board.get(3) == -1
        clients = await _connect(listener.getsockname()[1], 2)
        await asyncio.sleep(0.2)
        assert Recorder.made == []
        for client in clients:
            client.close()

    asyncio.run(main())


# A real server --------------------------------------------------------------------------------
def _connections_by_worker(port: int, workers: list[int]) -> dict[int, int]:
    """How many established connections to ``port`` each worker holds (sockets in /proc, no ss)."""
    inodes: dict[str, int] = {}
    for pid in workers:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes[target[8:-1]] = pid
    counts = dict.fromkeys(workers, 0)
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == "01" and fields[9] in inodes:  # 01: ESTABLISHED
            counts[inodes[fields[9]]] += 1
    return counts


def _burst(server: Server, count: int) -> list[socket.socket]:
    """``count`` keep-alive connections opened at once (as wrk does), each answered once."""
    clients = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(count)]
    request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
    for client in clients:
        client.sendall(request)
    for client in clients:
        head = b""
        while b"Hello, world!" not in head:
            chunk = client.recv(4096)
            assert chunk, "connection closed before the answer"
            head += chunk
        assert head.startswith(b"HTTP/1.1 200")
    return clients


def _cpu_ticks(pids: list[int]) -> int:
    """utime + stime of ``pids`` together, in clock ticks (proc(5)); a process gone counts 0."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total


def _wait_quiet(pids: list[int], window: float = 0.3, timeout: float = 15.0) -> None:
    """Until ``pids`` together use at most 2 clock ticks (~20 ms) of CPU in ``window``: the host's
    start-up work is done, and an idle host (its periodic housekeeping) is quieter than that."""
    deadline = time.monotonic() + timeout
    before = _cpu_ticks(pids)
    while time.monotonic() < deadline:
        time.sleep(window)
        now = _cpu_ticks(pids)
        if now - before <= 2:
            return
        before = now
    raise AssertionError(f"{pids} still busy after {timeout}s")


def test_a_burst_of_connections_is_spread_evenly_over_the_workers(serve: Serve) -> None:
    server = serve(HELLO, workers=2)
    zygote, workers = zygote_and_workers(server)
    assert len(workers) == 2 and all(_maps_board(pid) for pid in workers)
    # Bursts on a host still starting (the supervisor building its admin API, the zygote importing the
    # component stacks once idle) find both cores busy: a worker not scheduled within MAX_DEFER is given
    # up on, and all three bursts could come out lopsided. The balancing is what is measured here.
    _wait_quiet([server.process.pid, *workers, *([zygote] if zygote else [])])
    splits = []
    for _ in range(3):  # without balancing, 22/10 and 23/9 are common (docs/benchmarks.md section 27)
        clients = _burst(server, 32)
        counts = _connections_by_worker(server.port, workers)
        assert sum(counts.values()) == 32, counts
        splits.append(sorted(counts.values()))
        for client in clients:
            client.close()
        wait_until(lambda: sum(_connections_by_worker(server.port, workers).values()) == 0, 10, "connections closed")
    # Best effort by design: on a loaded machine a worker not scheduled within MAX_DEFER (10 ms) is
    # given up on for that burst. Two bursts in three must split within 6 (16/16 is what it does).
    assert sum(high - low <= 6 for low, high in splits) >= 2, splits


def _board_of(server: Server) -> Board:
    """The supervisor's board (in its runtime folder, named after its pid)."""
    (path,) = Path(tempfile.gettempdir()).glob(f"wasmlet-run-{server.process.pid}-*/connections")
    return Board.open(path)


def test_after_a_worker_is_killed_its_slot_is_cleared_and_its_peer_takes_new_connections(serve: Serve) -> None:
    server = serve(HELLO, workers=2)
    _, workers = zygote_and_workers(server)
    board = _board_of(server)
    wait_until(lambda: len(board.peers(SLOTS - 1)) == 2, 10, "both workers on the board")
    held = _burst(server, 10)  # the survivor holds some: it must not wait for the dead worker's slot
    os.kill(workers[0], signal.SIGKILL)
    for _ in range(20):
        assert httpx.get(server.url + "/", timeout=5).status_code == 200
    wait_until(lambda: len(set(zygote_and_workers(server)[1]) - set(workers)) == 1, 20, "a replacement")
    (new,) = set(zygote_and_workers(server)[1]) - set(workers)
    wait_until(lambda: f"worker {new} ready" in server.output(), 20, "the replacement ready")
    # Two slots in use: the survivor's and the replacement's; the dead worker's was cleared when it was reaped.
    wait_until(lambda: len(board.peers(SLOTS - 1)) == 2, 10, "the survivor and the replacement on the board")
    # New connections until the replacement has taken one, so it serves warm below. A replacement slower
    # than MAX_DEFER to take its first ones (its loop busy just after start) turns the survivor's balancing
    # off for IGNORE_FOR, by design: that window is let run out before the burst.
    warm: list[socket.socket] = []  # each answered once, and held until one is the replacement's
    deadline = time.monotonic() + 20
    while _connections_by_worker(server.port, [new])[new] == 0:
        assert time.monotonic() < deadline, f"the replacement took none of {len(warm)} connections within 20 s"
        warm += _burst(server, 1)
    for client in warm:
        client.close()
    # It takes until it holds as many as the survivor, then every other one. Best effort by design, as in
    # the test above: a replacement not scheduled within MAX_DEFER in a burst is given up on for that
    # burst (about one run of this file in ten: 0 of 16), so it has three bursts to show it.
    splits = []
    for _ in range(3):
        time.sleep(2 * IGNORE_FOR)  # a fallback window (balancing off for IGNORE_FOR) has run out
        clients = _burst(server, 16)
        splits.append(_connections_by_worker(server.port, [workers[1], new]))
        for client in clients:
            client.close()
        wait_until(lambda: _connections_by_worker(server.port, [new])[new] == 0, 10, "the burst closed")
        if splits[-1][new] >= 6:
            break
    assert splits[-1][new] >= 6, splits
    for client in held:
        client.close()
    board.close()


def _maps_board(pid: int) -> bool:
    """Whether worker ``pid`` has the supervisor's connection board mapped."""
    return any(line.endswith("/connections") for line in Path(f"/proc/{pid}/maps").read_text().splitlines())


def test_without_balancing_workers_accept_as_uvicorn_does(serve: Serve) -> None:
    server = serve(HELLO, workers=2, extra_env={"WASMLET_BALANCE": "0"})
    _, workers = zygote_and_workers(server)
    clients = _burst(server, 8)
    assert sum(_connections_by_worker(server.port, workers).values()) == 8
    assert not any(_maps_board(pid) for pid in workers)
    for client in clients:
        client.close()


def test_a_worker_given_an_unusable_board_serves_without_balancing(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    import uvicorn

    from wasmlet.server._worker import BalancedServer, _server

    async def app(scope: object, receive: object, send: object) -> None:  # never called
        raise AssertionError

    config = uvicorn.Config(app)
    (tmp_path / "connections").write_bytes(b"\0" * 7)
    with caplog.at_level(logging.WARNING, logger="wasmlet.server"):
        plain = _server(config, str(tmp_path / "connections"), 0)
    assert type(plain) is uvicorn.Server
    assert f"expected a connection board of {Board.SIZE} bytes, found 7; accepting without" in caplog.text
    Board.create(tmp_path / "board")
    assert isinstance(_server(config, str(tmp_path / "board"), 3), BalancedServer)
    assert type(_server(config, None, 0)) is uvicorn.Server  # WASMLET_BALANCE=0: no --board
