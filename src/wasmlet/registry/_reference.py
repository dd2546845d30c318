"""Parsing ``oci://HOST[:PORT]/REPOSITORY[:TAG][@sha256:HEX]`` references.

The grammar is the one of the OCI distribution spec ("Pulling manifests":
``<name>`` and ``<reference>``). The registry host is always spelled out (no
implicit ``docker.io`` for a bare ``nginx``), because a module that silently
comes from somewhere else is worse than a typo error. Docker Hub is spelled
the way docker, oras and skopeo spell it: ``docker.io`` (or
``index.docker.io``) means the registry API at ``registry-1.docker.io``, and
a one-segment repository there is an official image under ``library/``
(``oci://docker.io/hello`` is ``registry-1.docker.io/library/hello``).
A reference with neither tag nor digest means ``:latest``, as docker does;
with both, the digest wins and the tag is kept only for messages.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re

from .._errors import ModuleSourceError

__all__ = [
    "DOCKER_HUB",
    "DOCKER_HUB_SERVER",
    "Reference",
    "canonical_registry",
    "is_docker_hub",
    "is_loopback",
    "parse_reference",
    "registry_hostname",
]

SCHEME = "oci://"
DEFAULT_TAG = "latest"
# Docker Hub: the host its registry API answers on, the names people give it, and the
# server address ``docker login`` uses for it (its config.json key and what its
# credential helpers are asked for).
DOCKER_HUB = "registry-1.docker.io"
DOCKER_HUB_NAMES = frozenset({"docker.io", "index.docker.io", DOCKER_HUB})
DOCKER_HUB_SERVER = "https://index.docker.io/v1/"

# distribution-spec, "Pulling manifests": <name> and tag grammar.
_NAME = re.compile(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
# Only sha256: it is the one algorithm image-spec requires registries to support.
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_LABEL = r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?"
_HOST = re.compile(rf"^(\[[0-9A-Fa-f:.]+\]|{_LABEL}(\.{_LABEL})*)(:[0-9]{{1,5}})?$")


def is_loopback(host: str) -> bool:
    """``host`` (without port; IPv6 with or without brackets) names this machine."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_docker_hub(registry: str) -> bool:
    """``registry`` (host[:port]) is one of Docker Hub's names."""
    return registry.lower() in DOCKER_HUB_NAMES


def canonical_registry(registry: str) -> str:
    """The host[:port] to send requests to: Docker Hub's names become its API host; others are kept, lower-cased."""
    return DOCKER_HUB if is_docker_hub(registry) else registry.lower()


def registry_hostname(registry: str) -> str:
    """Validate ``host[:port]`` and return the host (IPv6 without brackets). Raises ``ModuleSourceError``."""
    if not _HOST.match(registry):
        raise ModuleSourceError(f"{registry!r} is not a registry host[:port]")
    if registry.startswith("["):
        return registry[1:registry.index("]")]
    return registry.rsplit(":", 1)[0] if ":" in registry else registry


@dataclasses.dataclass(frozen=True)
class Reference:
    registry: str  # host[:port], as written
    repository: str
    tag: str | None
    digest: str | None  # "sha256:<hex>" of the manifest

    @property
    def hostname(self) -> str:
        """The host without its port (IPv6 without brackets)."""
        return registry_hostname(self.registry)

    @property
    def target(self) -> str:
        """What goes after ``/manifests/``: the digest if pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def repo_key(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def tag_key(self) -> str:
        """The key of this tag in the local tag index."""
        return f"{self.repo_key}:{self.tag or DEFAULT_TAG}"

    def with_digest(self, digest: str) -> Reference:
        return dataclasses.replace(self, digest=digest)

    def __str__(self) -> str:
        text = f"{SCHEME}{self.repo_key}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> Reference:
    """Parse ``oci://host/repo:tag`` (the ``oci://`` may be left out). Raises ``ModuleSourceError``."""
    rest = text[len(SCHEME):] if text.lower().startswith(SCHEME) else text
    if "/" not in rest:
        raise ModuleSourceError(f"{text!r}: not an OCI reference; expected oci://HOST[:PORT]/REPOSITORY[:TAG]")
    registry, remainder = rest.split("/", 1)
    if not registry or not _HOST.match(registry):
        raise ModuleSourceError(f"{text!r}: {registry!r} is not a registry host[:port]")
    digest: str | None = None
    if "@" in remainder:
        remainder, digest = remainder.split("@", 1)
        if not _DIGEST.match(digest):
            raise ModuleSourceError(f"{text!r}: {digest!r} is not a digest; expected sha256:<64 lower-case hex>")
    tag: str | None = None
    # A ':' after the last '/' starts the tag; before it, it would be part of a path.
    last = remainder.rsplit("/", 1)[-1]
    if ":" in last:
        remainder, tag = remainder.rsplit(":", 1)
        if not _TAG.match(tag):
            raise ModuleSourceError(f"{text!r}: {tag!r} is not a valid tag ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})")
    if not _NAME.match(remainder):
        raise ModuleSourceError(
            f"{text!r}: {remainder!r} is not a valid repository name "
            "(lower-case letters, digits and . _ - separated by /)"
        )
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    if is_docker_hub(registry) and "/" not in remainder:
        remainder = f"library/{remainder}"  # docker's "official image" namespace, as docker pull resolves it
    return Reference(canonical_registry(registry), remainder, tag, digest)
