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
from .security import SignatureError, TrustStore, module_subject, verify_module
from .telemetry import observe_cache

__all__ = ["Plan", "PlannedComponent", "Slot", "build_plan", "plan_for_module", "prepare", "spec_from_dict"]

log = logging.getLogger("wasmlet.deploy")


@dataclasses.dataclass(frozen=True)
class PlannedComponent:
    """One version of one component, ready in the cache."""

    spec: ComponentSpec
    digest: str  # sha256 hex of the module bytes; what is recorded and reported
    component: bool = False  # a component-model binary (wasi:cli), not a core module (WAGI)
    version: int = 0  # the control plane's version id (0 outside it)


@dataclasses.dataclass(frozen=True)
class Slot:
    """What one app serves: its stable version, and a canary taking some of the traffic."""

    app: str  # app/component
    stable: int  # version ids, as in PlannedComponent.version
    canary: int | None = None
    weight: int = 0  # percent of requests the canary answers
    header: tuple[str, str] | None = None  # requests with this header (name, value) go to the canary
    blocked: str = ""  # why the app is refused (a signature revoked after deploy), or ""


@dataclasses.dataclass(frozen=True)
class Plan:
    """Every version a worker must hold warm, and how traffic is split among them.

    ``generation`` increases with every change the control plane makes; a worker
    applies a plan only if it is newer than the one it serves.
    """

    components: tuple[PlannedComponent, ...]
    engine: EngineSettings
    cache_dir: str
    slots: tuple[Slot, ...] = ()
    generation: int = 0

    def live_slots(self) -> tuple[Slot, ...]:
        """The slots; a plan without any (built from manifests alone) serves each component as stable."""
        if self.slots:
            return self.slots
        return tuple(Slot(c.spec.qualified_name, c.version) for c in self.components)

    def to_json(self) -> str:
        return json.dumps({
            "generation": self.generation,
            "engine": dataclasses.asdict(self.engine),
            "cache_dir": self.cache_dir,
            "components": [
                {"spec": dataclasses.asdict(c.spec), "digest": c.digest, "component": c.component,
                 "version": c.version}
                for c in self.components
            ],
            "slots": [dataclasses.asdict(s) for s in self.slots],
        })

    @classmethod
    def from_json(cls, text: str) -> Plan:
        raw: dict[str, Any] = json.loads(text)
        components = tuple(
            PlannedComponent(spec_from_dict(item["spec"]), item["digest"], item.get("component", False),
                             item.get("version", 0))
            for item in raw["components"]
        )
        slots = tuple(
            Slot(s["app"], s["stable"], s.get("canary"), s.get("weight", 0),
                 (s["header"][0], s["header"][1]) if s.get("header") else None, s.get("blocked", ""))
            for s in raw.get("slots", ())
        )
        return cls(components, EngineSettings(**raw["engine"]), raw["cache_dir"], slots, raw.get("generation", 0))


def spec_from_dict(raw: dict[str, Any]) -> ComponentSpec:
    """The inverse of ``dataclasses.asdict`` for a ``ComponentSpec`` (JSON turns tuples into lists)."""
    spec = dict(raw)
    spec["environment"] = tuple(tuple(pair) for pair in spec["environment"])
    spec["rate_limit"] = tuple(spec.get("rate_limit", (0, 0, 0, 0)))
    return ComponentSpec(**spec)


def prepare(
    specs: Sequence[ComponentSpec], settings: EngineSettings, cache_dir: Path, trust: TrustStore | None = None
) -> tuple[PlannedComponent, ...]:
    """Fetch, verify, compile and check every component; nothing is served or recorded here."""
    engine = build_engine(dataclasses.replace(settings, pool_instances=4))
    cache = ModuleCache(engine, settings, cache_dir, observer=observe_cache)
    blobs = BlobStore(cache_dir)
    linkers = Linkers(engine)
    planned: list[PlannedComponent] = []
    for spec in specs:
        where = f"{spec.source}: component {spec.qualified_name}"
        fetched = fetch_module(spec, blobs)
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
        build_handler(spec, compiled, linkers, name=where)  # every check a worker will make, made now
        log.info("deployed %s route=%s digest=sha256:%s%s", spec.qualified_name, spec.route, digest,
                 " (wasi:cli component)" if component else "")
        planned.append(PlannedComponent(spec, digest, component, version=len(planned) + 1))
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
    return Plan(prepare(specs, settings, root, trust), settings, str(root))


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
    return Plan(prepare(specs, settings, root), settings, str(root))
