"""The placement traits of a component, spelled as KubeVela spells them.

A component's ``traits`` say where it runs (``spec.components[].traits[]``);
what they produce is a ``Placement``. Four types are implemented:

``scaler``
    KubeVela's built-in: ``properties.replicas`` (default 1). wasmlet runs at
    most one replica of a component per host (one host process serves all the
    requests it gets), so replicas are hosts.
``affinity``
    KubeVela's built-in, the subset that is about hosts:
    ``nodeAffinity.required.nodeSelectorTerms[].matchExpressions[]`` (labels a
    host must have) and ``tolerations[]`` (key, operator, value, effect, as in
    a Kubernetes pod). ``podAffinity``/``podAntiAffinity`` (co-location by pod
    labels, which wasmlet has not), ``nodeAffinity.preferred`` (soft scoring),
    ``matchFields`` and ``tolerationSeconds`` are refused, each with its reason.
``topologyspreadconstraints``
    KubeVela's built-in: ``constraints[]`` of ``maxSkew``, ``topologyKey``
    (e.g. ``topology.kubernetes.io/zone``), ``whenUnsatisfiable``,
    ``minDomains``, ``nodeAffinityPolicy``, ``nodeTaintsPolicy``. The replicas
    counted are always the component's own: wasmlet has no pod labels, and
    the ``labelSelector`` KubeVela requires is in practice the selector of the
    component's own pods. It is accepted (and checked for shape) so the same
    manifest deploys on KubeVela; ``matchLabelKeys`` is refused.
``priority``
    wasmlet's own: KubeVela has no trait for a pod's ``priorityClassName``.
    ``properties.className`` names a ``PriorityClass`` (the seed's
    ``wasm-critical``), whose value decides who is displaced when capacity
    runs out. A trait rather than a property, because it is about placement
    in a lattice, like the other three, and means nothing on one host.

Every other trait type is refused, naming the supported ones; so is a trait
type given twice on one component.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from ._scheduling import (
    MAX_REPLICAS,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    Placement,
    SpreadConstraint,
    Toleration,
    check_label_key,
    check_labels,
    check_subdomain,
    refuse_unsupported,
)

__all__ = [
    "SUPPORTED_TRAITS",
    "TRAIT_PROPERTIES",
    "AffinityProperties",
    "PriorityProperties",
    "ScalerProperties",
    "TopologySpreadProperties",
    "placement_from_traits",
]


class _Properties(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    UNSUPPORTED: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        refuse_unsupported(data, cls.UNSUPPORTED, cls.__name__)
        return data


class ScalerProperties(_Properties):
    replicas: StrictInt = Field(default=1, ge=0, le=MAX_REPLICAS)


class _Term(_Properties):
    UNSUPPORTED: ClassVar[dict[str, str]] = {
        "matchFields": "select hosts by their labels with matchExpressions",
    }

    match_expressions: list[NodeSelectorRequirement] = Field(alias="matchExpressions", min_length=1)


class _Required(_Properties):
    node_selector_terms: list[_Term] = Field(alias="nodeSelectorTerms", min_length=1)


class _NodeAffinity(_Properties):
    UNSUPPORTED: ClassVar[dict[str, str]] = {
        "preferred": "soft node preferences are not implemented; use required, "
                     "or give the hosts to avoid a PreferNoSchedule taint",
    }

    required: _Required | None = None


class AffinityProperties(_Properties):
    UNSUPPORTED: ClassVar[dict[str, str]] = {
        "podAffinity": "wasmlet has no pod labels to co-locate by; select hosts with nodeAffinity",
        "podAntiAffinity": "replicas of a component never share a host already; "
                           "spread them with the topologyspreadconstraints trait",
    }

    node_affinity: _NodeAffinity | None = Field(default=None, alias="nodeAffinity")
    tolerations: list[Toleration] = Field(default_factory=list)


class _LabelRequirement(_Properties):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = "In"
    values: list[str] = Field(default_factory=list)

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        return check_label_key(value)


class _LabelSelector(_Properties):
    match_labels: dict[str, str] = Field(default_factory=dict, alias="matchLabels")
    match_expressions: list[_LabelRequirement] = Field(default_factory=list, alias="matchExpressions")

    @field_validator("match_labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        return check_labels(value, "labelSelector")


class _Spread(_Properties):
    UNSUPPORTED: ClassVar[dict[str, str]] = {
        "matchLabelKeys": "wasmlet has no pod labels; the replicas spread are the component's own",
    }

    max_skew: StrictInt = Field(alias="maxSkew", ge=1)
    topology_key: str = Field(alias="topologyKey")
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"] = Field(
        default="DoNotSchedule", alias="whenUnsatisfiable")
    label_selector: _LabelSelector | None = Field(default=None, alias="labelSelector")  # see the module docstring
    min_domains: StrictInt | None = Field(default=None, alias="minDomains", ge=1)
    node_affinity_policy: Literal["Honor", "Ignore"] = Field(default="Honor", alias="nodeAffinityPolicy")
    node_taints_policy: Literal["Honor", "Ignore"] = Field(default="Ignore", alias="nodeTaintsPolicy")

    @field_validator("topology_key")
    @classmethod
    def _key(cls, value: str) -> str:
        return check_label_key(value)

    @model_validator(mode="after")
    def _min_domains(self) -> _Spread:
        if self.min_domains is not None and self.when_unsatisfiable != "DoNotSchedule":
            raise ValueError("minDomains is only allowed with whenUnsatisfiable: DoNotSchedule (as in Kubernetes)")
        return self


class TopologySpreadProperties(_Properties):
    constraints: list[_Spread] = Field(min_length=1)

    @field_validator("constraints")
    @classmethod
    def _unique(cls, value: list[_Spread]) -> list[_Spread]:
        seen: set[tuple[str, str]] = set()
        for item in value:
            key = (item.topology_key, item.when_unsatisfiable)
            if key in seen:
                raise ValueError(f"two constraints on topologyKey {item.topology_key} with whenUnsatisfiable "
                                 f"{item.when_unsatisfiable}; merge them")
            seen.add(key)
        return value


class PriorityProperties(_Properties):
    class_name: str = Field(alias="className")

    @field_validator("class_name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_subdomain(value)


#: Trait type -> the model of its ``properties``; the keys, in order, are ``SUPPORTED_TRAITS``.
TRAIT_PROPERTIES: dict[str, type[_Properties]] = {
    "scaler": ScalerProperties,
    "affinity": AffinityProperties,
    "topologyspreadconstraints": TopologySpreadProperties,
    "priority": PriorityProperties,
}
SUPPORTED_TRAITS: tuple[str, ...] = tuple(TRAIT_PROPERTIES)


def placement_from_traits(properties: Iterable[Any]) -> Placement:
    """The ``Placement`` that validated trait properties add up to (no traits: the defaults)."""
    fields: dict[str, Any] = {}
    for item in properties:
        if isinstance(item, ScalerProperties):
            fields["replicas"] = item.replicas
        elif isinstance(item, AffinityProperties):
            required = item.node_affinity.required if item.node_affinity else None
            if required is not None:
                fields["node_selector"] = tuple(NodeSelectorTerm(requirements=tuple(t.match_expressions))
                                                for t in required.node_selector_terms)
            fields["tolerations"] = tuple(item.tolerations)
        elif isinstance(item, TopologySpreadProperties):
            fields["spread"] = tuple(SpreadConstraint(
                max_skew=c.max_skew, topology_key=c.topology_key, when_unsatisfiable=c.when_unsatisfiable,
                min_domains=c.min_domains, node_affinity_policy=c.node_affinity_policy,
                node_taints_policy=c.node_taints_policy,
            ) for c in item.constraints)
        elif isinstance(item, PriorityProperties):
            fields["priority_class"] = item.class_name
    return Placement(**fields)
