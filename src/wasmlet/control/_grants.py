"""The file policy: which host files a manifest may mount (``capabilities.files``) or read (a local ``moduleURL``).

A manifest names host paths in two places, and whoever sends the manifest
chooses them. Who may grant what (``docs/security.md``, "Files, state and
the cache"):

- **never, for anyone**: the host's own folders (the state folder with the
  admin token and the module bytes, the cache with its artifact key and
  native code, the trust folder) and the kernel's pseudo file systems
  (``/proc``, ``/sys``, ``/dev``); a mount may not be one of them, lie
  inside one, or contain one (``source: /`` contains them all);
- **manifests sent through the admin API**: only paths inside a folder the
  operator allows with ``wasmlet serve --allow-files DIR`` (repeatable);
  nothing at all by default;
- **manifests the operator gives on the ``serve`` command line** (and their
  ``--watch`` redeploys): anything (the operator is trusted) unless
  ``--allow-files`` is given, and then the allowed folders plus the
  manifest's own folder.

Paths are judged after resolving symlinks and ``..``, so a link inside an
allowed folder that points outside it is judged by where it points. A local
module is judged again by the file actually opened (``/proc/self/fd``), so a
path swapped for a symlink between the check and the read is refused too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from .._errors import FileGrantError
from ..plan import ComponentSpec
from ..registry import local_module_path

__all__ = ["FilePolicy"]

_PSEUDO = (Path("/proc"), Path("/sys"), Path("/dev"))


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


@dataclasses.dataclass(frozen=True)
class FilePolicy:
    """See the module docstring. ``protected`` and ``allowed`` are resolved when judged."""

    protected: tuple[Path, ...] = ()  # the host's own folders: never granted
    allowed: tuple[Path, ...] = ()  # --allow-files

    @classmethod
    def of(cls, protected: Sequence[Path | None], allowed: Sequence[Path] = ()) -> FilePolicy:
        return cls(tuple(p.resolve() for p in protected if p is not None), tuple(p.resolve() for p in allowed))

    def check(self, specs: Sequence[ComponentSpec], operator: bool) -> None:
        """Raise ``FileGrantError`` for the first mount or local module ``specs`` may not use."""
        for spec in specs:
            for index, mount in enumerate(spec.capabilities.files):
                host = (Path(spec.base_dir) / mount.source).resolve()
                why = self.refusal(spec, host, operator, mount=True)
                if why is None and not host.is_dir():
                    why = "is not a directory"
                if why is not None:
                    raise FileGrantError(
                        f"{spec.source}: component {spec.qualified_name}: capabilities.files[{index}].source "
                        f"{mount.source!r} ({host}) {why}"
                    )
            module = local_module_path(spec)
            if module is not None:
                self.check_module(spec, module.resolve(), operator)

    def check_module(self, spec: ComponentSpec, real: Path, operator: bool) -> None:
        """Raise ``FileGrantError`` if ``spec`` may not read the module file ``real`` (a resolved path)."""
        why = self.refusal(spec, real, operator, mount=False)
        if why is not None:
            raise FileGrantError(
                f"{spec.source}: component {spec.qualified_name}: moduleURL {spec.module_url!r} ({real}) {why}"
            )

    def refusal(self, spec: ComponentSpec, path: Path, operator: bool, mount: bool) -> str | None:
        """Why ``path`` (resolved) may not be mounted (``mount``) or read by ``spec``, or None."""
        for folder in _PSEUDO:
            if _within(path, folder) or (mount and _within(folder, path)):
                return f"is or contains the host's {folder}, which is never granted"
        for folder in self.protected:
            if _within(path, folder):
                return f"is inside {folder}, one of the host's own folders (state, cache, trust), never granted"
            if mount and _within(folder, path):
                return f"contains {folder}, one of the host's own folders (state, cache, trust), never granted"
        if operator and not self.allowed:
            return None
        roots = self.allowed + ((Path(spec.base_dir).resolve(),) if operator else ())
        if any(_within(path, root) for root in roots):
            return None
        if not roots:
            return ("is a host file, and a manifest sent through the admin API may name host files only in a "
                    "folder the host allows (wasmlet serve --allow-files DIR); none is allowed")
        shown = ", ".join(str(root) for root in roots)
        return f"is outside the folders manifests may use here ({shown}; wasmlet serve --allow-files DIR)"
