"""An app's admission limits, as its manifest states them and its spec keeps them.

Apart from ``_manifest`` because a worker needs these two and not the rest of the
manifest's schema (which it would build at import, with the traits' models).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Concurrency", "RateLimit"]

# A rate or burst past this is no limit at all; above it, 2 * rate overflows to inf (YAML has .inf too).
_MAX_RATE = 1e9


class RateLimit(BaseModel):
    """Token buckets (requests per second, burst) per client address and for the whole app; 0 is unlimited."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    per_client: float = Field(default=0, ge=0, le=_MAX_RATE, alias="perClient")
    per_client_burst: float = Field(default=0, ge=0, le=_MAX_RATE, alias="perClientBurst")  # 0: twice the rate
    per_app: float = Field(default=0, ge=0, le=_MAX_RATE, alias="perApp")
    per_app_burst: float = Field(default=0, ge=0, le=_MAX_RATE, alias="perAppBurst")


class Concurrency(BaseModel):
    """Guest instances of this app running at once in one worker, and requests allowed to wait for one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max: int = Field(default=0, ge=0)  # 0: three quarters of the worker's guest threads
    queue: int = Field(default=256, ge=0)
