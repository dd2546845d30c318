"""``wasmlet._files.atomic_write``: whole files or none, and an fsync only where a crash matters."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from wasmlet import _files


@pytest.mark.parametrize("durable", [True, False])
def test_atomic_write_replaces_the_file_whole_and_syncs_only_when_durable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(_files.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    target = tmp_path / "plan.json"
    target.write_bytes(b"old")
    _files.atomic_write(target, b"new", mode=0o600, durable=durable)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert len(synced) == (1 if durable else 0)
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]  # no temporary file left


def test_atomic_write_leaves_nothing_behind_when_it_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_files.os, "replace", refuse)
    target = tmp_path / "ready"
    target.write_bytes(b"1 0")
    with pytest.raises(OSError, match="No space"):
        _files.atomic_write(target, b"1 1", durable=False)
    assert target.read_bytes() == b"1 0"
    assert [p.name for p in tmp_path.iterdir()] == ["ready"]
