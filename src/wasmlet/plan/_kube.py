"""The Kubernetes objects of the seed's YAML stream that placement reads: ``Node`` and ``PriorityClass``.

The seed declares its Wasm host as a core/v1 ``Node`` (``wasm-node-01``,
label ``node-type: wasm``, taint ``wasm=true:NoSchedule``) and its critical
workloads' ``PriorityClass`` (scheduling.k8s.io/v1 ``wasm-critical``, value
1000000), in the same multi-document stream as the ``Application``.
``parse_manifest`` skips them; ``parse_nodes`` and ``parse_priority_classes``
read them, each skipping every other kind, so one file serves all three.

What a ``Node`` says, and what wasmlet makes of it:

- ``metadata.name`` and ``metadata.labels``: the host's name and labels
  (``topology.kubernetes.io/zone`` is the zone spread constraints use);
- ``spec.taints``; ``spec.unschedulable: true`` (what ``kubectl cordon``
  sets) becomes the taint ``node.kubernetes.io/unschedulable:NoSchedule``,
  as the Kubernetes node controller does;
- capacity in ``status.allocatable`` (or ``status.capacity``), the fields a
  kubelet reports: ``memory`` (a quantity; the sum of the ``memoryLimit`` of
  the replicas placed there may not exceed it) and ``pods`` (how many app
  replicas it takes). Absent: no limit. Other resources (cpu, storage) are
  accepted and not used.

Unknown fields are refused where a typo would change the meaning
(``spec.taint`` for ``spec.taints``); ``metadata`` and ``status`` take what
``kubectl get node -o yaml`` prints. Errors are ``ManifestError``s with the
file, the document and the field path, as for manifests.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator

from .._errors import ManifestError
from ._loader import MAX_MANIFEST_BYTES, _clip, _problems, decode_manifest
from ._quantity import parse_quantity
from ._scheduling import Taint, check_labels, check_subdomain
from ._yaml import load_all

__all__ = [
    "UNSCHEDULABLE_TAINT",
    "ZONE_LABEL",
    "Node",
    "PriorityClass",
    "load_nodes",
    "load_priority_classes",
    "parse_nodes",
    "parse_priority_classes",
    "priority_of",
]

ZONE_LABEL = "topology.kubernetes.io/zone"
UNSCHEDULABLE_TAINT = Taint(key="node.kubernetes.io/unschedulable", effect="NoSchedule")
# The bounds of PriorityClass.value the API server enforces for user classes
# (HighestUserDefinablePriority; values above are for system-* classes).
MIN_PRIORITY = -(2**31)
MAX_PRIORITY = 1_000_000_000


class Node(BaseModel):
    """A host as placement sees it: name, labels, taints and capacity (``None``: no limit).

    Also the form hosts can announce themselves in (``model_dump_json`` /
    ``model_validate_json``); the runtime builds one from flags or ``--node``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    memory: StrictInt | None = Field(default=None, ge=0)  # bytes of memoryLimit it takes, summed over its replicas
    pods: StrictInt | None = Field(default=None, ge=0)  # app replicas it takes

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_subdomain(value)

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        return check_labels(value, cls.__name__)

    @property
    def zone(self) -> str | None:
        return self.labels.get(ZONE_LABEL)


class PriorityClass(BaseModel):
    """A scheduling.k8s.io/v1 ``PriorityClass``: a name for a priority value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    value: StrictInt = Field(ge=MIN_PRIORITY, le=MAX_PRIORITY)
    global_default: StrictBool = False
    preemption_policy: Literal["PreemptLowerPriority", "Never"] = "PreemptLowerPriority"
    description: str = ""


def priority_of(class_name: str | None, classes: dict[str, PriorityClass]) -> PriorityClass | None:
    """The class an app with ``class_name`` gets: that class, or (no name) the global default, or ``None``.

    Raises ``KeyError`` for a name no class has (Kubernetes' admission refuses such a pod).
    """
    if class_name is not None:
        return classes[class_name]
    defaults = sorted((c for c in classes.values() if c.global_default), key=lambda c: c.name)
    return defaults[0] if defaults else None


# The YAML documents ---------------------------------------------------------------------------

class _Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")  # uid, annotations, creationTimestamp...

    name: str
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_subdomain(value)

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        return check_labels(value, "metadata")


class _NodeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    taints: list[Taint] = Field(default_factory=list)
    unschedulable: StrictBool = False
    # The rest of core/v1 NodeSpec, accepted and not used by placement.
    pod_cidr: Any = Field(default=None, alias="podCIDR")
    pod_cidrs: Any = Field(default=None, alias="podCIDRs")
    provider_id: Any = Field(default=None, alias="providerID")
    config_source: Any = Field(default=None, alias="configSource")
    external_id: Any = Field(default=None, alias="externalID")


def _quantity(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise ValueError("expected a quantity such as 4Gi or 110")
    return parse_quantity(value)


class _Resources(BaseModel):
    model_config = ConfigDict(extra="allow")  # cpu, ephemeral-storage, hugepages-2Mi...

    memory: int | None = None
    pods: int | None = None

    @field_validator("memory", "pods", mode="before")
    @classmethod
    def _quantities(cls, value: Any) -> int | None:
        return _quantity(value)


class _NodeStatus(BaseModel):
    model_config = ConfigDict(extra="allow")  # addresses, conditions, nodeInfo...

    allocatable: _Resources | None = None
    capacity: _Resources | None = None


class _NodeDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_version: Literal["v1"] = Field(alias="apiVersion")
    kind: Literal["Node"]
    metadata: _Metadata
    spec: _NodeSpec = Field(default_factory=_NodeSpec)
    status: _NodeStatus = Field(default_factory=_NodeStatus)

    def to_node(self) -> Node:
        taints = list(self.spec.taints)
        if self.spec.unschedulable and UNSCHEDULABLE_TAINT not in taints:
            taints.append(UNSCHEDULABLE_TAINT)
        sources = [r for r in (self.status.allocatable, self.status.capacity) if r is not None]
        memory = next((r.memory for r in sources if r.memory is not None), None)
        pods = next((r.pods for r in sources if r.pods is not None), None)
        return Node(name=self.metadata.name, labels=dict(self.metadata.labels), taints=tuple(taints),
                    memory=memory, pods=pods)


class _PriorityClassDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_version: Literal["scheduling.k8s.io/v1"] = Field(alias="apiVersion")
    kind: Literal["PriorityClass"]
    metadata: _Metadata
    value: StrictInt = Field(ge=MIN_PRIORITY, le=MAX_PRIORITY)
    global_default: StrictBool = Field(default=False, alias="globalDefault")
    description: str = ""
    preemption_policy: Literal["PreemptLowerPriority", "Never"] = Field(
        default="PreemptLowerPriority", alias="preemptionPolicy")

    @field_validator("metadata")
    @classmethod
    def _not_system(cls, value: _Metadata) -> _Metadata:
        if value.name.startswith("system-"):
            raise ValueError("names starting with system- are reserved for Kubernetes' own classes")
        return value

    def to_class(self) -> PriorityClass:
        return PriorityClass(name=self.metadata.name, value=self.value, global_default=self.global_default,
                             preemption_policy=self.preemption_policy, description=self.description)


# Reading streams ------------------------------------------------------------------------------

_Doc = TypeVar("_Doc", bound=BaseModel)
_Out = TypeVar("_Out")


def _documents(text: str, source: str) -> list[Any]:
    if len(text) > MAX_MANIFEST_BYTES:
        raise ManifestError(source, [("", f"larger than {MAX_MANIFEST_BYTES} characters")])
    try:
        return [d for d in load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(document)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestError(source, [(where, _clip(f"not valid YAML: {problem}"))]) from exc


def _parse(text: str, source: str, kind: str, model: type[_Doc], convert: Callable[[_Doc], _Out],
           name: Callable[[_Out], str]) -> list[tuple[str, _Out]]:
    documents = _documents(text, source)
    multiple = len(documents) > 1
    problems: list[tuple[str, str]] = []
    found: list[tuple[str, _Out]] = []
    names: dict[str, int] = {}
    for index, document in enumerate(documents):
        prefix = f"(document {index + 1}) " if multiple else ""
        if not isinstance(document, dict):
            problems.append((prefix.strip(), "expected a mapping with apiVersion, kind and metadata"))
            continue
        if document.get("kind") != kind:
            continue  # an Application, a NetworkPolicy...: another reader's
        try:
            value = convert(model.model_validate(document))
        except ValidationError as exc:
            problems.extend(_problems(exc, prefix))
            continue
        first = names.setdefault(name(value), index)
        if first != index:
            problems.append((f"{prefix}metadata.name",
                             f"{kind} {name(value)!r} is declared twice (also in document {first + 1})"))
        found.append((prefix, value))
    if problems:
        raise ManifestError(source, problems[:50])
    return found


def _read(path: str | Path) -> tuple[str, str]:
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ManifestError(str(path), [("", f"cannot read file: {exc.strerror or exc}")]) from exc
    return decode_manifest(data, str(path)), str(path)


def parse_nodes(text: str, source: str = "<string>") -> list[Node]:
    """Every ``Node`` document of a YAML stream, in order; other kinds are skipped (none: ``[]``).

    Raises ``ManifestError`` with each problem's document and field path, and
    for two Nodes of one name.
    """
    found = _parse(text, source, "Node", _NodeDocument, _NodeDocument.to_node, lambda n: n.name)
    return [node for _, node in found]


def load_nodes(path: str | Path) -> list[Node]:
    """``parse_nodes`` of a file (at most ``MAX_MANIFEST_BYTES``, UTF-8)."""
    return parse_nodes(*_read(path))


def parse_priority_classes(text: str, source: str = "<string>") -> list[PriorityClass]:
    """Every ``PriorityClass`` document of a YAML stream, in order; other kinds are skipped (none: ``[]``).

    Raises ``ManifestError`` with each problem's document and field path, for
    two classes of one name, and for more than one ``globalDefault`` class.
    """
    found = _parse(text, source, "PriorityClass", _PriorityClassDocument, _PriorityClassDocument.to_class,
                   lambda c: c.name)
    defaults = [(prefix, c) for prefix, c in found if c.global_default]
    if len(defaults) > 1:
        names = ", ".join(c.name for _, c in defaults)
        raise ManifestError(source, [(f"{prefix}globalDefault",
                                      f"only one PriorityClass may be the global default ({names} are)")
                                     for prefix, _ in defaults[1:]])
    return [c for _, c in found]


def load_priority_classes(path: str | Path) -> list[PriorityClass]:
    """``parse_priority_classes`` of a file (at most ``MAX_MANIFEST_BYTES``, UTF-8)."""
    return parse_priority_classes(*_read(path))
