"""Resolving a component's ``moduleURL`` to verified module bytes.

Schemes served: a path relative to the manifest, ``file://``, and
``https://`` pinned by ``moduleDigest`` (plain ``http://`` only to a loopback
host, for development), and ``oci://HOST/REPO:TAG`` or ``@sha256:`` pulled
from an OCI registry (``_oci.py``; the tag is resolved at deploy and the
module's sha256 is what gets recorded, as for any other scheme).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from .._errors import ModuleSourceError, UnsupportedSchemeError
from ..engine import BlobStore
from ..plan import ComponentSpec
from ._reference import is_loopback

__all__ = ["FetchedModule", "fetch_module"]

_FETCH_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_MAX_MODULE = 256 << 20


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


def fetch_module(spec: ComponentSpec, blobs: BlobStore) -> FetchedModule:
    """Fetch, verify and store the module ``spec`` names. Raises ``ModuleSourceError``."""
    url = spec.module_url
    parts = urlsplit(url)
    scheme = _scheme(url)
    path = local_module_path(spec)
    if path is not None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModuleSourceError(f"{_where(spec)}: cannot read {path}: {exc.strerror or exc}") from exc
        return _verified(spec, blobs, data, str(path))
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
    try:
        with (
            httpx.Client(timeout=_FETCH_TIMEOUT, follow_redirects=True) as client,
            client.stream("GET", spec.module_url) as response,
        ):
            if response.status_code != 200:
                raise ModuleSourceError(f"{_where(spec)}: the server answered HTTP {response.status_code}")
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > _MAX_MODULE:
                    raise ModuleSourceError(f"{_where(spec)}: larger than {_MAX_MODULE} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise ModuleSourceError(f"{_where(spec)}: download failed: {exc}") from exc


def _verified(spec: ComponentSpec, blobs: BlobStore, data: bytes, origin: str) -> FetchedModule:
    try:
        digest = blobs.put(data, _expected(spec))
    except ModuleSourceError as exc:
        raise ModuleSourceError(f"{_where(spec)}: {exc}") from exc
    except OSError as exc:
        raise ModuleSourceError(f"{_where(spec)}: cannot write the local blob store: {exc}") from exc
    return FetchedModule(digest, data, origin)
