"""The manifest loader against hostile YAML: bombs, recursion, nesting, duplicate keys, bad bytes.

Each test is an attack of issue 14 (or one the fuzzing found) on the pure
loader; ``tests/security/test_parser_attacks.py`` sends the same to a real host.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from wasmlet import ManifestError
from wasmlet.plan import decode_manifest, load_manifest, parse_manifest, parse_manifest_bytes

HEAD = "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata: {name: app}\n"
MINIMAL = HEAD + """spec:
  components:
    - name: web
      type: wasm
      properties: {moduleURL: web.wasm%s}
"""


def billion_laughs(levels: int = 8, key: str = "kind") -> str:
    """The manifest of issue 14: nine 'lol's, nine references to those, ..., eight levels, then ``kind: *a7``."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{n}: &a{n} [{','.join([f'*a{n - 1}'] * 9)}]" for n in range(1, levels)]
    return "apiVersion: core.oam.dev/v1beta1\n" + "\n".join(lines) + f"\n{key}: *a{levels - 1}\n" \
        "metadata: {name: x}\nspec: {components: []}\n"


def refused(text: str) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, source="m.yaml")
    return info.value


def test_the_issues_yaml_bomb_is_refused_at_once_with_a_short_message() -> None:
    text = billion_laughs()
    assert len(text) < 600  # 9**8 = 43 million 'lol's in a few hundred bytes
    tracemalloc.start()
    started = time.monotonic()
    error = refused(text)
    elapsed = time.monotonic() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"bomb refused in {elapsed * 1000:.1f} ms, peak {peak / 1e6:.1f} MB, message {len(str(error))} bytes")
    assert "aliases are expanded" in str(error)
    assert len(str(error)) < 1000  # was 312 MB
    assert elapsed < 3  # was 9.3 s behind the admin API; generous for a shared machine
    assert peak < 50e6  # was ~1 GB in the supervisor


@pytest.mark.parametrize("key", ["kind", "x-extension", "spec"])
def test_a_smaller_bomb_below_the_node_limit_still_gives_a_short_message(key: str) -> None:
    error = refused(billion_laughs(levels=4, key=key))  # 9**4 = 6,561 nodes: under the bound, so validated
    assert len(str(error)) < 2000


def test_a_bomb_of_long_strings_is_bounded_by_characters() -> None:
    big = "x" * 100_000
    text = HEAD + f"big: &big {big}\nrefs: [{', '.join(['*big'] * 100)}]\n"
    assert "characters once its aliases are expanded" in str(refused(text))


def test_aliases_within_bounds_still_work() -> None:
    text = HEAD + """x-shared-env: &env [{name: A, value: "1"}]
spec:
  components:
    - name: web
      type: wasm
      properties: {moduleURL: web.wasm, environment: *env}
"""
    (spec,) = parse_manifest(text)
    assert spec.environment == (("A", "1"),)


def test_a_recursive_alias_is_refused() -> None:
    assert "recursive" in str(refused(HEAD + "spec: &s {components: [*s]}\n"))


@pytest.mark.parametrize("text", [
    HEAD + "spec: " + "[" * 5000 + "]" * 5000,
    HEAD + "spec: " + "{a: " * 500 + "1" + "}" * 500,
    HEAD + "spec:\n" + "".join("  " * n + "- \n" for n in range(1, 200)),
    json.dumps({"apiVersion": "core.oam.dev/v1beta1"})[:-1] + ', "spec": ' + "[" * 3000 + "]" * 3000 + "}",
])
def test_deep_nesting_is_a_manifest_error_not_a_recursion_error(text: str) -> None:
    error = refused(text)  # RecursionError before: a 500 from the admin API
    assert "nested more than 64 levels deep" in str(error)


def test_a_chain_of_merge_keys_is_bounded_too() -> None:
    # The constructor flattens '<<' merges recursively, here from the last: a chain of 80 would be 80 frames;
    # one of 1,000 would need a million nodes, which the composer refuses first.
    defs = ", ".join(["&a0 {k: 1}"] + [f"&a{n} {{<<: *a{n - 1}}}" for n in range(1, 80)])
    text = HEAD + f"x-defs: [{defs}]\nx-last: {{<<: *a79}}\n"
    assert "merge keys (<<) chained more than 64 deep" in str(refused(text))


def test_sixty_levels_are_fine() -> None:
    text = MINIMAL % (", x: " + "[" * 55 + "]" * 55)
    assert "unknown field" in str(refused(text))  # read, then refused by the schema only


def test_duplicate_keys_name_the_key_and_both_lines() -> None:
    text = MINIMAL.replace("      type: wasm\n", "      type: wasm\n      type: docker\n")
    error = refused(text)
    assert error.problems == [("line 8, column 7", "not valid YAML: duplicate key 'type' (first at line 7)")]
    flow = refused(MINIMAL % ", memoryLimit: 1Gi, memoryLimit: 2Gi")
    assert "duplicate key 'memoryLimit'" in str(flow)
    json_text = '{"apiVersion": "core.oam.dev/v1beta1", "kind": "Application", "kind": "Node"}'
    assert "duplicate key 'kind'" in str(refused(json_text))


def test_merge_keys_may_still_be_overridden() -> None:
    text = HEAD + """x-defaults: &defaults {moduleURL: web.wasm, timeout: 5s}
spec:
  components:
    - name: web
      type: wasm
      properties:
        <<: *defaults
        timeout: 2s
"""
    (spec,) = parse_manifest(text)
    assert spec.timeout == 2.0


@pytest.mark.parametrize(("value", "message"), [
    ("1" + ":1" * 20_000, "a number longer than 64 characters"),  # base 60: quadratic to compute
    ("9" * 5000, "a number longer than 64 characters"),  # int() refuses more than 4300 digits
    ("2001-02-31", "cannot read this value: day is out of range for month"),
    ("!!int ''", "cannot read this value: not a valid int"),
    ("!!bool maybe", "cannot read this value: not a valid bool"),
    ("!!timestamp x", "cannot read this value: not a valid timestamp"),
    ('"\\ud83d"', "half of a UTF-16 surrogate pair"),
])
def test_values_pyyaml_cannot_build_are_manifest_errors(value: str, message: str) -> None:
    error = refused(MINIMAL % f", memoryLimit: {value}")
    assert message in str(error)
    assert error.problems[0][0].startswith("line 8, column ")


def test_json_astral_characters_arrive_whole() -> None:
    text = json.dumps({"apiVersion": "core.oam.dev/v1beta1", "kind": "Application", "metadata": {"name": "app"},
                       "spec": {"components": [{"name": "web", "type": "wasm", "properties": {
                           "moduleURL": "web.wasm", "environment": [{"name": "FACE", "value": "\U0001f600"}]}}]}})
    assert "\\ud83d\\ude00" in text
    (spec,) = parse_manifest(text)
    assert spec.environment == (("FACE", "\U0001f600"),)
    spec.to_json().encode()  # lone surrogates could not be encoded when the state was written


def test_json_numbers_with_an_exponent_are_numbers() -> None:
    # json.dumps writes 1e-05 and 1e+16; YAML 1.1 read both as strings (it wants a '.' and a signed exponent).
    text = ('{"apiVersion": "core.oam.dev/v1beta1", "kind": "Application", "metadata": {"name": "app"}, '
            '"spec": {"components": [{"name": "web", "type": "wasm", "properties": {"moduleURL": "web.wasm", '
            '"memoryLimit": 1.5e8, "timeout": 2.5e1, "rateLimit": {"perClient": 1e2}}}]}}')
    assert json.loads(text)["spec"]["components"][0]["properties"]["memoryLimit"] == 150_000_000
    (spec,) = parse_manifest(text)
    assert (spec.memory_limit, spec.timeout, spec.rate_limit.per_client) == (150_000_000, 25.0, 100.0)
    # Block YAML keeps YAML 1.1's rules, on which PyYAML's writer relies: it leaves the string 1e5 unquoted.
    document = yaml.safe_load(MINIMAL % ', environment: [{name: A, value: "1e5"}]')
    (block,) = parse_manifest(yaml.safe_dump(document, default_flow_style=False))
    assert "value: 1e5" in yaml.safe_dump(document) and block.environment == (("A", "1e5"),)


def test_values_are_truncated_in_every_message() -> None:
    huge = "x" * 200_000
    for text in (HEAD.replace("kind: Application", f"kind: {huge}") + "spec: {components: []}\n",
                 MINIMAL % f", memoryLimit: {huge}", MINIMAL % f", {huge}: 1",
                 MINIMAL % f", capabilities: {{allowedOutboundHosts: [{huge}]}}"):
        assert len(str(refused(text))) < 1500


def test_the_number_of_problems_is_capped() -> None:
    components = "".join(f"    - {{name: c{n}, type: docker, properties: {{}}}}\n" for n in range(300))
    error = refused(HEAD + "spec:\n  components:\n" + components)
    assert len(error.problems) == 51 and error.problems[-1] == ("", "(more problems not shown)")
    assert len(str(error)) < 20_000


@pytest.mark.parametrize(("field", "value"), [
    ("timeout", ".nan"), ("timeout", ".inf"), ("timeout", "9000h"), ("timeout", '"' + "9" * 400 + 's"'),
    ("memoryLimit", "1e999999999"), ("memoryLimit", "1e99999"), ("memoryLimit", "8Ei"),
    ("rateLimit", "{perClient: .inf}"), ("rateLimit", "{perApp: .nan}"), ("rateLimit", "{perClientBurst: 1e300}"),
    ("environment", '[{name: "A\\n", value: x}]'), ("host", '"example.com\\n"'),
    ("moduleDigest", '"sha256:' + "a" * 64 + '\\n"'),
    ("route", "/" + "a" * 3000),  # quoted whole by route conflicts
])
def test_numbers_and_names_out_of_range_are_refused(field: str, value: str) -> None:
    # Each was accepted (nan/inf timeouts and rates, 100,000-digit memory limits, a trailing newline
    # through '$'), or escaped as decimal.Overflow.
    error = refused(MINIMAL % f", {field}: {value}")
    assert error.problems[0][0].startswith(f"spec.components[0].properties.{field}")


def test_a_module_url_is_bounded() -> None:
    error = refused((MINIMAL % "").replace("web.wasm", "/" + "m" * 9000))
    assert error.problems[0][0] == "spec.components[0].properties.moduleURL"


# Bytes: the admin API and the CLI read through the same function ------------------------------------
def test_non_utf8_is_refused_naming_line_and_byte() -> None:
    data = (MINIMAL % "").encode().replace(b"name: web", b"name: w\xffb")
    with pytest.raises(ManifestError) as info:
        decode_manifest(data, "m.yaml")
    offset = data.index(b"\xff")
    assert info.value.problems == [("line 6", f"expected UTF-8 text; byte {offset} (0xff) is not UTF-8")]
    with pytest.raises(ManifestError) as again:
        parse_manifest_bytes(data, "m.yaml")
    assert again.value.problems == info.value.problems


def test_load_manifest_refuses_non_utf8_the_same_way(tmp_path: Path) -> None:
    data = (MINIMAL % "").encode().replace(b"name: web", b"name: w\xffb")
    path = tmp_path / "m.yaml"
    path.write_bytes(data)
    with pytest.raises(ManifestError) as from_file:
        load_manifest(path)
    with pytest.raises(ManifestError) as from_bytes:
        decode_manifest(data, str(path))
    assert str(from_file.value) == str(from_bytes.value)


def test_a_manifest_larger_than_the_cap_is_refused_without_reading_it_all() -> None:
    with pytest.raises(ManifestError, match="larger than 1048576 bytes"):
        load_manifest("/dev/zero")  # read until memory ran out before
    with pytest.raises(ManifestError, match="larger than 1048576 bytes"):
        decode_manifest(b"#" * (1 << 20 | 1))
