"""The Kubernetes scheduling vocabulary, as plain immutable values.

Taints (on hosts), tolerations and node selector requirements (on apps),
topology spread constraints and the ``Placement`` a component's traits add up
to. The semantics are Kubernetes' own, so users need to learn nothing new:

- a taint is ``key=value:effect``; ``NoSchedule`` and ``NoExecute`` keep apps
  that do not tolerate it off the host, ``PreferNoSchedule`` only makes the
  host a last choice (core/v1 ``Taint``);
- a toleration matches a taint as ``ToleratesTaint`` does in
  k8s.io/api/core/v1/toleration.go: an empty effect matches every effect, an
  empty key with ``Exists`` matches every taint, ``Equal`` compares values;
- a node selector requirement is one ``matchExpressions`` item of node
  affinity (``In``, ``NotIn``, ``Exists``, ``DoesNotExist``, ``Gt``, ``Lt``);
  the requirements of a term are ANDed, the terms ORed;
- label keys and values are checked as the API server checks them
  (k8s.io/apimachinery validation: ``IsQualifiedName``, ``IsValidLabelValue``),
  so a host or manifest Kubernetes would refuse is refused here too.

These are what ``ComponentSpec.placement`` stores and ``place`` reads; the
YAML spellings of the traits that produce them are in ``_traits``.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "MAX_REPLICAS",
    "NodeSelectorRequirement",
    "NodeSelectorTerm",
    "Placement",
    "SpreadConstraint",
    "Taint",
    "TaintEffect",
    "Toleration",
    "check_label_key",
    "check_label_value",
    "check_labels",
    "check_subdomain",
    "refuse_unsupported",
]

# One replica per host (see _placement), so more replicas than hosts stay pending;
# the bound only keeps a typo such as 100000 from costing time.
MAX_REPLICAS = 1000

TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_INT64 = re.compile(r"^[+-]?[0-9]{1,18}$")


def check_subdomain(value: str) -> str:
    """An RFC 1123 subdomain (a Node or PriorityClass name, a label prefix): at most 253 characters."""
    if len(value) > 253 or not _SUBDOMAIN.fullmatch(value):
        raise ValueError("expected a lower-case RFC 1123 subdomain (a-z, 0-9, '-' and '.', at most 253 characters)")
    return value


def check_label_key(value: str) -> str:
    """A label (or taint) key: an optional DNS-subdomain prefix and '/', then a name of at most 63 characters."""
    prefix, slash, name = value.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _SUBDOMAIN.fullmatch(prefix)):
        raise ValueError(f"expected a label key such as node-type or topology.kubernetes.io/zone, got {value!r:.80}")
    if len(name) > 63 or not _NAME.fullmatch(name):
        raise ValueError(
            "expected a label key such as node-type or topology.kubernetes.io/zone "
            f"(at most 63 characters of A-Z, a-z, 0-9, '-', '_' and '.' after any prefix), got {value!r:.80}"
        )
    return value


def check_label_value(value: str) -> str:
    """A label (or taint) value: empty, or at most 63 characters of A-Z, a-z, 0-9, '-', '_', '.'."""
    if value and (len(value) > 63 or not _NAME.fullmatch(value)):
        raise ValueError(
            "expected a label value: empty, or at most 63 characters of A-Z, a-z, 0-9, '-', '_' and '.' "
            f"beginning and ending with a letter or digit; got {value!r:.80}"
        )
    return value


def _located(title: str, problems: list[tuple[str, str, Any]]) -> ValidationError:
    """A validation error at fields of the value being validated: (field, message, input) each.

    Raised from a validator, pydantic reports it under that value's own path
    (``...tolerations[0].tolerationSeconds``), where a plain ``ValueError``
    could only name the value.
    """
    return ValidationError.from_exception_data(title, [
        {"type": "value_error", "loc": (field,), "input": value, "ctx": {"error": ValueError(message)}}
        for field, message, value in problems
    ])


def check_labels(value: Any, title: str) -> Any:
    """Check a label map, raising a validation error located at each bad label (``labels.<key>``)."""
    if not isinstance(value, dict):
        return value  # the dict[str, str] type says what is expected
    problems: list[tuple[str, str, Any]] = []
    for key, label in value.items():
        try:
            if not isinstance(key, str) or not isinstance(label, str):
                raise ValueError('expected a string; quote values such as "true" or "85"')
            check_label_key(key)
            check_label_value(label)
        except ValueError as exc:
            problems.append((str(key)[:64], str(exc), label))
    if problems:
        raise _located(title, problems)
    return value


def refuse_unsupported(data: Any, unsupported: dict[str, str], title: str) -> None:
    """Raise a validation error located at the first field of ``data`` that wasmlet knows but does not implement.

    Such a field (``podAffinity``, ``tolerationSeconds``...) is valid for
    KubeVela, so "unknown field" would mislead; the message says why it is refused.
    """
    if not isinstance(data, dict):
        return
    for field, why in unsupported.items():
        if field in data:
            raise _located(title, [(field, f"{field} is not supported by wasmlet: {why}", data[field])])


class _Value(BaseModel):
    """Immutable, no unknown fields; ``UNSUPPORTED`` lists fields refused with a reason."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    UNSUPPORTED: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        refuse_unsupported(data, cls.UNSUPPORTED, cls.__name__)
        return data


def _strict_str(value: Any) -> Any:
    # YAML reads `value: true` and `value: 85` as a bool and an int; Kubernetes wants strings.
    if not isinstance(value, str):
        raise ValueError('expected a string; quote it, as in value: "true"')
    return value


class Taint(_Value):
    """A host's taint, ``key=value:effect`` (core/v1 ``Taint``)."""

    key: str
    value: str = ""
    effect: TaintEffect

    @model_validator(mode="before")
    @classmethod
    def _time_added(cls, data: Any) -> Any:
        # Kubernetes stamps NoExecute taints with timeAdded; it only times evictions, which wasmlet
        # does at once (see _placement), so a Node copied from `kubectl get -o yaml` still loads.
        if isinstance(data, dict) and "timeAdded" in data:
            data = {k: v for k, v in data.items() if k != "timeAdded"}
        return data

    @field_validator("key", "value", mode="before")
    @classmethod
    def _strings(cls, value: Any) -> Any:
        return _strict_str(value)

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        return check_label_key(value)

    @field_validator("value")
    @classmethod
    def _value(cls, value: str) -> str:
        return check_label_value(value)

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


class Toleration(_Value):
    """An app's toleration of taints (core/v1 ``Toleration``, the list of KubeVela's ``affinity`` trait)."""

    UNSUPPORTED: ClassVar[dict[str, str]] = {
        "tolerationSeconds": "a replica on a host with an untolerated NoExecute taint moves at once "
                             "(there is no eviction timer); remove it",
    }

    key: str = ""
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str = ""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""

    @field_validator("key", "value", mode="before")
    @classmethod
    def _strings(cls, value: Any) -> Any:
        return _strict_str(value)

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        return check_label_key(value) if value else value

    @field_validator("value")
    @classmethod
    def _value(cls, value: str) -> str:
        return check_label_value(value)

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        # The API server's rules (ValidateTolerations): Exists takes no value; an empty key needs Exists.
        if self.operator == "Exists" and self.value:
            raise ValueError("a toleration with operator Exists takes no value; remove value, or use Equal")
        if not self.key and self.operator != "Exists":
            raise ValueError("a toleration without a key must have operator Exists (it then tolerates every taint)")
        return self

    def tolerates(self, taint: Taint) -> bool:
        """Whether this toleration matches ``taint`` (k8s.io/api/core/v1 ``Toleration.ToleratesTaint``)."""
        if self.effect and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        return self.operator == "Exists" or self.value == taint.value


class NodeSelectorRequirement(_Value):
    """One ``matchExpressions`` item of node affinity: a label, an operator and values."""

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"] = "In"
    values: tuple[str, ...] = ()

    @field_validator("key", mode="before")
    @classmethod
    def _string(cls, value: Any) -> Any:
        return _strict_str(value)

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        return check_label_key(value)

    @field_validator("values", mode="before")
    @classmethod
    def _values(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            for item in value:
                check_label_value(_strict_str(item))
        return value

    @model_validator(mode="after")
    def _consistent(self) -> NodeSelectorRequirement:
        # ValidateNodeSelectorRequirement: In/NotIn need values, Exists/DoesNotExist none, Gt/Lt one integer.
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs at least one value in values")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values; remove values")
        if self.operator in ("Gt", "Lt") and (len(self.values) != 1 or not _INT64.fullmatch(self.values[0])):
            raise ValueError(f"operator {self.operator} needs exactly one integer in values")
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether a host with ``labels`` meets this requirement (NotIn and DoesNotExist match a missing label)."""
        value = labels.get(self.key)
        if self.operator == "In":
            return value is not None and value in self.values
        if self.operator == "NotIn":
            return value is None or value not in self.values
        if self.operator == "Exists":
            return value is not None
        if self.operator == "DoesNotExist":
            return value is None
        if value is None or not _INT64.fullmatch(value):
            return False  # Gt/Lt on a label that is not an integer: no match, as in Kubernetes
        bound = int(self.values[0])
        return int(value) > bound if self.operator == "Gt" else int(value) < bound

    def failure(self) -> tuple[str, str]:
        """What a host that does not meet this requirement is like, for one host and for several."""
        values = self.values[0] if len(self.values) == 1 else f"in ({', '.join(self.values)})"
        sep = "=" if len(self.values) == 1 else " "
        if self.operator == "In":
            return f"lacks label {self.key}{sep}{values}", f"lack label {self.key}{sep}{values}"
        if self.operator == "NotIn":
            return f"has excluded label {self.key}{sep}{values}", f"have excluded label {self.key}{sep}{values}"
        if self.operator == "Exists":
            return f"lacks label {self.key}", f"lack label {self.key}"
        if self.operator == "DoesNotExist":
            return f"has excluded label {self.key}", f"have excluded label {self.key}"
        sign = ">" if self.operator == "Gt" else "<"
        return f"lacks label {self.key} {sign} {self.values[0]}", f"lack label {self.key} {sign} {self.values[0]}"


class NodeSelectorTerm(_Value):
    """Requirements that must all hold (one ``nodeSelectorTerms`` item)."""

    requirements: tuple[NodeSelectorRequirement, ...] = Field(min_length=1)

    def matches(self, labels: dict[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


class SpreadConstraint(_Value):
    """A topology spread constraint (core/v1 ``TopologySpreadConstraint``) over the app's own replicas.

    ``node_taints_policy`` defaults to ``Ignore`` as in Kubernetes: the zone of
    a host the app may not run on (tainted) still counts as a domain with no
    replica, which can hold back the others; ``Honor`` leaves it out.
    """

    max_skew: int = Field(ge=1)
    topology_key: str
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"] = "DoNotSchedule"
    min_domains: int | None = Field(default=None, ge=1)
    node_affinity_policy: Literal["Honor", "Ignore"] = "Honor"
    node_taints_policy: Literal["Honor", "Ignore"] = "Ignore"

    @field_validator("topology_key")
    @classmethod
    def _key(cls, value: str) -> str:
        return check_label_key(value)


class Placement(_Value):
    """Where a component may run and how many replicas of it: what its traits say.

    The defaults mean one replica on any host that has room; a spec stored
    before placement existed loads with them.
    """

    replicas: int = Field(default=1, ge=0, le=MAX_REPLICAS)
    node_selector: tuple[NodeSelectorTerm, ...] = ()  # terms ORed; none: any host
    tolerations: tuple[Toleration, ...] = ()
    spread: tuple[SpreadConstraint, ...] = ()
    priority_class: str | None = None  # a PriorityClass name; None: the global default class, or 0

    def selects(self, labels: dict[str, str]) -> bool:
        """Whether a host with ``labels`` meets the node selector."""
        return not self.node_selector or any(term.matches(labels) for term in self.node_selector)

    def tolerates(self, taint: Taint) -> bool:
        return any(t.tolerates(taint) for t in self.tolerations)
