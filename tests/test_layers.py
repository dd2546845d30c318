"""The architecture, checked: imports only point down, and the plan is a pure leaf.

wasmlet is two kinds of process talking through one document, the plan. The
control side (control, and the registry and signing it uses) decides what to
serve; the worker side (engine, guest, server, telemetry) serves it; both read
``wasmlet.plan``. The layers, lowest first::

   -1  _early, _lazy                           the worker zygote's head start, with os alone;
                                               packages' names loaded on first use (PEP 562)
    0  _errors, _files, _logging, _multiproc,  shared basics (_prefork: the supervisor's side
       _prefork                                of the worker zygote, stdlib only)
    1  plan                                    what both sides share (pure)
    2  telemetry, signing                      metrics and traces; module signatures
    3  engine                                  wasmtime, the precompiled cache, module bytes
    4  guest, registry                         guest ABIs and their sandbox; where modules come from
    5  server                                  HTTP, admission, workers and their supervisor
    6  control                                 prepare, state, the admin API
    7  lattice                                 past one machine: state, membership, placement on NATS
    8  _serve, _run, _top_view, _new, _k8s,    the commands, which join the two sides
       _cli, cli                               (cli: the thin ``main`` group; _cli: its commands)

A module imports from its own package or a lower layer, never a higher one;
the worker side never imports the control side, registry or signing; and no
module reaches into another package's private module.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "wasmlet"

LAYER = {
    "_errors": 0, "_files": 0, "_logging": 0, "_multiproc": 0, "_prefork": 0, "_early": -1, "_lazy": -1,
    "plan": 1,
    "telemetry": 2, "signing": 2,
    "engine": 3,
    "guest": 4, "registry": 4,
    "server": 5,
    "control": 6,
    "lattice": 7,
    "_serve": 8, "_run": 8, "_top_view": 8, "_new": 8, "_k8s": 8, "_cli": 8, "cli": 8, "_launch": 8, "__main__": 8,
    "__init__": 8,
}
TOP = 8
WORKER_SIDE = {"engine", "guest", "server", "telemetry"}
CONTROL_ONLY = {"control", "registry", "signing", "lattice"}
PLAN_MAY_IMPORT = {"pydantic", "yaml"}


def _unit(path: Path) -> str:
    """The top-level unit a file belongs to: its package, or the root module's name."""
    relative = path.relative_to(SRC)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imports(path: Path) -> list[tuple[int, list[str], str]]:
    """Every import in a file (module level or not) as (line, wasmlet path parts, the source text).

    Absolute ``wasmlet.x.y`` and relative ``..x.y`` both come out as ``["x", "y"]``;
    an import of a third-party module comes out as ``["<ext>", name]``.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = list(path.relative_to(SRC).parent.parts)
    found: list[tuple[int, list[str], str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                found.append((node.lineno, parts[1:] if parts[0] == "wasmlet" else ["<ext>", parts[0]],
                              f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            module = (node.module or "").split(".") if node.module else []
            text = f"from {'.' * node.level}{node.module or ''} import ..."
            if node.level == 0:
                if module[0] == "wasmlet":
                    found.append((node.lineno, module[1:], text))
                elif module[0] != "__future__":
                    found.append((node.lineno, ["<ext>", module[0]], text))
                continue
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            target = base + module
            if not module:  # from . import _x (a module), or a name from the package's __init__
                for alias in node.names:
                    where = SRC.joinpath(*base, alias.name)
                    is_module = where.is_dir() or where.with_suffix(".py").exists()
                    found.append((node.lineno, base + ([alias.name] if is_module else ["__init__"]), text))
            else:
                found.append((node.lineno, target, text))
    return found


FILES = sorted(SRC.rglob("*.py"))


def _violations(check: object) -> list[str]:
    out = []
    for path in FILES:
        unit = _unit(path)
        for line, target, text in _imports(path):
            problem = check(unit, target)  # type: ignore[operator]
            if problem:
                out.append(f"{path.relative_to(SRC.parent)}:{line}: {text}: {problem}")
    return out


def test_every_unit_has_a_layer() -> None:
    units = {_unit(path) for path in FILES}
    assert units <= LAYER.keys(), f"add {sorted(units - LAYER.keys())} to LAYER (and to the docstring)"


def test_imports_point_down() -> None:
    def check(unit: str, target: list[str]) -> str:
        if not target or target[0] == "<ext>" or target[0] == unit:
            return ""
        to = target[0]
        if to not in LAYER or unit not in LAYER:
            return f"no layer for {to if to not in LAYER else unit!r}"
        up = LAYER[to] > LAYER[unit] or (LAYER[to] == LAYER[unit] < TOP)  # the commands may share helpers
        return f"{unit} (layer {LAYER[unit]}) imports {to} (layer {LAYER[to]})" if up else ""

    assert _violations(check) == []


def test_the_worker_side_never_imports_the_control_side() -> None:
    def check(unit: str, target: list[str]) -> str:
        if unit in WORKER_SIDE and target and target[0] in CONTROL_ONLY:
            return f"the worker side ({unit}) imports {target[0]}"
        return ""

    assert _violations(check) == []


def test_no_import_reaches_into_another_packages_private_module() -> None:
    def check(unit: str, target: list[str]) -> str:
        if not target or target[0] == "<ext>" or target[0] == unit:
            return ""
        private = [part for part in target[1:] if part.startswith("_")]
        return f"reaches into {'.'.join(target)}" if private else ""

    assert _violations(check) == []


def test_plan_imports_only_pydantic_yaml_the_standard_library_errors_and_lazy_names() -> None:
    stdlib = sys.stdlib_module_names

    def check(unit: str, target: list[str]) -> str:
        if unit != "plan" or not target:
            return ""
        if target[0] == "<ext>":
            name = target[1]
            return "" if name in stdlib or name in PLAN_MAY_IMPORT else f"plan imports {name}"
        return "" if target[0] in ("plan", "_errors", "_lazy") else f"plan imports wasmlet.{'.'.join(target)}"

    assert _violations(check) == []


@pytest.mark.parametrize("module", ["wasmlet", "wasmlet.plan"])
def test_importing_the_plan_loads_no_engine_http_client_or_cryptography(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'wasmtime', 'httpx', 'cryptography', "
        "'uvicorn', 'prometheus_client', 'opentelemetry'})\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == ""


def test_the_checker_sees_a_violation() -> None:
    """The rules above would catch a bad import (so they cannot pass vacuously)."""
    sample = SRC / "guest" / "_handlers.py"
    targets = [target for _, target, _ in _imports(sample)]
    assert ["plan"] in targets  # relative ``from ..plan import`` resolved
    assert any(t[:1] == ["<ext>"] for t in targets)
