"""``wasmlet new``: a ready app folder from a template (source, build script, prebuilt module, manifest).

Templates live in ``wasmlet/templates/<language>/``; a new language is a new
folder there. ``{{name}}`` in a template's text files becomes the app's name.
The prebuilt module is what the template's source builds to (tests check it),
so the app serves at once, with no toolchain installed.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from ._errors import ConfigError

__all__ = ["create_app", "languages"]

# The app's name is the manifest's metadata.name: an RFC 1123 label, as Kubernetes names are.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_TEXT_SUFFIXES = (".yaml", ".c", ".sh", ".md", ".txt")


def _templates() -> Traversable:
    return resources.files("wasmlet") / "templates"


def languages() -> list[str]:
    """The guest languages ``wasmlet new --lang`` knows."""
    return sorted(entry.name for entry in _templates().iterdir() if entry.is_dir() and not entry.name.startswith("_"))


def create_app(folder: Path, lang: str) -> list[Path]:
    """Create ``folder`` from the ``lang`` template; return the files written.

    Refuses a folder that exists and is not empty, and a name that is not a
    valid app name; nothing is left behind on failure (built beside, then renamed).
    """
    name = folder.resolve().name
    if not _NAME.match(name):
        raise ConfigError(
            f"NAME: the app is named after its folder, {name!r}: expected a lower-case RFC 1123 name "
            "(a-z, 0-9 and '-', starting and ending with a letter or digit, at most 63 characters), e.g. hello-app"
        )
    if lang not in languages():
        raise ConfigError(f"--lang: expected one of {', '.join(languages())}, got {lang!r}")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"{folder} already exists and is not an empty folder; choose another NAME or remove it")
    parent = folder.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=parent))
    except OSError as exc:
        raise ConfigError(f"cannot create {folder}: {exc.strerror or exc}") from exc
    try:
        written = []
        for entry in sorted(_templates().joinpath(lang).iterdir(), key=lambda e: e.name):
            if not entry.is_file() or entry.name.startswith("."):
                continue
            data = entry.read_bytes()
            if entry.name.endswith(_TEXT_SUFFIXES):
                data = data.replace(b"{{name}}", name.encode())
            target = staging / entry.name
            target.write_bytes(data)
            os.chmod(target, 0o755 if entry.name.endswith(".sh") else 0o644)
            written.append(folder / entry.name)
        os.chmod(staging, 0o755)  # mkdtemp makes it 0700: an app folder is an ordinary folder
        os.replace(staging, folder)  # an empty folder is replaced; a non-empty one (a race) fails
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ConfigError(f"cannot create {folder}: {exc.strerror or exc}") from exc
    return written
