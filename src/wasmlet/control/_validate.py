"""``wasmlet validate``: what a deploy would refuse, found offline, without a compiler.

The manifest itself is validated first (``load_manifest``, ``assign_routes``);
then each component's inputs are checked the way ``prepare`` will use them,
short of the network and of wasmtime:

- a local module (a path or ``file://``) exists, is a regular file, is a
  WebAssembly binary by its preamble (a module or a component), and has the
  sha256 ``moduleDigest`` pins, if it pins one;
- a remote module is only checked for what needs no network: an ``oci://``
  reference parses, an ``https://`` URL is pinned by ``moduleDigest`` (a
  deploy refuses it otherwise), ``http://`` names a loopback host. Its bytes
  are *not checked offline*, and the result says so;
- every ``capabilities.files`` source is an existing directory.

Problems come back as ``(field path, message)`` pairs per manifest, as in
``ManifestError``, with the component's index in its manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from .._errors import ModuleSourceError
from ..plan import ComponentSpec, wasm_kind
from ..registry import is_loopback, local_module_path, parse_reference

__all__ = ["ComponentCheck", "check_offline"]

_PROPS = "properties"


@dataclasses.dataclass(frozen=True)
class ComponentCheck:
    """What ``check_offline`` found for one component."""

    spec: ComponentSpec
    module: str  # what the module is ("module, 1234 bytes, sha256:..."), or why it was not checked
    problems: tuple[tuple[str, str], ...]  # (field path, message); empty when the component is fine

    @property
    def ok(self) -> bool:
        return not self.problems


def _sha256_file(path: Path) -> tuple[bytes, str]:
    """The first bytes of ``path`` (enough for the preamble and a text excerpt) and its sha256 hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        head = handle.read(512)
        digest.update(head)
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return head, digest.hexdigest()


def _local(spec: ComponentSpec, path: Path, field: str) -> tuple[str, list[tuple[str, str]]]:
    url_field = f"{field}.{_PROPS}.moduleURL"
    try:
        info = os.stat(path)  # stat, not open: a FIFO or a device named here must not block or stream
    except FileNotFoundError:
        where = "" if Path(spec.module_url).is_absolute() else f" (relative to the manifest's folder {spec.base_dir})"
        return "missing", [(url_field, f"{path} does not exist{where}")]
    except OSError as exc:
        return "unreadable", [(url_field, f"cannot read {path}: {exc.strerror or exc}")]
    if stat.S_ISDIR(info.st_mode):
        return "a directory", [(url_field, f"{path} is a directory; expected a .wasm file")]
    if not stat.S_ISREG(info.st_mode):
        return "not a file", [(url_field, f"{path} is not a regular file; expected a .wasm file")]
    try:
        head, actual = _sha256_file(path)
    except OSError as exc:
        return "unreadable", [(url_field, f"cannot read {path}: {exc.strerror or exc}")]
    try:
        kind = wasm_kind(head)
    except ValueError as exc:
        return "not WebAssembly", [(url_field, f"{path} is not WebAssembly: {exc}")]
    problems: list[tuple[str, str]] = []
    if spec.module_digest is not None and spec.module_digest != f"sha256:{actual}":
        problems.append((f"{field}.{_PROPS}.moduleDigest",
                         f"{path} has sha256:{actual}, but moduleDigest pins {spec.module_digest} "
                         f"(if the new module is the one you want, set moduleDigest: sha256:{actual})"))
    return f"{kind}, {info.st_size} bytes, sha256:{actual[:12]}", problems


def _remote(spec: ComponentSpec, field: str) -> tuple[str, list[tuple[str, str]]]:
    url_field = f"{field}.{_PROPS}.moduleURL"
    parts = urlsplit(spec.module_url)
    scheme = parts.scheme.lower()
    if scheme == "oci":
        try:
            ref = parse_reference(spec.module_url)
        except ModuleSourceError as exc:
            return "bad reference", [(url_field, str(exc))]
        return f"not checked offline: pulled from {ref.registry} at deploy", []
    if scheme in ("https", "http"):
        problems = []
        if scheme == "http" and not is_loopback(parts.hostname or ""):
            problems.append((url_field, "plain http is allowed only to a loopback host; use https"))
        if spec.module_digest is None:
            problems.append((f"{field}.{_PROPS}.moduleDigest",
                             f"a module fetched over {scheme} must be pinned: add moduleDigest: sha256:<hex> "
                             "(the sha256 of the module's bytes)"))
        return f"not checked offline: downloaded from {parts.hostname} at deploy", problems
    return "unsupported", [(url_field, f"unsupported scheme {scheme!r} (expected a path, file://, https://, oci://)")]


def _files(spec: ComponentSpec, field: str) -> list[tuple[str, str]]:
    problems = []
    for index, mount in enumerate(spec.capabilities.files):
        host = (Path(spec.base_dir) / mount.source).resolve()
        where = f"{field}.{_PROPS}.capabilities.files[{index}].source"
        if not host.exists():
            problems.append((where, f"{host} does not exist; expected a directory to mount at {mount.destination}"))
        elif not host.is_dir():
            problems.append((where, f"{host} is not a directory; expected a directory to mount at "
                                    f"{mount.destination}"))
    return problems


def check_offline(specs: Sequence[ComponentSpec]) -> list[ComponentCheck]:
    """Check every component's module and mounts without a network; see the module docstring."""
    checks = []
    index: dict[tuple[str, str], int] = {}  # (manifest, app) -> components seen: the index in spec.components
    for spec in specs:
        position = index.get((spec.source, spec.app), 0)
        index[(spec.source, spec.app)] = position + 1
        field = f"spec.components[{position}]"
        path = local_module_path(spec)
        module, problems = _local(spec, path, field) if path is not None else _remote(spec, field)
        problems += _files(spec, field)
        checks.append(ComponentCheck(spec, module, tuple(problems)))
    return checks
