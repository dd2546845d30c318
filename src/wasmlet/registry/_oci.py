"""Push, pull and login: Wasm modules and components as OCI artifacts, kept in the local blob store.

Pull resolves a tag to a manifest digest, checks that the manifest is a Wasm
artifact, fetches the config and the one Wasm layer, verifies each against
its descriptor (size and sha256), holds the layer to what a Wasm config says
of it (``check_layer``: a core module or a component, and a component's
imports and exports), and only then writes them, with the
manifest, into the content-addressed ``BlobStore``; the tag index records what
the tag named. Any failure before that point leaves the store and the index as
they were.

Offline: a reference pinned by digest whose blobs are already stored is
served without asking the registry (content addressing makes the answer
certain). A tag needs the registry to say what it names now; if the registry
is unreachable (refused, timed out, 5xx) the tag index's last answer is used,
with a warning. A 401, 403 or 404 is an answer, not an outage, and is never
papered over with a local copy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Any

from .._errors import ModuleError, ModuleSourceError, RegistryError
from ..engine import BlobStore
from ..plan import wasm_kind
from ._artifact import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_MANIFEST,
    WASM_CONFIG_V0,
    ArtifactError,
    Descriptor,
    build_artifact,
    check_config,
    check_layer,
    load_json,
    manifest_type,
    pick_from_index,
    wasm_layer,
    wasm_layers_of,
)
from ._auth import Credentials, store_credentials
from ._client import RegistryClient, Unreachable
from ._index import TagIndex
from ._reference import Reference, canonical_registry, parse_reference, registry_hostname

__all__ = ["PulledModule", "PushedModule", "login", "pull_module", "push_module"]

log = logging.getLogger("wasmlet.registry")

_MAX_MODULE = 256 << 20  # the same cap as any other moduleURL
# A component's config lists its imports and exports: a few KB for the largest worlds in use.
# Bounded like a manifest (distribution-spec's 4 MiB), so a registry cannot make a pull read without end.
_MAX_CONFIG = 4 << 20


@dataclasses.dataclass(frozen=True)
class PulledModule:
    reference: Reference  # pinned: carries the manifest digest
    manifest_digest: str  # "sha256:<hex>" of the image manifest that was used
    module_digest: str  # sha256 hex of the module bytes
    data: bytes
    offline: bool  # served from the local store because the registry was unreachable


@dataclasses.dataclass(frozen=True)
class PushedModule:
    reference: Reference  # pinned
    manifest_digest: str
    module_digest: str  # "sha256:<hex>"
    size: int


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _artifact_error(ref: Reference, exc: ArtifactError) -> RegistryError:
    return RegistryError(f"{ref}: {exc}")


# -- pull --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Resolved:
    manifest_digest: str
    manifest_bytes: bytes
    manifest: dict[str, Any]
    extra: tuple[tuple[str, bytes], ...]  # an image index passed through on the way, to store too


def _fetch_manifest(client: RegistryClient, ref: Reference, target: str, expected: Descriptor | None) -> tuple[
        str, bytes, dict[str, Any], str]:
    body, content_type, echoed = client.get_manifest(ref.repository, target)
    actual = _sha256(body)
    wanted = expected.digest if expected else (target if target.startswith("sha256:") else None)
    # A digest reference is only as good as this check (distribution-spec,
    # "Pulling manifests": clients SHOULD verify the content against the digest).
    if wanted and actual != wanted:
        raise RegistryError(f"{ref}: the registry served a manifest with digest {actual}, expected {wanted}")
    if echoed and echoed.startswith("sha256:") and echoed != actual:
        raise RegistryError(f"{ref}: the manifest's Docker-Content-Digest {echoed} does not match its content {actual}")
    if expected and len(body) != expected.size:
        raise RegistryError(f"{ref}: the manifest is {len(body)} bytes, its descriptor says {expected.size}")
    try:
        manifest = load_json(body, "the manifest")
    except ArtifactError as exc:
        raise _artifact_error(ref, exc) from exc
    return actual, body, manifest, manifest_type(manifest, content_type)


def _resolve(client: RegistryClient, ref: Reference) -> _Resolved:
    digest, body, manifest, kind = _fetch_manifest(client, ref, ref.target, None)
    extra: tuple[tuple[str, bytes], ...] = ()
    if kind in INDEX_TYPES:
        try:
            chosen = pick_from_index(manifest)
        except ArtifactError as exc:
            raise _artifact_error(ref, exc) from exc
        extra = ((digest, body),)
        digest, body, manifest, kind = _fetch_manifest(client, ref, chosen.digest, chosen)
    if kind not in MANIFEST_TYPES:
        raise RegistryError(f"{ref}: unsupported manifest media type {kind!r}; expected {OCI_MANIFEST}")
    return _Resolved(digest, body, manifest, extra)


def _layout(ref: Reference, manifest: dict[str, Any]) -> tuple[Descriptor, Descriptor]:
    try:
        config, layer = wasm_layer(manifest)
    except ArtifactError as exc:
        raise _artifact_error(ref, exc) from exc
    if layer.size > _MAX_MODULE:
        raise RegistryError(f"{ref}: the Wasm layer is {layer.size} bytes, more than the {_MAX_MODULE} allowed")
    if config.media_type == WASM_CONFIG_V0 and config.size > _MAX_CONFIG:
        raise RegistryError(f"{ref}: the Wasm config is {config.size} bytes, more than the {_MAX_CONFIG} allowed")
    return config, layer


def _stored(blobs: BlobStore, desc: Descriptor) -> bytes | None:
    """The blob from the local store if present and intact (``get`` removes a corrupt one)."""
    if not blobs.has(desc.hex):
        return None
    try:
        return blobs.get(desc.hex)
    except ModuleSourceError as exc:
        log.warning("%s; fetching it again", exc)
        return None


def _from_store(ref: Reference, blobs: BlobStore, manifest_digest: str) -> PulledModule:
    """Rebuild a pull from stored blobs only. Raises ``ModuleSourceError`` if any is missing or corrupt."""
    digest = manifest_digest
    for _ in range(2):  # an index, then the manifest it points to
        manifest = load_json(blobs.get(digest.removeprefix("sha256:")), "the stored manifest")
        if manifest_type(manifest, None) not in INDEX_TYPES:
            break
        digest = pick_from_index(manifest).digest
    _config, layer = wasm_layer(manifest)
    data = blobs.get(layer.hex)
    return PulledModule(ref.with_digest(digest), digest, layer.hex, data, offline=False)


def _blob(client: RegistryClient, blobs: BlobStore, ref: Reference, desc: Descriptor, label: str) -> tuple[bytes, bool]:
    """``(bytes, fetched)``: from the store if there, else downloaded and verified (not yet stored)."""
    local = _stored(blobs, desc)
    if local is not None:
        return local, False
    data = client.get_blob(ref.repository, desc.digest, desc.size, label)
    actual = _sha256(data)
    if actual != desc.digest:
        raise RegistryError(f"{ref}: blob {desc.digest} failed verification: its content has digest {actual}")
    return data, True


def pull_module(
    reference: str | Reference,
    blobs: BlobStore,
    *,
    insecure: bool = False,
    expected_module: str | None = None,
) -> PulledModule:
    """Resolve, fetch, verify and store the module ``reference`` names. Raises ``ModuleSourceError``.

    ``expected_module`` (sha256 hex) pins the module bytes, as ``moduleDigest`` does in a manifest.
    """
    ref = reference if isinstance(reference, Reference) else parse_reference(reference)
    index = TagIndex(blobs.cache_root)

    if ref.digest and blobs.has(ref.digest.removeprefix("sha256:")):
        try:
            pulled = _from_store(ref, blobs, ref.digest)
        except (ModuleSourceError, ArtifactError) as exc:
            log.warning("%s: the local copy is unusable (%s); pulling it again", ref, exc)
        else:
            _check_pin(ref, pulled.module_digest, expected_module)
            log.info("%s: module sha256:%s from the local store", ref, pulled.module_digest)
            return pulled

    with RegistryClient(ref.registry, hostname=ref.hostname, where=str(ref), insecure=insecure) as client:
        try:
            resolved = _resolve(client, ref)
        except Unreachable as exc:
            return _offline(ref, blobs, index, exc, expected_module)
        config, layer = _layout(ref, resolved.manifest)
        _check_pin(ref, layer.hex, expected_module)
        fetched: list[tuple[Descriptor, bytes]] = []
        claims = None
        if config.media_type == WASM_CONFIG_V0:
            config_bytes, new = _blob(client, blobs, ref, config, "config")
            try:
                claims = check_config(config, config_bytes, layer, wasm_layers_of(resolved.manifest))
            except ArtifactError as exc:
                raise _artifact_error(ref, exc) from exc
            if new:
                fetched.append((config, config_bytes))
        data, new = _blob(client, blobs, ref, layer, f"pull {ref.repository}")
        try:
            wasm_kind(data)
        except ValueError as exc:
            raise RegistryError(f"{ref}: the Wasm layer {layer.digest} is not WebAssembly: {exc}") from exc
        try:
            check_layer(claims, data)  # the config's word against the bytes: os, imports, exports
        except ArtifactError as exc:
            raise _artifact_error(ref, exc) from exc
        if new:
            fetched.append((layer, data))

    # Everything is verified: now, and only now, write. Blobs first, the
    # manifests after them and the tag last, so that whatever the index or a
    # stored manifest points to is already in the store.
    try:
        for desc, content in fetched:
            blobs.put(content, desc.hex)
        for digest, content in (*resolved.extra, (resolved.manifest_digest, resolved.manifest_bytes)):
            blobs.put(content, digest.removeprefix("sha256:"))
        if ref.digest is None:
            index.record(ref.tag_key, resolved.manifest_digest, layer.digest)
    except OSError as exc:
        raise RegistryError(f"{ref}: cannot write the local blob store: {exc}") from exc
    pinned = ref.with_digest(resolved.manifest_digest)
    log.info("%s: resolved to manifest %s, module %s%s", ref, resolved.manifest_digest, layer.digest,
             " (downloaded)" if any(desc is layer for desc, _ in fetched) else " (already stored)")
    return PulledModule(pinned, resolved.manifest_digest, layer.hex, data, offline=False)


def _check_pin(ref: Reference, module_hex: str, expected: str | None) -> None:
    if expected is not None and module_hex != expected:
        raise RegistryError(f"{ref}: the module is sha256:{module_hex}, but moduleDigest pins sha256:{expected}")


def _offline(ref: Reference, blobs: BlobStore, index: TagIndex, cause: Unreachable,
             expected_module: str | None) -> PulledModule:
    if ref.digest is not None:
        raise RegistryError(f"{cause}; and {ref.digest} is not in the local store") from cause
    entry = index.get(ref.tag_key)
    if entry is None:
        raise RegistryError(f"{cause}; and {ref} was never pulled here, so there is no local copy to use") from cause
    try:
        pulled = _from_store(ref, blobs, entry.manifest)
    except (ModuleSourceError, ArtifactError) as exc:
        raise RegistryError(f"{cause}; and the local copy of {ref} ({entry.manifest}) is unusable: {exc}") from cause
    _check_pin(ref, pulled.module_digest, expected_module)
    log.warning("%s: the registry is unreachable, deploying the local copy pulled at %s "
                "(manifest %s, module sha256:%s); cause: %s",
                ref, entry.pulled, entry.manifest, pulled.module_digest, cause)
    return dataclasses.replace(pulled, offline=True)


# -- push --------------------------------------------------------------------------------------------


def push_module(
    module: bytes,
    reference: str | Reference,
    *,
    blobs: BlobStore | None = None,
    insecure: bool = False,
    title: str | None = None,
    target: str | None = None,
) -> PushedModule:
    """Upload ``module`` (a core module or a component) as a Wasm OCI artifact under ``reference``'s tag;
    also keep it in ``blobs``. ``target``: a component's world, recorded in its config when known."""
    ref = reference if isinstance(reference, Reference) else parse_reference(reference)
    if ref.digest is not None:
        raise ModuleSourceError(f"{ref}: push takes a tag, not a digest (the digest follows from the content)")
    assert ref.tag is not None
    try:
        artifact = build_artifact(module, title, target)
    except ArtifactError as exc:
        raise ModuleError(f"{title or 'module'}: {exc}") from exc
    with RegistryClient(ref.registry, hostname=ref.hostname, where=str(ref), insecure=insecure) as client:
        # Blobs before the manifest: a registry refuses a manifest whose blobs
        # it does not hold (distribution-spec, "Pushing manifests").
        for desc, data, label in ((artifact.module, module, f"push {ref.repository}"),
                                  (artifact.config, artifact.config_bytes, "config")):
            if client.has_blob(ref.repository, desc.digest):
                log.debug("%s: blob %s already in the registry", ref, desc.digest)
                continue
            client.put_blob(ref.repository, desc.digest, data, label)
        client.put_manifest(ref.repository, ref.tag, OCI_MANIFEST, artifact.manifest_bytes, artifact.manifest.digest)
    if blobs is not None:
        try:
            blobs.put(module, artifact.module.hex)
            blobs.put(artifact.config_bytes, artifact.config.hex)
            blobs.put(artifact.manifest_bytes, artifact.manifest.hex)
            TagIndex(blobs.cache_root).record(ref.tag_key, artifact.manifest.digest, artifact.module.digest)
        except OSError as exc:
            log.warning("%s: pushed, but cannot keep a local copy: %s", ref, exc)
    log.info("%s: pushed manifest %s, module %s", ref, artifact.manifest.digest, artifact.module.digest)
    return PushedModule(ref.with_digest(artifact.manifest.digest), artifact.manifest.digest,
                        artifact.module.digest, artifact.module.size)


# -- login -------------------------------------------------------------------------------------------


def login(registry: str, credentials: Credentials, *, insecure: bool = False,
          config_path: Path | None = None) -> Path:
    """Check ``credentials`` against ``registry`` (host[:port]) and save them in docker's config.

    As with ``docker login``, ``https://host/`` and Docker Hub's names (``docker.io``,
    ``https://index.docker.io/v1/``) are accepted; Docker Hub is checked at its API host.
    """
    named = registry.split("://", 1)[-1].split("/", 1)[0].lower()
    api = canonical_registry(named)
    hostname = registry_hostname(api)
    with RegistryClient(api, hostname=hostname, where=named, insecure=insecure,
                        credentials=credentials, use_docker_config=False) as client:
        client.ping()
    return store_credentials(api, credentials, config_path)
