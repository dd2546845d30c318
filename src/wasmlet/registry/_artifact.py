"""The Wasm OCI artifact layout: building it for push, recognising it on pull.

Push writes the CNCF TAG-Runtime "Wasm OCI Artifact" layout: an OCI image
manifest whose config is ``application/vnd.wasm.config.v0+json`` and whose
one layer is ``application/wasm``, the binary as it is (no tar, no gzip). The
config says ``architecture: wasm``, ``layerDigests`` (the manifest's layers,
in order) and ``os``: ``wasip1`` for a core module, ``wasip2`` for a
component, which also gets the ``component`` object the layout requires for
it: ``exports``, ``imports`` (the names in the component's outer import and
export sections, ``_component.py``) and ``target`` (its world, ``null`` when
not known: a binary does not name its world). That is what ``wkg`` (through
the ``oci-wasm`` crate) writes.

Pull also accepts the older wasm-to-oci layout (config
``application/vnd.wasm.config.v1+json``, layer
``application/vnd.wasm.content.layer.v1+wasm``), docker schema-2 manifests,
and image indexes with a ``wasm`` platform entry. The layer media type decides:
the config is checked when it is the Wasm one and otherwise left alone, since
other clients (oras among them) write whatever config they like. A v0 config
is taken at its word and held to it: ``check_config`` reads what it claims,
``check_layer`` refuses a layer that is not what it claims (a core module
under ``os: wasip2``, a component under ``wasip1``, imports or exports the
binary does not have).

Everything here reads bytes a registry chose, so every failure is an
``ArtifactError`` (a ``ValueError``), never another exception, and a message
quotes at most a few dozen characters of what the registry sent.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import re
from collections.abc import Sequence
from typing import Any

from ._component import ComponentInterfaces, MalformedComponent, component_interfaces

__all__ = [
    "ACCEPT_MANIFESTS",
    "INDEX_TYPES",
    "MANIFEST_TYPES",
    "WASM_CONFIG_V0",
    "WASM_LAYER",
    "ArtifactError",
    "ConfigClaims",
    "Descriptor",
    "WasmArtifact",
    "build_artifact",
    "check_config",
    "check_layer",
    "load_json",
    "manifest_type",
    "pick_from_index",
    "wasm_layer",
    "wasm_layers_of",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
ACCEPT_MANIFESTS = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])

WASM_CONFIG_V0 = "application/vnd.wasm.config.v0+json"
WASM_CONFIG_V1 = "application/vnd.wasm.config.v1+json"  # wasm-to-oci
WASM_LAYER = "application/wasm"
WASM_LAYER_V1 = "application/vnd.wasm.content.layer.v1+wasm"  # wasm-to-oci
WASM_LAYERS = frozenset({WASM_LAYER, WASM_LAYER_V1})
WASM_CONFIGS = frozenset({WASM_CONFIG_V0, WASM_CONFIG_V1})

_TITLE = "org.opencontainers.image.title"
_CREATED = "org.opencontainers.image.created"
# A core module is "\0asm" + version 1; a component shares the magic with a different layer/version word.
_CORE_MODULE_HEADER = b"\0asm\x01\x00\x00\x00"
_COMPONENT_HEADER = b"\0asm\x0d\x00\x01\x00"
# The layout's os values (a GOOS-like name): core modules and components.
MODULE_OS, COMPONENT_OS = "wasip1", "wasip2"
_TARGET = re.compile(r"^[A-Za-z0-9:/@.+_-]{1,256}$")  # a world's name: ns:pkg/world@version
# image-spec descriptor.md: the only algorithm wasmlet supports, with its encoded form ([a-f0-9]{64}).
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_MAX_SHOWN = 8  # list items quoted in a message


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _short(value: object) -> str:
    """A bounded ``repr`` for messages: the registry decides how long its strings are."""
    if isinstance(value, str):
        return _clip(repr(value[:60]))
    if value is None or isinstance(value, (bool, int, float)):  # json.loads refuses ints of over 4300 digits
        return _clip(repr(value))
    return "a JSON object" if isinstance(value, dict) else "a JSON array"


def _some(items: list[str]) -> str:
    shown = [_clip(item) for item in items[:_MAX_SHOWN]]
    return ", ".join(shown) + (f" and {len(items) - _MAX_SHOWN} more" if len(items) > _MAX_SHOWN else "")


class ArtifactError(ValueError):
    """Content that is not a usable Wasm artifact (translated to RegistryError by the caller)."""


@dataclasses.dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str  # "sha256:<hex>"
    size: int

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    @classmethod
    def parse(cls, raw: Any, what: str) -> Descriptor:
        if not isinstance(raw, dict):
            raise ArtifactError(f"{what} is not a descriptor object")
        media_type, digest, size = raw.get("mediaType"), raw.get("digest"), raw.get("size")
        if (not isinstance(media_type, str) or not isinstance(digest, str)
                or not isinstance(size, int) or isinstance(size, bool)):
            raise ArtifactError(f"{what} lacks mediaType, digest or size")
        if not _DIGEST.fullmatch(digest):
            # The digest names a blob in URLs and files: nothing but sha256 and 64 hex digits.
            raise ArtifactError(f"{what} has digest {_short(digest)}; expected sha256:<64 lower-case hex digits>")
        if size < 0:
            raise ArtifactError(f"{what} has a negative size")
        return cls(media_type, digest, size)

    @classmethod
    def of(cls, media_type: str, data: bytes) -> Descriptor:
        return cls(media_type, "sha256:" + hashlib.sha256(data).hexdigest(), len(data))


@dataclasses.dataclass(frozen=True)
class WasmArtifact:
    """What push uploads: config and manifest bytes, exactly as digested."""

    module: Descriptor
    config: Descriptor
    config_bytes: bytes
    manifest: Descriptor
    manifest_bytes: bytes


def _created() -> str:
    # SOURCE_DATE_EPOCH (reproducible-builds.org) makes a push byte-for-byte repeatable.
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (datetime.datetime.fromtimestamp(int(epoch), datetime.UTC) if epoch and epoch.isdigit()
            else datetime.datetime.now(datetime.UTC).replace(microsecond=0))
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _config_json(module: bytes, layer: Descriptor, created: str, target: str | None) -> dict[str, Any]:
    """The v0 config for ``module``: a core module's, or a component's with its ``component`` object."""
    if module[:4] != b"\0asm":
        raise ArtifactError("not a WebAssembly binary (no \\0asm magic)")
    config: dict[str, Any] = {"created": created, "architecture": "wasm"}
    if module[:8] == _CORE_MODULE_HEADER:
        if target is not None:
            raise ArtifactError("a target world describes a component; this is a core module")
        return {**config, "os": MODULE_OS, "layerDigests": [layer.digest]}
    if module[:8] != _COMPONENT_HEADER:
        raise ArtifactError(f"a WebAssembly binary of an unknown version (bytes 4-7: {module[4:8].hex(' ')}; "
                            "expected 01 00 00 00 for a core module or 0d 00 01 00 for a component)")
    if target is not None and not _TARGET.fullmatch(target):
        raise ArtifactError(f"target {_short(target)} is not a world name (namespace:package/world@version)")
    try:
        interfaces = component_interfaces(module)
    except MalformedComponent as exc:
        raise ArtifactError(f"the component cannot be read: {exc}") from exc
    component = {"exports": list(interfaces.exports), "imports": list(interfaces.imports), "target": target}
    return {**config, "os": COMPONENT_OS, "layerDigests": [layer.digest], "component": component}


def build_artifact(module: bytes, title: str | None = None, target: str | None = None) -> WasmArtifact:
    """The manifest and config for one core module or component. Raises ``ArtifactError``.

    ``target``: the world a component targets (``wasi:http/proxy@0.2.0``), when the caller knows it.
    """
    layer = Descriptor.of(WASM_LAYER, module)
    created = _created()
    config = _config_json(module, layer, created, target)
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    config_desc = Descriptor.of(WASM_CONFIG_V0, config_bytes)
    layer_json = layer.to_json()
    if title:
        layer_json["annotations"] = {_TITLE: title}
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc.to_json(),
        "layers": [layer_json],
        "annotations": {_CREATED: created},
    }
    # These exact bytes are what gets digested and uploaded: a registry must
    # serve a manifest byte-for-byte as pushed (distribution-spec, "Pushing
    # manifests"), so the digest computed here is the one it answers with.
    manifest_bytes = json.dumps(manifest, separators=(",", ":")).encode()
    return WasmArtifact(layer, config_desc, config_bytes, Descriptor.of(OCI_MANIFEST, manifest_bytes), manifest_bytes)


def load_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of more than 4300 digits
        raise ArtifactError(f"{what} is not valid JSON: {str(exc)[:200]}") from exc
    except RecursionError as exc:  # the json module recurses once per nested array or object
        raise ArtifactError(f"{what} is not valid JSON: nested too deeply") from exc
    if not isinstance(value, dict):
        raise ArtifactError(f"{what} is not a JSON object")
    return value


def manifest_type(manifest: dict[str, Any], content_type: str | None) -> str:
    """The media type of a manifest: its own ``mediaType``, else the response's Content-Type."""
    declared = manifest.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    # image-spec: mediaType is only SHOULD in a manifest; the header is then all there is.
    if content_type:
        return content_type.split(";", 1)[0].strip()
    return OCI_MANIFEST if "layers" in manifest else OCI_INDEX if "manifests" in manifest else ""


def pick_from_index(index: dict[str, Any]) -> Descriptor:
    """The manifest of an image index meant for Wasm (``platform.architecture: wasm``)."""
    entries = index.get("manifests")
    if not isinstance(entries, list) or not entries:
        raise ArtifactError("the image index lists no manifests")
    seen = []
    for position, raw in enumerate(entries):
        platform = raw.get("platform") if isinstance(raw, dict) else None
        arch = platform.get("architecture") if isinstance(platform, dict) else None
        os_name = platform.get("os") if isinstance(platform, dict) else None
        seen.append(f"{os_name if isinstance(os_name, str) else _short(os_name)}/"
                    f"{arch if isinstance(arch, str) else _short(arch)}")
        if arch == "wasm" and os_name in (MODULE_OS, COMPONENT_OS, "wasi", None):
            return Descriptor.parse(raw, f"manifests[{position}]")
    raise ArtifactError(f"the image index has no wasm/wasip1 or wasm/wasip2 entry (it has {_some(seen)}): "
                        "not a Wasm artifact")


def wasm_layers_of(manifest: dict[str, Any]) -> list[Descriptor]:
    """Every layer descriptor of an image manifest, in order. Raises ``ArtifactError``."""
    raw_layers = manifest.get("layers")
    if not isinstance(raw_layers, list):
        raise ArtifactError("the manifest has no layers list")
    return [Descriptor.parse(raw, f"layers[{n}]") for n, raw in enumerate(raw_layers)]


def wasm_layer(manifest: dict[str, Any]) -> tuple[Descriptor, Descriptor]:
    """The (config, Wasm layer) descriptors of an image manifest. Raises ``ArtifactError``."""
    if manifest.get("schemaVersion") != 2:
        raise ArtifactError(f"unsupported manifest schemaVersion {_short(manifest.get('schemaVersion'))} (expected 2)")
    config = Descriptor.parse(manifest.get("config"), "config")
    layers = wasm_layers_of(manifest)
    wasm = [layer for layer in layers if layer.media_type in WASM_LAYERS]
    if not wasm:
        kinds = _some(sorted({layer.media_type for layer in layers})) or "none"
        raise ArtifactError(
            f"not a Wasm artifact: no {WASM_LAYER} layer (layers: {kinds}; config: {_short(config.media_type)}); "
            "is this an ordinary container image?"
        )
    if len(wasm) > 1:
        raise ArtifactError(f"ambiguous Wasm artifact: {len(wasm)} Wasm layers, expected exactly one")
    return config, wasm[0]


@dataclasses.dataclass(frozen=True)
class ConfigClaims:
    """What a v0 config says about its layer: held against the layer's bytes by ``check_layer``."""

    os: str | None  # wasip1, wasip2, or not said
    component: ComponentInterfaces | None  # the ``component`` object, if the config has one
    target: str | None = None


def _names(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ArtifactError(f"the Wasm config's {what} is not a list of names")
    return tuple(value)


def _component_claim(body: dict[str, Any]) -> tuple[ComponentInterfaces | None, str | None]:
    raw = body.get("component")
    if raw is None:
        return None, None
    if not isinstance(raw, dict):
        raise ArtifactError(f"the Wasm config's component is {_short(raw)}, expected an object")
    target = raw.get("target")
    if target is not None and not isinstance(target, str):
        raise ArtifactError(f"the Wasm config's component.target is {_short(target)}, expected a world name")
    return ComponentInterfaces(_names(raw.get("imports"), "component.imports"),
                               _names(raw.get("exports"), "component.exports")), target


def check_config(config: Descriptor, data: bytes, layer: Descriptor,
                 layers: Sequence[Descriptor] | None = None) -> ConfigClaims | None:
    """Check a ``application/vnd.wasm.config.v0+json`` config against the manifest; return what it claims.

    ``layers``: every layer of the manifest, which ``layerDigests`` must list in order (the
    layout's rule); without them, it must at least list ``layer``. Other configs: None.
    """
    if config.media_type != WASM_CONFIG_V0:
        return None  # older or foreign configs carry nothing wasmlet relies on
    body = load_json(data, "the Wasm config")
    if body.get("architecture") not in (None, "wasm"):
        raise ArtifactError(f"the Wasm config says architecture {_short(body.get('architecture'))}, expected 'wasm'")
    os_name = body.get("os")
    if os_name not in (None, MODULE_OS, COMPONENT_OS):
        raise ArtifactError(f"the artifact is for os {_short(os_name)}; wasmlet runs core modules (wasip1) "
                            "and components (wasip2)")
    if "layerDigests" in body:
        digests = _names(body["layerDigests"], "layerDigests")
        expected = [desc.digest for desc in layers] if layers is not None else None
        if expected is not None and list(digests) != expected:
            raise ArtifactError(f"the Wasm config's layerDigests ({_some(list(digests)) or 'none'}) do not match "
                                f"the manifest's layers ({_some(expected)})")
        if layer.digest not in digests:
            raise ArtifactError(f"the Wasm config's layerDigests do not list the layer {layer.digest}")
    component, target = _component_claim(body)
    if component is not None and os_name == MODULE_OS:
        raise ArtifactError("the Wasm config describes a component but says os wasip1 (a core module)")
    return ConfigClaims(os_name, component, target)


def _differences(claimed: tuple[str, ...], actual: tuple[str, ...], verb: str) -> list[str]:
    claimed_set, actual_set = set(claimed), set(actual)
    missing = [name for name in actual if name not in claimed_set]
    extra = [name for name in claimed if name not in actual_set]
    problems = []
    if missing:
        problems.append(f"it {verb} {_some(missing)}, which the config leaves out")
    if extra:
        problems.append(f"the config lists {_some(extra)}, which it does not {verb.removesuffix('s')}")
    return problems


def check_layer(claims: ConfigClaims | None, data: bytes) -> None:
    """Refuse a layer that is not what its v0 config says it is. Raises ``ArtifactError``."""
    if claims is None:
        return
    is_component = data[:8] == _COMPONENT_HEADER
    if claims.os == COMPONENT_OS and not is_component:
        raise ArtifactError("the Wasm config says os wasip2 (a component), but the layer is not a component"
                            + (" (it is a core module)" if data[:8] == _CORE_MODULE_HEADER else ""))
    if claims.os == MODULE_OS and is_component:
        raise ArtifactError("the Wasm config says os wasip1 (a core module), but the layer is a component")
    if claims.component is None:
        return
    if not is_component:
        raise ArtifactError("the Wasm config describes a component, but the layer is not one")
    try:
        actual = component_interfaces(data)
    except MalformedComponent as exc:
        raise ArtifactError(f"the layer cannot be read as a component: {exc}") from exc
    problems = (_differences(claims.component.imports, actual.imports, "imports")
                + _differences(claims.component.exports, actual.exports, "exports"))
    if problems:
        raise ArtifactError("the Wasm config does not describe the component: " + "; ".join(problems))
