"""What the admin API answers with: pydantic models, the one source of its OpenAPI schemas.

``ControlPlane`` builds these; the admin API serialises them; ``/openapi.json``
is generated from them (FastAPI), so the document cannot drift from the wire.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AppView",
    "CanaryView",
    "DeployReport",
    "DeployResultView",
    "ErrorBody",
    "LogEntry",
    "Role",
    "VersionRef",
    "VersionView",
]

Role = Literal["stable", "previous", "canary", "retired"]

_NAME = Field(description="`app/component`.", examples=["image-processor/resizer"])


class ErrorBody(BaseModel):
    error: str = Field(description="What went wrong, for a person to read.")


class VersionRef(BaseModel):
    version: int = Field(ge=1, description="The app's version number: 1, 2, 3... per app, never reused.")
    digest: str = Field(description="`sha256:` and the hex digest of the module bytes.")


class CanaryView(VersionRef):
    weight: int = Field(ge=0, le=100, description="Percentage of requests sent to the canary.")
    header: str | None = Field(description="`Name: value`: requests carrying it always go to the canary.",
                               examples=["X-Canary: 1"])


class AppView(BaseModel):
    """One deployed component and what it serves."""

    model_config = ConfigDict(title="App")

    name: str = _NAME
    route: str | None = Field(description="Path prefix.", examples=["/resize"])
    host: str | None = Field(description="Host the route is limited to, if any.")
    version: int = Field(ge=1, description="The stable version's id.")
    digest: str = Field(description="`sha256:` and the stable module's hex digest.")
    module: str = Field(description="The stable version's `moduleURL`.")
    state: Literal["serving", "degraded", "revoked", "failed"] = Field(
        description="`degraded`: the watchdog saw it slow; `revoked`: its signature no longer holds (503); "
                    "`failed`: the host cannot serve it (its stored spec or module bytes are unusable; 503).")
    previous: VersionRef | None = Field(description="The version `rollback` would return to.")
    canary: CanaryView | None = Field(description="A version receiving part of the traffic, if any.")
    updated: float = Field(description="When the app last changed (Unix time, seconds).")


class DeployResultView(BaseModel):
    """What a deploy did to one component of the manifest."""

    model_config = ConfigDict(title="DeployResult")

    app: str = _NAME
    version: int = Field(ge=1, description="The stable (or canary) version now.")
    changed: bool = Field(description="False if the component was already serving this.")


class DeployReport(BaseModel):
    """The answer to a deploy, sent once it is durable and served."""

    model_config = ConfigDict(title="Deploy")

    generation: int = Field(ge=0, description="The state's generation after it.")
    results: list[DeployResultView]


class VersionView(VersionRef):
    """One version of an app, as the history keeps it (deleted apps included)."""

    module: str = Field(description="The version's `moduleURL`.")
    created: float = Field(description="When it was recorded (Unix time, seconds).")
    role: Role = Field(
        description="What it is to the app now; `retired` once neither serving nor kept for a rollback.")


class LogEntry(BaseModel):
    """One line the app wrote to stderr (or the host logged about it)."""

    time: str | None = Field(description="When (ISO 8601, UTC), as the worker's log wrote it.")
    level: str | None = Field(default=None, examples=["warning"])
    message: str | None
    request_id: str | None = None
