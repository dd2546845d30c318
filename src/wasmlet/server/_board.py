"""The connection board: each worker's connection count, in a file every worker maps (``_balance``).

Apart from the acceptor so that the supervisor, which creates the board and clears a dead
worker's slot, does not import asyncio on its way to its first deploy.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Sequence
from pathlib import Path

from .._errors import ConfigError

__all__ = ["BALANCE_ENV", "SLACK", "SLOTS", "Board", "should_accept"]

BALANCE_ENV = "WASMLET_BALANCE"  # "0": workers accept as uvicorn does (to measure what balancing changes)
SLOTS = 256  # workers a board has room for (a rolling replacement needs a second slot for a while)
SLACK = 1  # connections a worker may hold beyond the least loaded peer and still accept
_ABSENT = -1
_SLOT = struct.Struct("=i")
_ACCEPTS = struct.Struct("=I")
_ALL = struct.Struct(f"={SLOTS}i{SLOTS}I")  # each slot's connections, then each slot's accepts (mod 2**32)


def should_accept(mine: int, peers: Sequence[int], slack: int = SLACK) -> bool:
    """Whether a worker holding ``mine`` connections takes the next one, given its accepting peers' counts."""
    return not peers or mine <= min(peers) + slack


class Board:
    """The connection counts of a server's workers, in a file every worker maps (``mmap``, shared).

    Per slot: the connections its worker holds (-1: none accepting there), and how many it
    has accepted (wrapping), by which a deferring worker tells a peer that keeps accepting
    from one that does not. Each slot has one writer, its worker (and the supervisor, before
    the worker starts and after it exits).
    """

    SIZE = _ALL.size

    def __init__(self, path: Path, memory: mmap.mmap) -> None:
        self.path = path
        self._memory = memory

    @classmethod
    def create(cls, path: Path) -> Board:
        """A new board at ``path`` (the supervisor's), every slot empty."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, _ALL.pack(*[_ABSENT] * SLOTS, *[0] * SLOTS))
            return cls(path, mmap.mmap(fd, cls.SIZE))
        finally:
            os.close(fd)

    @classmethod
    def open(cls, path: Path) -> Board:
        """The board at ``path`` (a worker's); ``ConfigError`` if it is missing or not a board."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
        except OSError as exc:
            raise ConfigError(f"--board {path}: cannot open the connection board: {exc.strerror}") from exc
        try:
            size = os.fstat(fd).st_size
            if size != cls.SIZE:
                raise ConfigError(f"--board {path}: expected a connection board of {cls.SIZE} bytes, found {size}")
            return cls(path, mmap.mmap(fd, cls.SIZE))
        finally:
            os.close(fd)

    def set(self, slot: int, count: int) -> None:
        _SLOT.pack_into(self._memory, slot * _SLOT.size, count)

    def clear(self, slot: int) -> None:
        self.set(slot, _ABSENT)

    def get(self, slot: int) -> int:
        value: int = _SLOT.unpack_from(self._memory, slot * _SLOT.size)[0]
        return value

    def accepted(self, slot: int) -> None:
        """Count one more connection accepted by ``slot``'s worker."""
        offset = _SLOT.size * SLOTS + slot * _ACCEPTS.size
        _ACCEPTS.pack_into(self._memory, offset, (_ACCEPTS.unpack_from(self._memory, offset)[0] + 1) & 0xFFFFFFFF)

    def peers(self, slot: int) -> list[int]:
        """The counts of the other accepting workers."""
        return self.snapshot(slot)[0]

    def snapshot(self, slot: int) -> tuple[list[int], int]:
        """The counts of the other accepting workers, and the sum of every other slot's accepts."""
        values = _ALL.unpack_from(self._memory)
        peers = [n for i, n in enumerate(values[:SLOTS]) if n >= 0 and i != slot]
        return peers, sum(values[SLOTS:]) - values[SLOTS + slot]

    def close(self) -> None:
        self._memory.close()
