"""The OAM ``Application`` manifest as wasmlet reads it.

The schema follows OAM ``core.oam.dev/v1beta1`` (the seed's section 3): an
``Application`` whose ``spec.components`` have ``type: wasm`` and
``properties`` with ``moduleURL``, ``memoryLimit`` and ``environment``.
wasmlet adds the few properties one host needs (route, host, timeout, WAGI
``argv`` and ``entrypoint``, size caps). Unknown *properties* are refused so a
typo such as ``memorylimit`` is reported instead of silently ignored. So is
what KubeVela would act on and wasmlet would not: a component's ``traits``
other than the placement traits of ``_traits`` (``scaler``, ``affinity``,
``topologyspreadconstraints``, ``priority``: a trait that does nothing is
worse than an error), the application's ``policies`` and ``workflow``. Each
is refused with its type and field path; ``SUPPORTED_TRAITS`` and
``SUPPORTED_POLICIES`` (none yet) list what is implemented. A supported
trait's ``properties`` are validated like a component's, unknown ones refused.
Other OAM fields (labels, annotations, ``dependsOn``) are accepted.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ._capabilities import Capabilities
from ._limits import Concurrency, RateLimit
from ._quantity import parse_duration, parse_quantity
from ._traits import SUPPORTED_TRAITS, TRAIT_PROPERTIES

__all__ = [
    "SUPPORTED_POLICIES",
    "SUPPORTED_TRAITS",
    "Application",
    "Component",
    "EnvVar",
    "Policy",
    "Trait",
    "WasmProperties",
]

# RFC 1123 label, as Kubernetes requires of object names.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL = r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(\*\.)?({_LABEL}\.)*{_LABEL}(:[0-9]{{1,5}})?$")

DEFAULT_MEMORY_LIMIT = "128Mi"
DEFAULT_TIMEOUT = "10s"
DEFAULT_MAX_BODY = "10Mi"
DEFAULT_MAX_RESPONSE = "10Mi"
DEFAULT_ARGV = "${SCRIPT_NAME} ${ARGS}"

# KubeVela policy types wasmlet implements (SUPPORTED_TRAITS, the trait types, comes from _traits).
SUPPORTED_POLICIES: tuple[str, ...] = ()


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        raise ValueError("expected a lower-case RFC 1123 name (a-z, 0-9 and '-', at most 63 characters)")
    return value


class EnvVar(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    value: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _ENV_NAME.fullmatch(value):
            raise ValueError("expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
        return value

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, value: Any) -> Any:
        # YAML turns `value: 85` into an int; Kubernetes insists on strings.
        if not isinstance(value, str):
            raise ValueError('expected a string; quote numbers, as in value: "85"')
        return value


class WasmProperties(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    # Bounded like the other values errors quote: a URL or path past 8 KiB is no module's (RFC 9110 section 4.1
    # asks for 8000 octets at least; PATH_MAX is 4096).
    module_url: str = Field(alias="moduleURL", min_length=1, max_length=8192)
    module_digest: str | None = Field(default=None, alias="moduleDigest")
    memory_limit: int = Field(default=parse_quantity(DEFAULT_MEMORY_LIMIT), alias="memoryLimit")
    environment: list[EnvVar] = Field(default_factory=list)
    route: str | None = None
    host: str | None = None
    timeout: float = Field(default=parse_duration(DEFAULT_TIMEOUT))
    entrypoint: str = "_start"
    argv: str = DEFAULT_ARGV
    max_body_size: int = Field(default=parse_quantity(DEFAULT_MAX_BODY), alias="maxBodySize")
    max_response_size: int = Field(default=parse_quantity(DEFAULT_MAX_RESPONSE), alias="maxResponseSize")
    capabilities: Capabilities = Field(default_factory=Capabilities)
    rate_limit: RateLimit = Field(default_factory=RateLimit, alias="rateLimit")
    concurrency: Concurrency = Field(default_factory=Concurrency)

    @field_validator("memory_limit", "max_body_size", "max_response_size", mode="before")
    @classmethod
    def _quantity(cls, value: Any) -> int:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError("expected a quantity such as 128Mi")
        number = parse_quantity(value)
        if number <= 0:
            raise ValueError("expected a quantity greater than zero")
        return number

    @field_validator("memory_limit")
    @classmethod
    def _memory_pages(cls, value: int) -> int:
        # Wasm memory grows in 64 KiB pages (core spec, section 2.5.7); a limit
        # under one page cannot host any module with a memory.
        if value < 65536:
            raise ValueError("expected at least 64Ki (one WebAssembly page)")
        return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> float:
        if not isinstance(value, (str, int, float)):
            raise ValueError("expected a duration such as 500ms, 30s or 2m")
        return parse_duration(value)

    @field_validator("module_digest")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        if value is not None and not _DIGEST.fullmatch(value):
            raise ValueError("expected sha256:<64 lower-case hex digits>")
        return value

    @field_validator("route")
    @classmethod
    def _route(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value) > 2048:
            raise ValueError("expected a path prefix of at most 2048 characters")
        if not value.startswith("/") or "?" in value or "#" in value:
            raise ValueError("expected a path prefix starting with '/', such as /api")
        if "/../" in value + "/" or "/./" in value + "/" or "//" in value:
            raise ValueError("expected a normalised path (no '.', '..' or empty segments)")
        return value.rstrip("/") or "/"

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        # RFC 1035 section 2.3.4: 253 characters of name, then ':' and a port.
        if value is not None and (len(value) > 253 + 6 or not _HOSTNAME.fullmatch(value)):
            raise ValueError("expected a host name such as api.example.com or *.example.com")
        return value.lower() if value else value

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint(cls, value: str) -> str:
        if not value:
            raise ValueError("expected the name of an exported function")
        return value


def _unsupported(kind: str, value: str, supported: tuple[str, ...]) -> ValueError:
    known = ", ".join(supported) if supported else "none yet"
    plural = {"trait": "traits", "policy": "policies"}[kind]
    return ValueError(
        f"{kind} type {value!r} is not supported by wasmlet (supported {plural}: {known}); "
        "remove it, or deploy this Application with KubeVela"
    )


class Trait(BaseModel):
    """A KubeVela trait (``spec.components[].traits[]``): refused unless its type is in ``SUPPORTED_TRAITS``.

    Once valid, ``properties`` holds the trait's typed properties (``_traits.TRAIT_PROPERTIES``).
    """

    model_config = ConfigDict(extra="forbid")

    type: str
    properties: Any = Field(default=None, validate_default=True)

    @field_validator("type")
    @classmethod
    def _supported(cls, value: str) -> str:
        if value not in SUPPORTED_TRAITS:
            raise _unsupported("trait", value, SUPPORTED_TRAITS)
        return value

    @field_validator("properties")
    @classmethod
    def _properties(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("type")
        if kind is None:
            return value  # the type is refused already; its properties mean nothing
        # A ValidationError raised here is reported at traits[i].properties.<field>.
        return TRAIT_PROPERTIES[kind].model_validate({} if value is None else value)


class Policy(BaseModel):
    """A KubeVela policy (``spec.policies[]``): refused unless its type is in ``SUPPORTED_POLICIES``."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    type: str

    @field_validator("type")
    @classmethod
    def _supported(cls, value: str) -> str:
        if value not in SUPPORTED_POLICIES:
            raise _unsupported("policy", value, SUPPORTED_POLICIES)
        return value


class Component(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: Annotated[str, Field(min_length=1)]
    type: Literal["wasm"]
    properties: WasmProperties
    traits: list[Trait] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _dns_label(value)

    @field_validator("traits")
    @classmethod
    def _one_of_each(cls, value: list[Trait]) -> list[Trait]:
        # KubeVela would apply both patches, the last one winning: say so instead of guessing.
        seen: dict[str, int] = {}
        for index, trait in enumerate(value):
            first = seen.setdefault(trait.type, index)
            if first != index:
                raise ValueError(f"trait type {trait.type!r} is given twice (traits[{first}] and traits[{index}]); "
                                 "merge their properties into one")
        return value


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    namespace: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _dns_label(value)


class ApplicationSpec(BaseModel):
    model_config = ConfigDict(extra="allow")

    components: list[Component] = Field(min_length=1)
    policies: list[Policy] = Field(default_factory=list)
    workflow: Any = None

    @field_validator("workflow")
    @classmethod
    def _no_workflow(cls, value: Any) -> Any:
        # KubeVela's workflow orders and gates a deploy (suspend for approval, notify...);
        # wasmlet deploys every component at once, so running it without the steps would mislead.
        if value:
            raise ValueError(
                "a KubeVela workflow is not supported by wasmlet (its components are deployed together, "
                "at once); remove spec.workflow, or deploy this Application with KubeVela"
            )
        return value

    @field_validator("components")
    @classmethod
    def _unique(cls, value: list[Component]) -> list[Component]:
        seen: set[str] = set()
        for component in value:
            if component.name in seen:
                raise ValueError(f"component name {component.name!r} is used twice")
            seen.add(component.name)
        return value


class Application(BaseModel):
    model_config = ConfigDict(extra="allow")

    api_version: Literal["core.oam.dev/v1beta1"] = Field(alias="apiVersion")
    kind: Literal["Application"]
    metadata: Metadata
    spec: ApplicationSpec
