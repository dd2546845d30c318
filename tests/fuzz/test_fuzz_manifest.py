"""Fuzzing the manifest loader: YAML and JSON from a tenant the host does not trust.

What must hold for any input: ``parse_manifest`` returns components or raises
``ManifestError``, never another exception; the error's text is bounded
(``MESSAGE_BOUND``) whatever the input stands for; each example answers
within the fuzz deadline. And the same manifest written as YAML and as JSON
(which PyYAML reads as YAML) gives the same result.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from hypothesis import example, given
from hypothesis import strategies as st
from tests.fuzz._fuzz import fuzz

from wasmlet import ManifestError
from wasmlet.plan import ComponentSpec, parse_manifest, parse_manifest_bytes

MESSAGE_BOUND = 32 * 1024  # MAX_PROBLEMS lines of a clipped path and message


def outcome(text: str) -> tuple[str, object]:
    try:
        specs = parse_manifest(text, source="fuzz.yaml")
    except ManifestError as exc:
        message = str(exc)
        assert len(message) <= MESSAGE_BOUND, len(message)
        assert message.startswith("fuzz.yaml: invalid manifest")
        return "error", exc.problems
    assert specs and all(isinstance(spec, ComponentSpec) for spec in specs)
    for spec in specs:
        spec.to_json().encode("utf-8")  # what the state stores: no lone surrogate, nothing unencodable
    return "ok", specs


# Plain text and bytes ---------------------------------------------------------------------------------
@fuzz(300)
@given(st.text(max_size=400))
@example("kind: " + "[" * 5000)
@example("a: &a [*a]")
@example("a: 1" + ":1" * 20000)  # YAML 1.1 base-60 integer: quadratic to compute
@example("a: " + "9" * 5000)  # int() refuses more than 4300 digits with a plain ValueError
@example("a: 2001-02-31")  # the timestamp constructor's ValueError
@example('a: "\\ud83d"')  # half a surrogate pair
@example("!!int ")  # found by this test: IndexError inside PyYAML's int constructor
@example("!!bool x")  # KeyError
@example("!!timestamp x")  # AttributeError
def test_any_text(text: str) -> None:
    outcome(text)


@fuzz(200)
@given(st.binary(max_size=300))
@example(b"kind: Application\n\xff\xfe")
@example(b"\xef\xbb\xbfkind: Application\n")  # a UTF-8 byte order mark is fine
def test_any_bytes(data: bytes) -> None:
    try:
        parse_manifest_bytes(data, source="fuzz.yaml")
    except ManifestError as exc:
        assert len(str(exc)) <= MESSAGE_BOUND


# YAML made of YAML's own syntax: anchors, aliases, merges, tags, flow and block -------------------------
TOKENS = [
    "apiVersion: core.oam.dev/v1beta1\n", "kind: Application\n", "metadata: {name: app}\n", "spec:\n",
    "  components:\n", "    - name: web\n", "      type: wasm\n", "      properties: {moduleURL: web.wasm}\n",
    "&a ", "&b ", "*a", "*b", "<<: ", "[", "]", "{", "}", ", ", "- ", ": ", "? ", "\n", "  ", "\t",
    "---\n", "...\n", "x", "'q'", '"\\ud83d\\ude00"', '"\\ud800"', "1:2:3", "0x1f", "0o17", "1e400", ".nan",
    ".inf", "2001-02-31", "2001-01-01", "yes", "~", "null", "|\n  text\n", ">-\n  folded\n", "# c\n",
    "!!binary aGk=", "!!int ", "!!str ", "!!set ", "!!omap ", "!!python/object:os.system ", "!<tag:x> ",
    "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "=", "memoryLimit: ", "timeout: ", "rateLimit: {perClient: .inf}",
]


@fuzz(400)
@given(st.lists(st.sampled_from(TOKENS), max_size=60).map("".join))
def test_yaml_syntax_soup(text: str) -> None:
    outcome(text)


# Alias bombs of every shape ---------------------------------------------------------------------------
@st.composite
def alias_bombs(draw: st.DrawFn) -> tuple[str, int]:
    levels = draw(st.integers(1, 10))
    fanout = draw(st.integers(1, 12))
    leaf = draw(st.sampled_from(['"lol"', '"' + "x" * 200 + '"', "{name: A, value: v}", "[]"]))
    lines = [f"a0: &a0 [{', '.join([leaf] * fanout)}]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * fanout)}]" for n in range(1, levels)]
    where = draw(st.sampled_from(["kind: *a{n}", "metadata: {{name: app, labels: *a{n}}}",
                                  "spec: {{components: *a{n}}}", "x-extra: *a{n}"]))
    text = "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata: {name: app}\n" + "\n".join(lines) + "\n"
    text += where.format(n=levels - 1) + "\n"
    return text, fanout ** levels


@fuzz(150)
@given(alias_bombs())
def test_alias_bombs_are_refused_early(bomb: tuple[str, int]) -> None:
    text, leaves = bomb
    kind, _ = outcome(text)
    if leaves > 200_000:  # more than MAX_NODES nodes once expanded
        assert kind == "error"


# The same manifest as YAML and as JSON --------------------------------------------------------------
NAMES = st.one_of(st.sampled_from(["web", "api", "a-b", "x1"]), st.text(max_size=12))
TEXT = st.text(max_size=24)  # any Unicode: JSON escapes what is outside ASCII, astral characters as pairs
NUMBER = st.one_of(st.integers(-(10**20), 10**20), st.floats(allow_nan=False, allow_infinity=False))
QUANTITY = st.one_of(st.sampled_from(["128Mi", "1Gi", "64Ki", "1e6", "0", "12x8", "8Ei", "1e999"]), NUMBER, TEXT)
DURATION = st.one_of(st.sampled_from(["500ms", "30s", "2m", "1h", "0s", "9000h", "forever"]), NUMBER, TEXT)
PATTERNS = st.lists(st.one_of(
    st.sampled_from(["https://api.example.com", "*://*:*", "http://10.0.0.0/8:*", "https://*.example.com",
                     "http://[::1]:8080", "postgres://db.internal", "mqtt://x", "ftp://x", "http://x:1..2"]),
    TEXT), max_size=3)
JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-(10**9), 10**9) | TEXT,
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                       max_leaves=8)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, JSONISH)


PROPERTIES = st.fixed_dictionaries({"moduleURL": maybe(st.sampled_from(["web.wasm", "oci://r.test/a:1", ""]))},
                                   optional={
    "memoryLimit": maybe(QUANTITY), "maxBodySize": maybe(QUANTITY), "timeout": maybe(DURATION),
    "route": maybe(st.sampled_from(["/", "/api", "/a/../b", "//x", "api", "/x/"])),
    "host": maybe(st.sampled_from(["api.example.com", "*.example.com", "x:8080", "bad host", "a." * 200])),
    "environment": maybe(st.lists(st.fixed_dictionaries({"name": maybe(st.sampled_from(["A", "1A", "A_B"])),
                                                         "value": maybe(TEXT)}), max_size=3)),
    "capabilities": maybe(st.fixed_dictionaries({}, optional={"allowedOutboundHosts": maybe(PATTERNS)})),
    "rateLimit": maybe(st.fixed_dictionaries({}, optional={"perClient": maybe(NUMBER), "perApp": maybe(NUMBER)})),
    "concurrency": maybe(st.fixed_dictionaries({}, optional={"max": maybe(NUMBER), "queue": maybe(NUMBER)})),
    "entrypoint": maybe(TEXT), "argv": maybe(TEXT), "unknownField": JSONISH,
})
COMPONENT = st.fixed_dictionaries({"name": maybe(NAMES), "type": maybe(st.sampled_from(["wasm", "docker"])),
                                   "properties": maybe(PROPERTIES)})
MANIFESTS = st.fixed_dictionaries({
    "apiVersion": maybe(st.sampled_from(["core.oam.dev/v1beta1", "core.oam.dev/v1alpha2"])),
    "kind": maybe(st.sampled_from(["Application", "Node"])),
    "metadata": maybe(st.fixed_dictionaries({"name": maybe(NAMES)})),
    "spec": maybe(st.fixed_dictionaries({"components": maybe(st.lists(COMPONENT, max_size=3))})),
}, optional={"policies": JSONISH})


@fuzz(150)
@given(MANIFESTS)
@example({"apiVersion": "core.oam.dev/v1beta1", "kind": "Application", "metadata": {"name": "app"},
          "spec": {"components": [{"name": "web", "type": "wasm", "properties": {
              "moduleURL": "web.wasm", "environment": [{"name": "A", "value": "\U0001f600"}]}}]}})
@example({"apiVersion": "core.oam.dev/v1beta1", "kind": "Application", "metadata": {"name": "web"},
          "spec": {"components": [{"name": "web", "type": "wasm", "properties": {"\x85": None}}]}})
@example({"apiVersion": "core.oam.dev/v1beta1", "kind": "Application", "metadata": {"name": "web"},
          "spec": {"components": [{"name": "web", "type": "wasm", "properties": {
              "moduleURL": "web.wasm", "memoryLimit": 1e-05, "timeout": 1e3}}]}})  # found by bench/fuzz.py
@example({"apiVersion": "core.oam.dev/v1beta1", "kind": "Application", "metadata": {"name": "web"},
          "spec": {"components": [{"name": "web", "type": "wasm", "properties": {
              "moduleURL": "web.wasm", "memoryLimit": "1e999"}}]}})  # found by bench/fuzz.py in the first fix
def test_yaml_and_json_agree(manifest: dict[str, Any]) -> None:
    # allow_unicode=False: PyYAML's emitter writes a raw NEL (U+0085) into a single-quoted scalar, which its
    # own reader folds into a space (YAML 1.1 counts NEL as a line break); escaped, it round-trips.
    as_yaml = outcome(yaml.safe_dump(manifest, sort_keys=False))
    as_json = outcome(json.dumps(manifest))  # ensure_ascii: astral characters become \\ud83d\\ude00
    assert as_yaml == as_json
