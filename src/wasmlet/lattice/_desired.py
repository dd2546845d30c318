"""The desired state of a lattice as one JSON document, and its checks: pure, no I/O.

What ``StateStore`` keeps in SQLite, a lattice keeps in the JetStream
key-value bucket ``PREFIX-desired``:

- key ``desired``: one ``DesiredState`` document: the generation, every app's
  stable/previous/canary version ids and canary weight and header, every
  version's app, per-app number, digest and kind (not its spec), the drained
  hosts and the ``PriorityClass``es. Being one key, a change of several apps
  (a manifest of many components) is one atomic, revision-checked write;
- keys ``version.<hex>``: one ``VersionRecord`` per version, the spec itself,
  written once before the document that names it. A version's id is the
  stream sequence JetStream gave its record, so ids are unique and increasing
  across the lattice without any counter to contend on.

Anything read from the bucket is checked here before it is used: any lattice
member can write the bucket, so a document that is not JSON, does not
validate, names versions it does not have, or was written by a newer format
is refused with the reason, and the last valid one stays in force.
"""

from __future__ import annotations

import json
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, model_validator

from ..plan import PriorityClass

__all__ = [
    "DESIRED_KEY",
    "FORMAT",
    "KEEP_RETIRED",
    "AppEntry",
    "DesiredState",
    "InvalidDocument",
    "VersionEntry",
    "VersionRecord",
    "decode_desired",
    "decode_record",
    "encode",
    "record_key",
]

DESIRED_KEY = "desired"
FORMAT: Literal[1] = 1
KEEP_RETIRED = 10  # versions per app kept for `wasmlet history` beyond those it serves or keeps warm
_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_APP = re.compile(rf"^{_LABEL}/{_LABEL}$")
_HOST = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_RECORD_KEY = re.compile(r"^version\.[0-9a-f]{32}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")


class InvalidDocument(ValueError):
    """What the bucket holds does not validate; the message says where and why."""


def record_key(nonce: str) -> str:
    return f"version.{nonce}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VersionEntry(_Strict):
    app: str = Field(pattern=_APP.pattern)
    number: StrictInt = Field(ge=1)
    key: str = Field(pattern=_RECORD_KEY.pattern)  # where its VersionRecord is
    digest: str = Field(pattern=_HEX.pattern)
    component: StrictBool
    created: float


class AppEntry(_Strict):
    stable: StrictInt
    previous: StrictInt | None = None
    canary: StrictInt | None = None
    canary_weight: StrictInt = Field(default=0, ge=0, le=100)
    canary_header: str | None = Field(default=None, max_length=8192)
    updated: float = 0.0


class VersionRecord(_Strict):
    app: str = Field(pattern=_APP.pattern)
    spec_json: str = Field(max_length=256 * 1024)
    digest: str = Field(pattern=_HEX.pattern)
    component: StrictBool
    created: float

    @model_validator(mode="after")
    def _spec_is_an_object(self) -> VersionRecord:
        try:
            value = json.loads(self.spec_json)
        except ValueError as exc:
            raise ValueError(f"spec_json is not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise ValueError("spec_json is not a JSON object")
        return self


class DesiredState(_Strict):
    """Everything a lattice should serve; see the module docstring."""

    format: Literal[1] = FORMAT
    generation: StrictInt = Field(default=0, ge=0)
    apps: dict[str, AppEntry] = Field(default_factory=dict)
    versions: dict[int, VersionEntry] = Field(default_factory=dict)
    drained: list[str] = Field(default_factory=list)  # hosts nothing is placed on (`wasmlet lattice drain`)
    priority_classes: dict[str, PriorityClass] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> DesiredState:
        for name, entry in self.apps.items():
            if not _APP.match(name):
                raise ValueError(f"apps: {name[:100]!r} is not an APP/COMPONENT name")
            for role in ("stable", "previous", "canary"):
                vid = getattr(entry, role)
                if vid is None:
                    continue
                version = self.versions.get(vid)
                if version is None:
                    raise ValueError(f"apps.{name}.{role}: version {vid} is not in versions")
                if version.app != name:
                    raise ValueError(f"apps.{name}.{role}: version {vid} belongs to {version.app}")
        for host in self.drained:
            if len(host) > 253 or not _HOST.match(host):
                raise ValueError(f"drained: {host[:100]!r} is not a host name (an RFC 1123 subdomain)")
        for name, cls in self.priority_classes.items():
            if cls.name != name:
                raise ValueError(f"priority_classes.{name}: the class is named {cls.name!r}")
        return self


def encode(value: BaseModel) -> bytes:
    return value.model_dump_json().encode()


def _problems(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "(document)"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def decode_desired(data: bytes) -> DesiredState:
    """The document in ``data``; ``InvalidDocument`` naming the first problems if it is not a valid one."""
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise InvalidDocument(f"not JSON ({exc})") from exc
    if isinstance(raw, dict) and isinstance(raw.get("format"), int) and raw["format"] > FORMAT:
        raise InvalidDocument(f"format {raw['format']} was written by a newer wasmlet (this one reads {FORMAT})")
    try:
        return DesiredState.model_validate(raw)
    except ValidationError as exc:
        raise InvalidDocument(_problems(exc)) from exc


def decode_record(data: bytes) -> VersionRecord:
    try:
        return VersionRecord.model_validate_json(data)
    except ValidationError as exc:
        raise InvalidDocument(_problems(exc)) from exc
