"""Prepare: validated specs -> fetched, verified, compiled, link-checked components.

Everything that can fail on bad input happens here, before anything is
recorded or served: fetching and digest checks, the signature chain,
compilation into the precompiled cache, and a trial link of every handler
(the checks a worker will make). Worker processes then load the plan's
precompiled artifacts from the cache, so they never compile on the request path.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import ModuleError, SignatureError, StateError
from ..engine import BlobStore, ModuleCache, build_engine, default_cache_dir, is_component
from ..guest import Linkers, build_handler
from ..plan import ComponentSpec, EngineSettings, Plan, PlannedComponent, assign_routes, parse_manifest
from ..registry import fetch_module
from ..signing import TrustStore, module_subject, verify_module
from ..telemetry import observe_cache

if TYPE_CHECKING:
    from ..guest import Extension

__all__ = ["plan_for_module", "prepare"]

log = logging.getLogger("wasmlet.deploy")


def _check_only_extensions() -> list[Extension]:
    """Spin's interfaces to link a ``wasi:http`` component against at deploy: no store behind them."""
    from ..guest import spin_extension

    return [spin_extension(None)]


def prepare(
    specs: Sequence[ComponentSpec], settings: EngineSettings, cache_dir: Path, trust: TrustStore | None = None,
    *, keep: BlobStore | None = None, guard: Callable[[ComponentSpec, Path], None] | None = None,
) -> tuple[PlannedComponent, ...]:
    """Fetch, verify, compile and check every component; nothing is served or recorded here.

    ``keep``: once every component passed, their module bytes are stored there (the
    state's durable blobs). ``guard``: the file policy, shown each local module file opened.
    """
    # 32: room for one trial instantiation of any component (a componentize-py one is 14 core
    # instances, a Spin SDK one more; guest._proxy).
    engine = build_engine(dataclasses.replace(settings, pool_instances=32))
    cache = ModuleCache(engine, settings, cache_dir, observer=observe_cache)
    blobs = BlobStore(cache_dir)
    linkers = Linkers(engine, extensions=_check_only_extensions)
    planned: list[PlannedComponent] = []
    passed: list[bytes] = []
    for spec in specs:
        where = f"{spec.source}: component {spec.qualified_name}"
        fetched = fetch_module(spec, blobs, guard)
        if trust is not None:  # requireSignatures: the module must carry a valid chain to a trust root
            trust.reload_if_changed()
            try:
                verified = verify_module(fetched.data, trust, module_subject(spec.module_url, spec.qualified_name))
            except SignatureError as exc:  # same class (its reason is the contract), named where it failed
                raise type(exc)(f"{where}: signature refused ({exc.reason}): {exc}") from exc
            log.info("%s: signature verified (publisher key %s, root %s)", where, verified.key_id, verified.root_id)
        digest, _ = cache.compile(fetched.data, where)
        component = is_component(fetched.data)
        compiled = cache.load(digest, fetched.data, where, component=component)
        if spec.memory_limit > settings.pool_max_memory:
            raise ModuleError(
                f"{where}: memoryLimit {spec.memory_limit} exceeds the host's pool_max_memory "
                f"{settings.pool_max_memory}"
            )
        handler = build_handler(spec, compiled, linkers, name=where)  # every check a worker will make, made now
        log.info("deployed %s route=%s digest=sha256:%s (%s)", spec.qualified_name, spec.route, digest,
                 handler.abi)
        planned.append(PlannedComponent(spec, digest, component, version=len(planned) + 1))
        passed.append(fetched.data)
    if keep is not None:  # only bytes that compiled and linked are kept
        try:
            for data in passed:
                keep.put(data)
        except OSError as exc:
            raise StateError(f"cannot keep module bytes in {keep.root}: {exc.strerror or exc}") from exc
    return tuple(planned)


def plan_for_module(
    module_path: str | Path,
    settings: EngineSettings | None = None,
    cache_dir: str | Path | None = None,
    **properties: Any,
) -> Plan:
    """A one-component plan for a bare module (``wasmlet run``)."""
    props = {"moduleURL": str(Path(module_path).resolve()), **properties}
    manifest = {
        "apiVersion": "core.oam.dev/v1beta1",
        "kind": "Application",
        "metadata": {"name": "run"},
        "spec": {"components": [{"name": "module", "type": "wasm", "properties": props}]},
    }
    specs = assign_routes(parse_manifest(json.dumps(manifest), source=str(module_path)))
    settings = settings or EngineSettings()
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    return Plan(prepare(specs, settings, root), settings, str(root))
