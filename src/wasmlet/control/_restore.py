"""Checking what the state holds before a host serves it again (issue 14, items 5 and 6).

At start, every version an app serves or keeps warm (stable, canary,
previous) is checked before any worker sees it:

- its stored spec loads (a malformed ``spec_json`` row is named, not a traceback);
- its module bytes are in the state's durable blob store; a state written
  before that store existed is filled from the cache's blob store, or from
  the local file the version was deployed from if it still has the recorded
  digest (read under the file policy's fixed rules);
- its ``files`` mounts are still directories the policy's fixed rules allow;
- under ``serve --trust``, its signature holds *now* (a version deployed
  without ``--trust`` is not served unsigned after a restart with it).

A version that fails is *failed* (cannot be served: 503 ``unavailable``, or
not routed at all if even its spec is unreadable) or *blocked* (its
signature does not hold: 503 ``revoked``), each with the reason, and every
other app is served as usual.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterable, Iterator

from .._errors import SignatureError, WasmletError
from ..engine import BlobStore
from ..plan import ComponentSpec
from ..registry import local_module_path, read_module_file
from ..signing import TrustStore, module_subject, verify_module
from ._grants import FilePolicy
from ._state import AppState, Version

__all__ = ["Verdicts", "check_restored", "live_versions", "load_spec", "verify_signatures"]

log = logging.getLogger("wasmlet.control")

_SHOWN = 300  # characters of a reason kept in a message


def _short(text: object) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _SHOWN else line[:_SHOWN] + "..."


def load_spec(version: Version) -> ComponentSpec | str:
    """The version's spec, or why its stored ``spec_json`` does not load."""
    try:
        return ComponentSpec.from_json(version.spec_json)
    except Exception as exc:  # pydantic, JSON and legacy-form errors alike: a broken row is named, not raised
        return f"its stored spec_json does not load ({type(exc).__name__}: {_short(exc)})"


def live_versions(app: AppState) -> Iterator[Version]:
    """The versions of ``app`` a worker serves or keeps warm."""
    for version in (app.stable, app.canary, app.previous):
        if version is not None:
            yield version


@dataclasses.dataclass
class Verdicts:
    failed: dict[int, str] = dataclasses.field(default_factory=dict)  # version id -> why it cannot be served
    blocked: dict[int, str] = dataclasses.field(default_factory=dict)  # version id -> why its signature fails
    problems: list[str] = dataclasses.field(default_factory=list)  # one line each, for the operator


def _bytes(version: Version, spec: ComponentSpec, durable: BlobStore, cache: BlobStore,
           files: FilePolicy) -> bytes | str:
    """The version's module bytes from the durable store (filled if needed), or why there are none."""
    digest = version.digest
    try:
        return durable.get(digest)
    except WasmletError as exc:
        missing = str(exc)
    if cache.has(digest):  # a state from before the durable store: its bytes are in the cache
        try:
            data = cache.get(digest)
            durable.put(data, digest)
            return data
        except (WasmletError, OSError) as exc:
            missing += f"; the cache's copy: {exc}"
    path = local_module_path(spec)
    if path is not None:
        try:
            data = read_module_file(path, guard=lambda real: files.check_module(spec, real, operator=True))
            if hashlib.sha256(data).hexdigest() != digest:
                return f"{missing}; {path} no longer has those bytes: deploy it again"
            durable.put(data, digest)
            return data
        except (WasmletError, OSError) as exc:
            missing += f"; {exc}"
    return f"its module bytes are missing: {missing}"


def check_restored(apps: Iterable[AppState], durable: BlobStore, cache: BlobStore, trust: TrustStore | None,
                   files: FilePolicy) -> Verdicts:
    """Check every live version of ``apps``; see the module docstring."""
    verdicts = Verdicts()
    fixed = dataclasses.replace(files, allowed=())  # only the rules that hold for everyone
    for app in apps:
        for version in live_versions(app):
            spec = load_spec(version)
            if isinstance(spec, str):
                verdicts.failed[version.id] = spec
                continue
            data = _bytes(version, spec, durable, cache, fixed)
            if isinstance(data, str):
                verdicts.failed[version.id] = data
                continue
            try:
                fixed.check([spec], operator=True)
            except WasmletError as exc:
                verdicts.failed[version.id] = str(exc)
                continue
            if trust is not None:
                try:
                    verify_module(data, trust, module_subject(spec.module_url, app.app))
                except SignatureError as exc:
                    verdicts.blocked[version.id] = f"{exc.reason}: {exc}"
        for version in live_versions(app):
            reason = verdicts.failed.get(version.id) or verdicts.blocked.get(version.id)
            if reason is not None:
                role = "stable" if version is app.stable else "canary" if version is app.canary else "previous"
                kind = "refused by --trust" if version.id in verdicts.blocked else "cannot be served"
                verdicts.problems.append(f"app {app.app} version {version.number} ({role}) {kind}: {_short(reason)}")
    return verdicts


def verify_signatures(apps: Iterable[AppState], durable: BlobStore, trust: TrustStore,
                      skip: Iterable[int] = ()) -> dict[int, str]:
    """Version id -> why its signature does not hold under ``trust``, for every live version not in ``skip``."""
    skipped = set(skip)
    blocked: dict[int, str] = {}
    for app in apps:
        for version in live_versions(app):
            if version.id in skipped:
                continue
            spec = load_spec(version)
            if isinstance(spec, str):
                continue
            try:
                verify_module(durable.get(version.digest), trust, module_subject(spec.module_url, app.app))
            except SignatureError as exc:
                blocked[version.id] = f"{exc.reason}: {exc}"
                log.warning("app=%s version %d: signature no longer valid: %s", app.app, version.number, exc)
            except WasmletError as exc:  # bytes gone since the start: the worker reports it too
                log.warning("app=%s version %d: cannot re-check its signature: %s", app.app, version.number, exc)
    return blocked


def prune(apps: Iterable[AppState], durable: BlobStore) -> int:
    """Remove durable blobs no live version needs; return how many."""
    needed = {version.digest for app in apps for version in live_versions(app)}
    unused = durable.digests() - needed
    for digest in unused:
        durable.remove(digest)
    return len(unused)
