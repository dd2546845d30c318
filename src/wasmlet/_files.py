"""Writing a file so that readers see the old content or the new, never a part."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write"]


def atomic_write(path: Path, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    """Write ``data`` to a temporary file beside ``path`` (created with ``mode``), fsync it,
    then rename it over ``path`` (rename(2) is atomic within a file system). Raises ``OSError``;
    no temporary file is left behind either way.

    ``durable=False`` skips the fsync, for files a crash makes moot (the runtime folder's plan and
    acknowledgements, made anew at every start): a reader still sees the old file or the new one,
    whole; only a power loss could leave either empty, and nothing reads them after one.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)  # mkstemp makes 0600; a secret stays 0600 from the first byte
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
