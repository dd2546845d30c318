"""Manifest validation: pure logic, no servers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from wasmlet import ManifestError
from wasmlet.plan import assign_routes, load_manifest, parse_duration, parse_manifest, parse_quantity

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = """
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {name: app}
spec:
  components:
    - name: web
      type: wasm
      properties: {moduleURL: web.wasm}
"""


def problems(text: str) -> dict[str, str]:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, source="m.yaml")
    assert str(info.value).startswith("m.yaml: invalid manifest")
    return dict(info.value.problems)


def test_seed_manifest_as_written() -> None:
    specs = load_manifest(ROOT / "examples" / "seed" / "app.yaml")
    assert len(specs) == 1  # Node and PriorityClass are for the cluster, not the runtime
    spec = specs[0]
    assert (spec.app, spec.name) == ("image-processor", "resizer")
    assert spec.module_url == "oci://registry.acme.com/wasm/resize:v1.2.0"
    assert spec.memory_limit == 128 * 1024 * 1024
    assert spec.environment == (("QUALITY", "85"),)


def test_defaults() -> None:
    (spec,) = parse_manifest(MINIMAL)
    assert spec.route is None and spec.host is None
    assert spec.timeout == 10.0
    assert spec.entrypoint == "_start"
    assert spec.argv == "${SCRIPT_NAME} ${ARGS}"


def test_errors_name_the_field_path_and_expectation() -> None:
    text = MINIMAL.replace("{moduleURL: web.wasm}", '{moduleURL: web.wasm, memoryLimit: "12x8", timeout: forever}')
    found = problems(text)
    assert "expected a quantity" in found["spec.components[0].properties.memoryLimit"]
    assert "expected a duration" in found["spec.components[0].properties.timeout"]


def test_every_problem_is_reported_at_once() -> None:
    text = """
apiVersion: core.oam.dev/v1alpha2
kind: Application
metadata: {name: Bad_Name}
spec:
  components:
    - name: web
      type: docker
      properties:
        moduleURL: web.wasm
        environment: [{name: QUALITY, value: 85}]
        memorylimit: 128Mi
"""
    found = problems(text)
    assert "core.oam.dev/v1beta1" in found["apiVersion"]
    assert "RFC 1123" in found["metadata.name"]
    assert "'wasm'" in found["spec.components[0].type"]
    assert 'quote numbers' in found["spec.components[0].properties.environment[0].value"]
    assert "unknown field" in found["spec.components[0].properties.memorylimit"]


def test_missing_required_fields() -> None:
    found = problems("apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata: {name: a}\nspec: {components: []}")
    assert "at least 1" in found["spec.components"]
    found = problems(MINIMAL.replace("{moduleURL: web.wasm}", "{}"))
    assert found["spec.components[0].properties.moduleURL"] == "required field is missing"


def test_yaml_syntax_error_names_line() -> None:
    found = problems("apiVersion: [unclosed\n")
    (where,) = found
    assert where.startswith("line ")


def test_duplicate_component_names() -> None:
    text = MINIMAL + "    - name: web\n      type: wasm\n      properties: {moduleURL: b.wasm}\n"
    assert "used twice" in problems(text)["spec.components"]


@pytest.mark.parametrize(
    ("route", "message"),
    [("api", "starting with '/'"), ("/a/../b", "normalised"), ("/a?x", "starting with '/'")],
)
def test_bad_routes(route: str, message: str) -> None:
    text = MINIMAL.replace("{moduleURL: web.wasm}", f"{{moduleURL: web.wasm, route: '{route}'}}")
    assert message in problems(text)["spec.components[0].properties.route"]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read file"):
        load_manifest(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("128Mi", 128 << 20), ("1Gi", 1 << 30), ("64M", 64_000_000), ("1.5Ki", 1536), ("1e3", 1000),
     ("100", 100), (4096, 4096), ("0.5k", 500)],
)
def test_quantities(text: str | int, expected: int) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize("text", ["", "Mi", "12x8", "-1Mi", "1.2.3"])
def test_bad_quantities(text: str) -> None:
    with pytest.raises(ValueError, match="expected"):
        parse_quantity(text)


@pytest.mark.parametrize(("text", "expected"), [("500ms", 0.5), ("30s", 30.0), ("2m", 120.0), (3, 3.0), ("1.5", 1.5)])
def test_durations(text: str | int, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["0s", "soon", "-1s", "1d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="expected"):
        parse_duration(text)


def test_route_defaults() -> None:
    (spec,) = parse_manifest(MINIMAL)
    assert assign_routes([spec])[0].route == "/"
    other = dataclasses.replace(spec, name="api")
    routed = assign_routes([spec, other])
    assert [s.route for s in routed] == ["/web", "/api"]


def test_route_conflict_is_refused() -> None:
    (spec,) = parse_manifest(MINIMAL)
    a = dataclasses.replace(spec, route="/x")
    b = dataclasses.replace(spec, name="other", route="/x")
    with pytest.raises(ManifestError, match="both claim route /x"):
        assign_routes([a, b])
    # The same route on different hosts is fine.
    assign_routes([a, dataclasses.replace(b, host="b.example.com")])
