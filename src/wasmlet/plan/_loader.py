"""Reading manifests from YAML (or JSON) into validated, plain ``ComponentSpec`` values.

A manifest comes from a tenant the host need not trust (``POST /v1/deploy``),
so every step is bounded: at most ``MAX_MANIFEST_BYTES`` of UTF-8, YAML read
by the bounded loader of ``_yaml`` (alias bombs, deep nesting, duplicate keys
and costly numbers refused), and error messages that quote a value quote
``_yaml.short_repr`` of it: the first ``MAX_PROBLEMS`` problems, each at most
``MAX_MESSAGE`` characters, never the value itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .._errors import ManifestError
from ._manifest import Application
from ._spec import ComponentSpec
from ._traits import placement_from_traits
from ._yaml import load_all, short_repr

__all__ = [
    "MAX_MANIFEST_BYTES",
    "assign_routes",
    "decode_manifest",
    "field_path",
    "load_manifest",
    "parse_manifest",
    "parse_manifest_bytes",
]

MAX_MANIFEST_BYTES = 1 << 20
MAX_PROBLEMS = 50
MAX_MESSAGE = 300
_MAX_FIELD = 64  # characters of one key in a field path
_MAX_PATH = 200  # characters of a field path (nesting is bounded, but 64 levels of 64 are many)


def field_path(loc: Sequence[int | str]) -> str:
    """Spell a pydantic location the way a user reads YAML: ``a.b[0].c``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _clip(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _problems(exc: ValidationError, prefix: str) -> list[tuple[str, str]]:
    problems = []
    for error in exc.errors(include_url=False)[:MAX_PROBLEMS + 1]:
        loc = [p if isinstance(p, int) else _clip(str(p), _MAX_FIELD) for p in error["loc"]
               if not (isinstance(p, str) and p.startswith("function-"))]
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "literal_error":
            # Never the whole input: through YAML aliases it can stand for millions of nodes.
            message = f"expected {error['ctx']['expected']}, got {short_repr(error.get('input'))}"
        elif error["type"] == "extra_forbidden":
            message = "unknown field (check its spelling and case)"
        elif error["type"] == "missing":
            message = "required field is missing"
        problems.append((_clip(prefix + field_path(loc), _MAX_PATH), _clip(message)))
    return problems


def decode_manifest(data: bytes, source: str = "<bytes>") -> str:
    """The text of a manifest received as bytes; raise ``ManifestError`` if it is too large or not UTF-8.

    The admin API and the CLI both read manifests through this, so both refuse
    the same bytes with the same message.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(source, [("", f"larger than {MAX_MANIFEST_BYTES} bytes")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ManifestError(source, [(
            f"line {line}", f"expected UTF-8 text; byte {exc.start} ({data[exc.start]:#04x}) is not UTF-8",
        )]) from exc


def parse_manifest_bytes(data: bytes, source: str = "<bytes>", base_dir: str = ".") -> list[ComponentSpec]:
    """``parse_manifest`` for bytes: ``decode_manifest``, then parse."""
    return parse_manifest(decode_manifest(data, source), source, base_dir)


def parse_manifest(text: str, source: str = "<string>", base_dir: str = ".") -> list[ComponentSpec]:
    """Validate manifest text and return its components.

    The text may hold several YAML documents (``---``), as the seed's does;
    documents of other kinds (``Node``, ``PriorityClass``, ``NetworkPolicy``)
    belong to Kubernetes and are skipped. JSON is read as the YAML it also is.
    Raises ``ManifestError`` listing every problem (up to ``MAX_PROBLEMS``)
    with its field path; nothing is returned unless all is valid.
    """
    if len(text) > MAX_MANIFEST_BYTES:
        raise ManifestError(source, [("", f"larger than {MAX_MANIFEST_BYTES} characters")])
    try:
        documents = [d for d in load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(document)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestError(source, [(where, _clip(f"not valid YAML: {problem}"))]) from exc
    multiple = len(documents) > 1
    problems: list[tuple[str, str]] = []
    apps: list[Application] = []
    for index, document in enumerate(documents):
        prefix = f"(document {index + 1}) " if multiple else ""
        if not isinstance(document, dict):
            problems.append((prefix.strip(), "expected a mapping with apiVersion, kind, metadata and spec"))
            continue
        if multiple and document.get("kind") != "Application":
            continue  # a Kubernetes object for the cluster, not for the runtime
        try:
            apps.append(Application.model_validate(document))
        except ValidationError as exc:
            problems.extend(_problems(exc, prefix))
        if len(problems) > MAX_PROBLEMS:
            break
    if not problems and not apps:
        problems.append(("kind", "expected at least one document of kind Application"))
    if problems:
        if len(problems) > MAX_PROBLEMS:
            problems = [*problems[:MAX_PROBLEMS], ("", "(more problems not shown)")]
        raise ManifestError(source, problems)
    return [_to_spec(app, component, source, base_dir) for app in apps for component in app.spec.components]


def load_manifest(path: str | Path) -> list[ComponentSpec]:
    """Read and validate one manifest file (at most ``MAX_MANIFEST_BYTES``, UTF-8)."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ManifestError(str(path), [("", f"cannot read file: {exc.strerror or exc}")]) from exc
    return parse_manifest_bytes(data, source=str(path), base_dir=str(path.resolve().parent))


def _to_spec(app: Application, component: Any, source: str, base_dir: str) -> ComponentSpec:
    props = component.properties
    return ComponentSpec(
        app=app.metadata.name,
        name=component.name,
        module_url=props.module_url,
        module_digest=props.module_digest,
        memory_limit=props.memory_limit,
        environment=tuple((e.name, e.value) for e in props.environment),
        route=props.route,
        host=props.host,
        timeout=props.timeout,
        entrypoint=props.entrypoint,
        argv=props.argv,
        max_body_size=props.max_body_size,
        max_response_size=props.max_response_size,
        source=source,
        base_dir=base_dir,
        capabilities=props.capabilities,
        rate_limit=props.rate_limit,
        concurrency=props.concurrency,
        placement=placement_from_traits(trait.properties for trait in component.traits),
    )


def assign_routes(specs: Iterable[ComponentSpec]) -> list[ComponentSpec]:
    """Give every component a route and refuse two components on one route.

    A component without a route is served at ``/`` when it is the only one on
    the host, and at ``/<component name>`` otherwise (the rule of the issue,
    close to Spin's one-component default).

    A clash is reported against the manifest of the component that comes later
    (the one being added), with its index there, and names where the other one is.
    """
    specs = list(specs)
    routed: list[ComponentSpec] = []
    for spec in specs:
        route = spec.route or ("/" if len(specs) == 1 else f"/{spec.name}")
        routed.append(dataclasses.replace(spec, route=route))
    # A component's index in its manifest: the loader yields one manifest's components
    # together and in order, so it is the component's place in that run of the list.
    index: list[int] = []
    for i, spec in enumerate(routed):
        previous = routed[i - 1] if i else None
        same_run = previous is not None and (previous.source, previous.app) == (spec.source, spec.app)
        index.append(index[-1] + 1 if same_run else 0)
    seen: dict[tuple[str | None, str], int] = {}
    names: dict[str, int] = {}
    problems: list[tuple[str, str, str]] = []  # (source, field path, message)

    def where(j: int, source: str) -> str:
        # The other one's file, not its index: it may be a deployed component that is no
        # longer in that file, so its place in this list says nothing about the file.
        other = routed[j]
        return "also in this manifest" if other.source == source else f"from {other.source}"

    for i, spec in enumerate(routed):
        assert spec.route is not None
        component = f"spec.components[{index[i]}]"
        j = names.get(spec.qualified_name)
        if j is not None:
            problems.append((spec.source, f"{component}.name",
                             f"component {spec.qualified_name} is declared twice ({where(j, spec.source)})"))
        names[spec.qualified_name] = i
        key = (spec.host, spec.route)
        j = seen.get(key)
        if j is not None:
            on_host = f" on host {spec.host}" if spec.host else ""
            problems.append((spec.source, f"{component}.properties.route",
                             f"component {spec.qualified_name} and {routed[j].qualified_name} "
                             f"({where(j, spec.source)}) both claim route {spec.route}{on_host}; "
                             "give one of them another route (or a host)"))
        seen[key] = i
    if problems:
        source = problems[0][0]
        raise ManifestError(source, [(path if src == source else f"{src}: {path}", message)
                                     for src, path, message in problems])
    return routed
