"""Placement traits on OAM components: KubeVela's spellings accepted, everything else refused by path."""

from __future__ import annotations

import json

import pytest

from wasmlet import ManifestError
from wasmlet.plan import (
    SUPPORTED_TRAITS,
    ComponentSpec,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    Placement,
    SpreadConstraint,
    Toleration,
    parse_manifest,
)

HEAD = """
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {name: image-processor}
spec:
  components:
    - name: resizer
      type: wasm
      properties: {moduleURL: resize.wasm, memoryLimit: 128Mi}
"""

ALL_FOUR = HEAD + """\
      traits:
        - type: scaler
          properties: {replicas: 3}
        - type: affinity
          properties:
            nodeAffinity:
              required:
                nodeSelectorTerms:
                  - matchExpressions:
                      - {key: node-type, operator: In, values: [wasm]}
                      - {key: gpu, operator: DoesNotExist}
                  - matchExpressions:
                      - {key: tier, operator: Gt, values: ["2"]}
            tolerations:
              - {key: wasm, operator: Equal, value: "true", effect: NoSchedule}
              - {operator: Exists}
        - type: topologyspreadconstraints
          properties:
            constraints:
              - maxSkew: 1
                topologyKey: topology.kubernetes.io/zone
                whenUnsatisfiable: DoNotSchedule
                minDomains: 2
                labelSelector: {matchLabels: {app.oam.dev/component: resizer}}
              - {maxSkew: 2, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway,
                 labelSelector: {}}
        - type: priority
          properties: {className: wasm-critical}
"""


def with_traits(traits: str) -> str:
    return HEAD + "      traits:\n" + "".join(f"        {line}\n" for line in traits.strip("\n").splitlines())


def problems(text: str) -> dict[str, str]:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, source="app.yaml")
    assert str(info.value).startswith("app.yaml: invalid manifest")
    return dict(info.value.problems)


def test_no_traits_mean_one_replica_anywhere() -> None:
    (spec,) = parse_manifest(HEAD)
    assert spec.placement == Placement()
    assert (spec.placement.replicas, spec.placement.node_selector, spec.placement.tolerations,
            spec.placement.spread, spec.placement.priority_class) == (1, (), (), (), None)


def test_the_four_traits_reach_the_spec() -> None:
    (spec,) = parse_manifest(ALL_FOUR)
    placement = spec.placement
    assert placement.replicas == 3
    assert placement.node_selector == (
        NodeSelectorTerm(requirements=(NodeSelectorRequirement(key="node-type", operator="In", values=("wasm",)),
                                       NodeSelectorRequirement(key="gpu", operator="DoesNotExist"))),
        NodeSelectorTerm(requirements=(NodeSelectorRequirement(key="tier", operator="Gt", values=("2",)),)),
    )
    assert placement.tolerations == (Toleration(key="wasm", operator="Equal", value="true", effect="NoSchedule"),
                                     Toleration(operator="Exists"))
    assert placement.spread == (
        SpreadConstraint(max_skew=1, topology_key="topology.kubernetes.io/zone", min_domains=2),
        SpreadConstraint(max_skew=2, topology_key="kubernetes.io/hostname", when_unsatisfiable="ScheduleAnyway"),
    )
    assert placement.priority_class == "wasm-critical"
    assert SUPPORTED_TRAITS == ("scaler", "affinity", "topologyspreadconstraints", "priority")


def test_a_trait_without_properties_takes_its_defaults() -> None:
    (spec,) = parse_manifest(with_traits("- type: scaler"))
    assert spec.placement.replicas == 1
    (spec,) = parse_manifest(with_traits("- {type: scaler, properties: {replicas: 0}}"))
    assert spec.placement.replicas == 0  # scaled to zero: placed nowhere, and not pending
    found = problems(with_traits("- type: priority"))
    assert found == {"spec.components[0].traits[0].properties.className": "required field is missing"}


def test_unknown_trait_type_is_refused_naming_the_path_and_the_supported_ones() -> None:
    found = problems(with_traits("""
- {type: scaler, properties: {replicas: 2}}
- {type: gateway, properties: {domain: example.com}}
"""))
    assert list(found) == ["spec.components[0].traits[1].type"]
    message = found["spec.components[0].traits[1].type"]
    assert "'gateway' is not supported by wasmlet" in message
    assert "supported traits: scaler, affinity, topologyspreadconstraints, priority" in message


def test_unknown_trait_properties_are_refused_by_path() -> None:
    found = problems(with_traits("""
- {type: scaler, properties: {replica: 3}}
- type: affinity
  properties: {tolerations: [{key: wasm, opertor: Exists}]}
- {type: topologyspreadconstraints, properties: {constraints: [{maxSkew: 1, topologykey: zone}]}}
"""))
    assert found["spec.components[0].traits[0].properties.replica"] == "unknown field (check its spelling and case)"
    assert found["spec.components[0].traits[1].properties.tolerations[0].opertor"].startswith("unknown field")
    assert found["spec.components[0].traits[2].properties.constraints[0].topologykey"].startswith("unknown field")
    assert found["spec.components[0].traits[2].properties.constraints[0].topologyKey"] == "required field is missing"


def test_a_trait_has_only_type_and_properties() -> None:
    found = problems(with_traits("- {type: scaler, replicas: 3}"))
    assert found == {"spec.components[0].traits[0].replicas": "unknown field (check its spelling and case)"}
    found = problems(with_traits("- {type: scaler, properties: [3]}"))
    assert "spec.components[0].traits[0].properties" in found


@pytest.mark.parametrize(("trait", "path", "why"), [
    ("{type: affinity, properties: {podAntiAffinity: {required: []}}}", "podAntiAffinity", "never share a host"),
    ("{type: affinity, properties: {podAffinity: {}}}", "podAffinity", "no pod labels"),
    ("{type: affinity, properties: {nodeAffinity: {preferred: []}}}", "nodeAffinity.preferred", "soft node"),
    ("{type: affinity, properties: {nodeAffinity: {required: {nodeSelectorTerms: [{matchFields: []}]}}}}",
     "nodeAffinity.required.nodeSelectorTerms[0].matchFields", "by their labels"),
    ("{type: affinity, properties: {tolerations: [{key: a, operator: Exists, tolerationSeconds: 30}]}}",
     "tolerations[0].tolerationSeconds", "no eviction timer"),
    ("{type: topologyspreadconstraints, properties: {constraints: [{maxSkew: 1, topologyKey: z, "
     "matchLabelKeys: [app]}]}}", "constraints[0].matchLabelKeys", "no pod labels"),
])
def test_kubevela_fields_wasmlet_does_not_implement_say_why(trait: str, path: str, why: str) -> None:
    found = problems(with_traits(f"- {trait}"))
    message = found[f"spec.components[0].traits[0].properties.{path}"]
    assert message.startswith(f"{path.rsplit('.', 1)[-1].split('[')[0]} is not supported by wasmlet: ")
    assert why in message


@pytest.mark.parametrize(("trait", "path", "expected"), [
    ('{type: scaler, properties: {replicas: "3"}}', "replicas", "valid integer"),
    ("{type: scaler, properties: {replicas: true}}", "replicas", "valid integer"),
    ("{type: scaler, properties: {replicas: -1}}", "replicas", "greater than or equal to 0"),
    ("{type: scaler, properties: {replicas: 1001}}", "replicas", "less than or equal to 1000"),
    ("{type: affinity, properties: {tolerations: [{key: wasm, operator: Equals}]}}",
     "tolerations[0].operator", "expected 'Equal' or 'Exists'"),
    ("{type: affinity, properties: {tolerations: [{key: wasm, operator: Exists, value: x}]}}",
     "tolerations[0]", "Exists takes no value"),
    ("{type: affinity, properties: {tolerations: [{value: x}]}}", "tolerations[0]", "must have operator Exists"),
    ("{type: affinity, properties: {tolerations: [{key: wasm, value: true}]}}", "tolerations[0].value",
     "quote it"),
    ("{type: affinity, properties: {tolerations: [{key: wasm, effect: NoRun}]}}", "tolerations[0].effect",
     "'NoSchedule'"),
    ("{type: affinity, properties: {tolerations: [{key: 'bad key!', operator: Exists}]}}", "tolerations[0].key",
     "expected a label key"),
    ("{type: affinity, properties: {nodeAffinity: {required: {nodeSelectorTerms: []}}}}",
     "nodeAffinity.required.nodeSelectorTerms", "at least 1 item"),
    ("{type: affinity, properties: {nodeAffinity: {required: {nodeSelectorTerms: [{matchExpressions: []}]}}}}",
     "nodeAffinity.required.nodeSelectorTerms[0].matchExpressions", "at least 1 item"),
    ("{type: affinity, properties: {nodeAffinity: {required: {nodeSelectorTerms: [{matchExpressions: "
     "[{key: a, operator: In}]}]}}}}", "nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0]",
     "needs at least one value"),
    ("{type: affinity, properties: {nodeAffinity: {required: {nodeSelectorTerms: [{matchExpressions: "
     "[{key: a, operator: Gt, values: [big]}]}]}}}}",
     "nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0]", "exactly one integer"),
    ("{type: affinity, properties: {nodeAffinity: {required: {nodeSelectorTerms: [{matchExpressions: "
     "[{key: a, operator: Exists, values: [x]}]}]}}}}",
     "nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0]", "takes no values"),
    ("{type: topologyspreadconstraints, properties: {constraints: [{maxSkew: 0, topologyKey: zone}]}}",
     "constraints[0].maxSkew", "greater than or equal to 1"),
    ("{type: topologyspreadconstraints, properties: {constraints: [{maxSkew: 1, topologyKey: 'a/b/c'}]}}",
     "constraints[0].topologyKey", "expected a label key"),
    ("{type: topologyspreadconstraints, properties: {constraints: [{maxSkew: 1, topologyKey: zone, "
     "whenUnsatisfiable: ScheduleAnyway, minDomains: 2}]}}", "constraints[0]", "only allowed with"),
    ("{type: topologyspreadconstraints, properties: {constraints: [{maxSkew: 1, topologyKey: zone}, "
     "{maxSkew: 2, topologyKey: zone}]}}", "constraints", "merge them"),
    ("{type: topologyspreadconstraints, properties: {constraints: []}}", "constraints", "at least 1 item"),
    ("{type: priority, properties: {className: Wasm_Critical}}", "className", "RFC 1123 subdomain"),
])
def test_bad_trait_values_are_refused_with_what_was_expected(trait: str, path: str, expected: str) -> None:
    found = problems(with_traits(f"- {trait}"))
    key = f"spec.components[0].traits[0].properties.{path}"
    assert key in found, found
    assert expected in found[key]


def test_a_trait_type_given_twice_is_refused() -> None:
    found = problems(with_traits("""
- {type: scaler, properties: {replicas: 2}}
- {type: priority, properties: {className: a}}
- {type: scaler, properties: {replicas: 3}}
"""))
    assert "given twice (traits[0] and traits[2])" in found["spec.components[0].traits"]


def test_policies_and_workflow_are_still_refused() -> None:
    text = HEAD + "  policies:\n    - {name: topo, type: topology, properties: {clusters: [local]}}\n"
    found = problems(text)
    assert "'topology' is not supported by wasmlet (supported policies: none yet)" in found["spec.policies[0].type"]


def test_every_problem_of_every_trait_is_reported_at_once() -> None:
    found = problems(with_traits("""
- {type: scaler, properties: {replicas: many}}
- {type: sidecar}
- {type: priority, properties: {className: ''}}
"""))
    assert set(found) == {"spec.components[0].traits[0].properties.replicas",
                          "spec.components[0].traits[1].type",
                          "spec.components[0].traits[2].properties.className"}


def test_a_hostile_trait_type_is_quoted_briefly() -> None:
    found = problems(with_traits(f"- {{type: {'x' * 100_000}}}"))
    assert len(found["spec.components[0].traits[0].type"]) <= 300


def test_a_spec_stored_before_placement_loads_with_the_defaults() -> None:
    (spec,) = parse_manifest(ALL_FOUR)
    stored = spec.to_json()
    assert ComponentSpec.from_json(stored) == spec  # the placement round-trips
    old = json.loads(stored)
    del old["placement"]  # what 0.1 wrote
    assert ComponentSpec.from_json(json.dumps(old)).placement == Placement()
    old["placement"] = {"replicas": 2, "surprise": 1}
    with pytest.raises(ValueError, match="surprise"):
        ComponentSpec.from_json(json.dumps(old))
