"""The local tag index: which manifest a tag named when it was last pulled.

``oci/tags.json`` under the cache root maps ``host[:port]/repository:tag`` to
the manifest digest, the module digest and the time of the pull. It is what
lets a tag deploy while its registry is down, from blobs already in the
content-addressed store. The blobs stay the source of truth: an entry whose
blobs are gone or corrupt is useless, never trusted blindly.

Updates are read-modify-write under an exclusive ``flock`` and land by
rename, so concurrent pulls do not lose each other's entries and a crash
leaves either the old or the new file, never half of one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._files import atomic_write

__all__ = ["TagEntry", "TagIndex"]

log = logging.getLogger("wasmlet.registry")


@dataclasses.dataclass(frozen=True)
class TagEntry:
    manifest: str  # "sha256:<hex>"
    module: str  # "sha256:<hex>"
    pulled: str  # RFC 3339 UTC


class TagIndex:
    def __init__(self, cache_root: Path) -> None:
        self.dir = cache_root / "oci"
        self.path = self.dir / "tags.json"

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # The index is a cache of what the registry said; losing it costs
            # only offline deploys of tags, so a broken one is set aside, not fatal.
            log.warning("ignoring unreadable tag index %s: %s", self.path, exc)
            return {}
        tags = data.get("tags") if isinstance(data, dict) else None
        return tags if isinstance(tags, dict) else {}

    def get(self, key: str) -> TagEntry | None:
        raw = self._load().get(key)
        if not isinstance(raw, dict):
            return None
        try:
            return TagEntry(str(raw["manifest"]), str(raw["module"]), str(raw.get("pulled", "")))
        except KeyError:
            return None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "tags.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def record(self, key: str, manifest: str, module: str) -> None:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._locked():
            tags = self._load()
            tags[key] = {"manifest": manifest, "module": module, "pulled": now}
            text = json.dumps({"version": 1, "tags": dict(sorted(tags.items()))}, indent=1)
            atomic_write(self.path, (text + "\n").encode())
