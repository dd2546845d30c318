"""``ComponentSpec``: one deployable component, as every part of wasmlet sees it.

The manifest schema (``_manifest``) is what a user writes; a spec is what the
loader makes of it once valid: plain, typed and immutable. The same value is
stored by the control plane (SQLite) and handed to workers in the plan, both
through ``SPEC_CODEC``, so there is one serialisation and it cannot drift.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ConfigDict, TypeAdapter, model_validator
from pydantic.dataclasses import dataclass

from ._capabilities import Capabilities
from ._limits import Concurrency, RateLimit
from ._scheduling import Placement

__all__ = ["SPEC_CODEC", "ComponentSpec"]


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class ComponentSpec:
    """One deployable component: what the manifest said, after validation and defaults."""

    app: str
    name: str
    module_url: str
    module_digest: str | None
    memory_limit: int
    environment: tuple[tuple[str, str], ...]
    route: str | None
    host: str | None
    timeout: float
    entrypoint: str
    argv: str
    max_body_size: int
    max_response_size: int
    source: str  # the manifest file (or "<string>") this came from
    base_dir: str  # where relative moduleURLs and files sources are resolved from
    capabilities: Capabilities = Capabilities()
    rate_limit: RateLimit = RateLimit()
    concurrency: Concurrency = Concurrency()
    placement: Placement = Placement()  # from the traits; the default (one replica, anywhere) for older specs

    @property
    def qualified_name(self) -> str:
        return f"{self.app}/{self.name}"

    def to_json(self) -> str:
        """The stored form; ``ComponentSpec.from_json`` reads it back (and the pre-0.2 form)."""
        return SPEC_CODEC.dump_json(self, by_alias=True).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> ComponentSpec:
        return SPEC_CODEC.validate_json(text)

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        """Read specs stored before 0.2: capabilities as a JSON string, the rate limit as a
        4-tuple, concurrency as two flat fields. A state written then must still load."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if isinstance(data.get("capabilities"), str):
            data["capabilities"] = json.loads(data["capabilities"])
        limit = data.get("rate_limit")
        if isinstance(limit, (list, tuple)):
            keys = ("perClient", "perClientBurst", "perApp", "perAppBurst")
            data["rate_limit"] = dict(zip(keys, limit, strict=True))
        if "max_concurrency" in data or "max_queue" in data:
            data["concurrency"] = {"max": data.pop("max_concurrency", 0), "queue": data.pop("max_queue", 256)}
        return data


#: The one codec of a spec: JSON in SQLite (``spec_json``) and in the plan file.
SPEC_CODEC: TypeAdapter[ComponentSpec] = TypeAdapter(ComponentSpec)
