"""Resolving a component's ``moduleURL`` to verified module bytes.

Schemes served: a path relative to the manifest, ``file://``, and
``https://`` pinned by ``moduleDigest`` (plain ``http://`` only to a loopback
host, for development), and ``oci://HOST/REPO:TAG`` or ``@sha256:`` pulled
from an OCI registry (``_oci.py``; the tag is resolved at deploy and the
module's sha256 is what gets recorded, as for any other scheme).

A local path names a file on the host, so it is read with care (issue 14,
item 9): only a regular file (a FIFO would block the deploy forever, a device
such as ``/dev/zero`` never ends), at most ``MAX_MODULE`` bytes, and never
copied anywhere: local bytes stay in memory until the deploy has compiled and
checked them, and only then does the control plane keep them. Who may name
which local files is the control plane's file policy (``wasmlet.control``).
Bytes from the network are stored in the cache's blob store only once they
match their pinned digest and are a Wasm binary.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .._errors import ModuleError, ModuleSourceError, UnsupportedSchemeError
from ..engine import BlobStore
from ..plan import ComponentSpec, wasm_kind
from ._reference import is_loopback

__all__ = ["MAX_MODULE", "FetchedModule", "fetch_module", "read_module_file"]

_FETCH_TIMEOUT = (30.0, 10.0)  # seconds: each operation, and the connect; httpx loads on first download
MAX_MODULE = 256 << 20


@dataclasses.dataclass(frozen=True)
class FetchedModule:
    digest: str  # sha256 hex of the module bytes
    data: bytes
    origin: str  # what the bytes came from, for messages


def _where(spec: ComponentSpec) -> str:
    return f"{spec.source}: component {spec.qualified_name}: moduleURL {spec.module_url!r}"


def _expected(spec: ComponentSpec) -> str | None:
    return spec.module_digest.removeprefix("sha256:") if spec.module_digest else None


def _scheme(url: str) -> str:
    scheme = urlsplit(url).scheme.lower()
    return scheme if len(scheme) > 1 else ""  # "C:" is not a scheme


def local_module_path(spec: ComponentSpec) -> Path | None:
    """The file a path or ``file://`` moduleURL names (relative to the manifest), else None."""
    scheme = _scheme(spec.module_url)
    if scheme not in ("", "file"):
        return None
    path = Path(unquote(urlsplit(spec.module_url).path)) if scheme == "file" else Path(spec.module_url)
    return path if path.is_absolute() else Path(spec.base_dir) / path


def fetch_module(spec: ComponentSpec, blobs: BlobStore,
                 guard: Callable[[ComponentSpec, Path], None] | None = None) -> FetchedModule:
    """Fetch, verify and store the module ``spec`` names. Raises ``ModuleSourceError``.

    ``guard`` is shown the real path of a local module file once it is open,
    before a byte is read (the control plane's file policy); it raises to refuse.
    """
    url = spec.module_url
    parts = urlsplit(url)
    scheme = _scheme(url)
    path = local_module_path(spec)
    if path is not None:
        try:
            data = read_module_file(path, guard=None if guard is None else functools.partial(guard, spec))
        except ModuleSourceError as exc:
            raise ModuleSourceError(f"{_where(spec)}: {exc}") from exc
        return FetchedModule(_checked(spec, data, str(path)), data, str(path))  # read, never copied
    if scheme in ("https", "http"):
        if scheme == "http" and not is_loopback(parts.hostname or ""):
            raise ModuleSourceError(f"{_where(spec)}: plain http is allowed only to a loopback host; use https")
        if spec.module_digest is None:
            raise ModuleSourceError(
                f"{_where(spec)}: a module fetched over {scheme} must be pinned: "
                "add moduleDigest: sha256:<hex> to the component's properties"
            )
        expected = _expected(spec)
        assert expected is not None
        if blobs.has(expected):
            return FetchedModule(expected, blobs.get(expected), url)
        return _verified(spec, blobs, _download(spec), url)
    if scheme == "oci":
        from ._oci import pull_module

        try:
            pulled = pull_module(url, blobs, expected_module=_expected(spec))
        except ModuleSourceError as exc:
            # Same class, with the manifest and component in front; the
            # registry layer's message already names the reference.
            raise type(exc)(f"{spec.source}: component {spec.qualified_name}: {exc}") from exc
        return FetchedModule(pulled.module_digest, pulled.data, str(pulled.reference))
    raise UnsupportedSchemeError(
        f"{_where(spec)}: unsupported scheme {scheme!r} (expected a path, file://, https://, oci://)"
    )


def _download(spec: ComponentSpec) -> bytes:
    import httpx  # here: a deploy from files (``wasmlet serve``'s start) does not pay for it

    try:
        with (
            httpx.Client(timeout=httpx.Timeout(_FETCH_TIMEOUT[0], connect=_FETCH_TIMEOUT[1]),
                         follow_redirects=True) as client,
            client.stream("GET", spec.module_url) as response,
        ):
            if response.status_code != 200:
                raise ModuleSourceError(f"{_where(spec)}: the server answered HTTP {response.status_code}")
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_MODULE:
                    raise ModuleSourceError(f"{_where(spec)}: larger than {MAX_MODULE} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise ModuleSourceError(f"{_where(spec)}: download failed: {exc}") from exc


def read_module_file(path: Path, limit: int = MAX_MODULE, guard: Callable[[Path], None] | None = None) -> bytes:
    """The bytes of the module file ``path``: a regular file of at most ``limit`` bytes.
    Raises ``ModuleSourceError`` naming the path. ``guard``: see ``fetch_module``."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ModuleSourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        if guard is not None:
            # What was opened, not what the path named a moment ago: a component swapped
            # for a symlink since the policy looked at the path is judged by its target.
            guard(Path(os.readlink(f"/proc/self/fd/{fd}")))
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ModuleSourceError(f"{path} is not a regular file (a module must be one)")
        if info.st_size > limit:
            raise ModuleSourceError(f"{path} is larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        # The size stat reports is not a bound (a /proc file says 0, a file may grow): count.
        while chunk := os.read(fd, min(1 << 20, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise ModuleSourceError(f"{path} is larger than {limit} bytes")
    except OSError as exc:
        raise ModuleSourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    return b"".join(chunks)


def _checked(spec: ComponentSpec, data: bytes, origin: str) -> str:
    """The sha256 hex of ``data`` once it matches any pinned digest and is a Wasm binary."""
    expected = _expected(spec)
    actual = hashlib.sha256(data).hexdigest()
    if expected is not None and actual != expected:
        # First: the message below may quote the bytes, harmless only for bytes the client pinned
        # (or a local file the file policy let it read).
        raise ModuleSourceError(f"{_where(spec)}: digest mismatch: expected sha256:{expected}, got sha256:{actual}")
    try:
        wasm_kind(data)  # named here, with the file or URL, before it is stored or reaches wasmtime
    except ValueError as exc:
        raise ModuleError(f"{_where(spec)}: {origin} is not WebAssembly: {exc}") from exc
    return actual


def _verified(spec: ComponentSpec, blobs: BlobStore, data: bytes, origin: str) -> FetchedModule:
    _checked(spec, data, origin)  # only a Wasm binary is ever stored
    try:
        digest = blobs.put(data, _expected(spec))
    except ModuleSourceError as exc:
        raise ModuleSourceError(f"{_where(spec)}: {exc}") from exc
    except OSError as exc:
        raise ModuleSourceError(f"{_where(spec)}: cannot write the local blob store: {exc}") from exc
    return FetchedModule(digest, data, origin)
