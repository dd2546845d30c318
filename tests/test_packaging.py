"""Issue 10, items 13 and 14: a LICENSE, ranges for users and a lock for CI, shell completion,
and a README that stands on its own."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from tests.cli.conftest import WASMLET

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RUNTIME = [Requirement(text) for text in PYPROJECT["project"]["dependencies"]]
LOCK = {
    Requirement(line).name.lower().replace("_", "-"): line.split("==", 1)[1].strip()
    for line in (ROOT / "requirements.lock").read_text().splitlines()
    if line.strip() and not line.startswith("#")
}


def test_license_is_the_apache_2_0_text() -> None:
    text = (ROOT / "LICENSE").read_text()
    debian = Path("/usr/share/common-licenses/Apache-2.0")
    if debian.exists():
        assert text == debian.read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert PYPROJECT["project"]["license"] == {"text": "Apache-2.0"}


@pytest.mark.parametrize("requirement", RUNTIME, ids=lambda r: r.name)
def test_runtime_dependencies_are_ranges_the_lock_satisfies(requirement: Requirement) -> None:
    specifiers = {spec.operator: Version(spec.version) for spec in requirement.specifier}
    assert set(specifiers) == {">=", "<"}, f"{requirement}: expected >=TESTED,<NEXT_MAJOR"
    locked = Version(LOCK[requirement.name.lower().replace("_", "-")])
    assert specifiers[">="] == locked, f"{requirement}: the lower bound is the version CI tests ({locked})"
    assert locked in requirement.specifier
    upper = specifiers["<"]
    assert upper == Version(str(locked.major + 1) if locked.major else "1"), f"{requirement}: up to the next major"


@pytest.mark.parametrize("name", sorted(LOCK))
def test_what_is_installed_is_what_the_lock_says(name: str) -> None:
    """`make` installs with `pip install -c requirements.lock`: the tests run on exactly these."""
    assert Version(metadata.version(name)) == Version(LOCK[name]), "run `make lock` after changing a dependency"


def test_make_installs_through_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'" in makefile
    assert re.search(r"^\$\(BIN\)/\.installed: pyproject\.toml requirements\.lock$", makefile, re.M)


def _venv_interpreter(tmp_path: Path, *overrides: str) -> str:
    """The interpreter `make venv` would create the virtualenv with (a dry run, `make -n`).

    Without a PYTHON in the environment: make would take it as an override, as it takes `PYTHON=` on
    the command line."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHON"}
    out = subprocess.run(["make", "-n", "-B", "--no-print-directory", f"VENV={tmp_path / 'venv'}", *overrides,
                          f"{tmp_path / 'venv'}/bin/.installed"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    found = re.search(r"^(\S+) -m venv ", out, re.M)
    assert found, out
    return found.group(1)


def test_make_prefers_debians_optimized_python(tmp_path: Path) -> None:
    """Debian's CPython (PGO + LTO) when it is 3.11+, else `python3`; `make PYTHON=...` overrides both
    (docs/benchmarks.md section 33: wasmlet serves ~12 % more on it than on a default source build)."""
    debian = Path("/usr/bin/python3")
    recent = debian.exists() and subprocess.run(
        [str(debian), "-c", "import sys; sys.exit(sys.version_info < (3, 11))"], timeout=30).returncode == 0
    assert _venv_interpreter(tmp_path) == ("/usr/bin/python3" if recent else "python3")
    assert _venv_interpreter(tmp_path, "PYTHON=/opt/other/python3.12") == "/opt/other/python3.12"


def test_shell_completion_works_as_the_readme_says() -> None:
    assert 'eval "$(_WASMLET_COMPLETE=bash_source .venv/bin/wasmlet)"' in (ROOT / "README.md").read_text()
    script = subprocess.run(WASMLET, env={"_WASMLET_COMPLETE": "bash_source", "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=30)
    assert "complete -o nosort -F _wasmlet_completion wasmlet" in script.stdout
    words = subprocess.run(WASMLET, env={"_WASMLET_COMPLETE": "bash_complete", "COMP_WORDS": "wasmlet ro",
                                         "COMP_CWORD": "1", "PATH": "/usr/bin:/bin"},
                           capture_output=True, text=True, timeout=30)
    assert words.stdout.split() == ["plain,rollback"]


def test_the_readme_describes_the_seed_in_its_own_words() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "../shared" not in readme and "seed-en.md" not in readme
    assert "examples/seed/app.yaml" in readme and (ROOT / "examples" / "seed" / "app.yaml").exists()
