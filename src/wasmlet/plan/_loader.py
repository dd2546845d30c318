"""Reading manifests from YAML into validated, plain ``ComponentSpec`` values."""

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

__all__ = ["assign_routes", "field_path", "load_manifest", "parse_manifest"]


def field_path(loc: Sequence[int | str]) -> str:
    """Spell a pydantic location the way a user reads YAML: ``a.b[0].c``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _problems(exc: ValidationError, prefix: str) -> list[tuple[str, str]]:
    problems = []
    for error in exc.errors():
        loc = [p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "literal_error":
            message = f"expected {error['ctx']['expected']}, got {error.get('input')!r}"
        elif error["type"] == "extra_forbidden":
            message = "unknown field (check its spelling and case)"
        elif error["type"] == "missing":
            message = "required field is missing"
        problems.append((prefix + field_path(loc), message))
    return problems


def parse_manifest(text: str, source: str = "<string>", base_dir: str = ".") -> list[ComponentSpec]:
    """Validate manifest text and return its components.

    The text may hold several YAML documents (``---``), as the seed's does;
    documents of other kinds (``Node``, ``PriorityClass``, ``NetworkPolicy``)
    belong to Kubernetes and are skipped. Raises ``ManifestError`` listing every
    problem with its field path; nothing is returned unless all is valid.
    """
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(document)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestError(source, [(where, f"not valid YAML: {problem}")]) from exc
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
    if not problems and not apps:
        problems.append(("kind", "expected at least one document of kind Application"))
    if problems:
        raise ManifestError(source, problems)
    return [_to_spec(app, component, source, base_dir) for app in apps for component in app.spec.components]


def load_manifest(path: str | Path) -> list[ComponentSpec]:
    """Read and validate one manifest file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(str(path), [("", f"cannot read file: {exc.strerror or exc}")]) from exc
    except UnicodeDecodeError as exc:
        raise ManifestError(str(path), [("", "expected UTF-8 text")]) from exc
    return parse_manifest(text, source=str(path), base_dir=str(path.resolve().parent))


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
    )


def assign_routes(specs: Iterable[ComponentSpec]) -> list[ComponentSpec]:
    """Give every component a route and refuse two components on one route.

    A component without a route is served at ``/`` when it is the only one on
    the host, and at ``/<component name>`` otherwise (the rule of the issue,
    close to Spin's one-component default).
    """
    specs = list(specs)
    routed: list[ComponentSpec] = []
    for spec in specs:
        route = spec.route or ("/" if len(specs) == 1 else f"/{spec.name}")
        routed.append(dataclasses.replace(spec, route=route))
    seen: dict[tuple[str | None, str], ComponentSpec] = {}
    problems: list[str] = []
    names: dict[str, ComponentSpec] = {}
    for spec in routed:
        assert spec.route is not None
        other = names.get(spec.qualified_name)
        if other is not None:
            problems.append(f"{spec.source}: component {spec.qualified_name} is also declared in {other.source}")
        names[spec.qualified_name] = spec
        key = (spec.host, spec.route)
        other = seen.get(key)
        if other is not None:
            problems.append(
                f"{spec.source}: component {spec.qualified_name} and {other.qualified_name} "
                f"({other.source}) both claim route {spec.route}"
                + (f" on host {spec.host}" if spec.host else "")
            )
        seen[key] = spec
    if problems:
        raise ManifestError(routed[0].source, [("spec.components[].properties.route", p) for p in problems])
    return routed
