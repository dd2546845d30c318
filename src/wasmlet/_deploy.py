"""Deploy: manifests -> fetched, verified, compiled modules -> a ``Plan``.

Everything that can fail on bad input happens here, before a server starts:
manifest validation, route conflicts, fetching and digest checks, compilation
and link checks. Worker processes then load the plan's precompiled
artifacts from the cache, so they never compile on the request path.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._errors import ModuleError
from .engine import EngineSettings, ModuleCache, build_engine, default_cache_dir, is_component
from .guest import Linkers, build_handler
from .manifest import ComponentSpec, assign_routes, load_manifest
from .registry import BlobStore, fetch_module
from .security import TrustStore, module_subject, verify_module
from .telemetry import observe_cache

__all__ = ["Plan", "PlannedComponent", "build_plan", "plan_for_module"]

log = logging.getLogger("wasmlet.deploy")


@dataclasses.dataclass(frozen=True)
class PlannedComponent:
    spec: ComponentSpec
    digest: str  # sha256 hex of the module bytes; what is recorded and reported
    component: bool = False  # a component-model binary (wasi:cli), not a core module (WAGI)


@dataclasses.dataclass(frozen=True)
class Plan:
    components: tuple[PlannedComponent, ...]
    engine: EngineSettings
    cache_dir: str

    def to_json(self) -> str:
        return json.dumps({
            "engine": dataclasses.asdict(self.engine),
            "cache_dir": self.cache_dir,
            "components": [
                {"spec": dataclasses.asdict(c.spec), "digest": c.digest, "component": c.component}
                for c in self.components
            ],
        })

    @classmethod
    def from_json(cls, text: str) -> Plan:
        raw: dict[str, Any] = json.loads(text)
        components = []
        for item in raw["components"]:
            spec = dict(item["spec"])
            spec["environment"] = tuple(tuple(pair) for pair in spec["environment"])
            spec["rate_limit"] = tuple(spec.get("rate_limit", (0, 0, 0, 0)))
            components.append(PlannedComponent(ComponentSpec(**spec), item["digest"], item.get("component", False)))
        return cls(tuple(components), EngineSettings(**raw["engine"]), raw["cache_dir"])


def _prepare(
    specs: Sequence[ComponentSpec], settings: EngineSettings, cache_dir: Path, trust: TrustStore | None = None
) -> tuple[PlannedComponent, ...]:
    engine = build_engine(dataclasses.replace(settings, pool_instances=4))
    cache = ModuleCache(engine, settings, cache_dir, observer=observe_cache)
    blobs = BlobStore(cache_dir)
    linkers = Linkers(engine)
    planned = []
    for spec in specs:
        where = f"{spec.source}: component {spec.qualified_name}"
        fetched = fetch_module(spec, blobs)
        if trust is not None:  # requireSignatures: the module must carry a valid chain to a trust root
            trust.reload_if_changed()
            verified = verify_module(fetched.data, trust, module_subject(spec.module_url, spec.qualified_name))
            log.info("%s: signature verified (publisher key %s, root %s)", where, verified.key_id, verified.root_id)
        digest, _ = cache.compile(fetched.data, where)
        component = is_component(fetched.data)
        compiled = cache.load(digest, fetched.data, where, component=component)
        if spec.memory_limit > settings.pool_max_memory:
            raise ModuleError(
                f"{where}: memoryLimit {spec.memory_limit} exceeds the host's pool_max_memory "
                f"{settings.pool_max_memory}"
            )
        build_handler(spec, compiled, linkers, name=where)  # every check a worker will make, made now
        log.info("deployed %s route=%s digest=sha256:%s%s", spec.qualified_name, spec.route, digest,
                 " (wasi:cli component)" if component else "")
        planned.append(PlannedComponent(spec, digest, component))
    return tuple(planned)


def build_plan(
    manifests: Sequence[str | Path],
    settings: EngineSettings | None = None,
    cache_dir: str | Path | None = None,
    trust: TrustStore | None = None,
) -> Plan:
    """Validate every manifest and prepare every module; raise on the first problem.

    With ``trust``, every module must be signed by a publisher key that one of
    its roots certified for it (``docs/security.md``).
    """
    settings = settings or EngineSettings()
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    specs: list[ComponentSpec] = []
    for path in manifests:
        specs.extend(load_manifest(path))
    specs = assign_routes(specs)
    return Plan(_prepare(specs, settings, root, trust), settings, str(root))


def plan_for_module(
    module_path: str | Path,
    settings: EngineSettings | None = None,
    cache_dir: str | Path | None = None,
    **properties: Any,
) -> Plan:
    """A one-component plan for a bare module (``wasmlet run``)."""
    from .manifest import parse_manifest

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
    return Plan(_prepare(specs, settings, root), settings, str(root))
