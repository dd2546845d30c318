"""The egress policy: Spin's ``allowed_outbound_hosts``, then a check after DNS.

**Patterns** (Spin's grammar and meaning, ``spin-outbound-networking``):
``SCHEME://HOST[:PORT]``, optionally with a trailing ``/`` but no path.

- ``SCHEME``: letters, or ``*`` for any scheme;
- ``HOST``: a name (``api.example.com``, compared case-insensitively), an IP
  address (``10.1.2.3``, ``[::1]``), a CIDR range (``10.0.0.0/8``), ``*.SUFFIX``
  (any name *under* ``SUFFIX``, not ``SUFFIX`` itself), or ``*`` (any host);
- ``PORT``: a number, a range ``A..B`` (``A`` included, ``B`` excluded, as in
  Spin), or ``*``; when absent, the scheme's well-known port (``http`` 80,
  ``https`` 443, ``postgres`` 5432, ``mysql`` 3306, ``redis`` 6379, ``mqtt``
  1883), and a pattern with neither is refused.

``is_allowed(target, patterns)`` is that match alone (pure). A target is a URL
(``https://api.example.com/x``, port from the URL or the scheme's default) or
a bare ``HOST:PORT`` (then the scheme is not known and only host and port
are compared, as a layer-4 policy would).

This is the pure half: patterns, targets, what counts as internal. The check
after DNS, which resolves names, is the guest sandbox's (``wasmlet.guest``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = [
    "WELL_KNOWN_PORTS",
    "AllowedHost",
    "IPAddress",
    "Target",
    "is_allowed",
    "is_internal",
    "parse_allowed_host",
    "parse_allowed_hosts",
    "parse_target",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

WELL_KNOWN_PORTS = {"http": 80, "https": 443, "postgres": 5432, "mysql": 3306, "redis": 6379, "mqtt": 1883}
_SCHEME = re.compile(r"^[A-Za-z]+$")
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _normalise_name(host: str) -> str:
    host = host.rstrip(".").lower()
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    labels = host.split(".")
    if not host or len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"{host!r} is not a valid host name")
    return host


@dataclasses.dataclass(frozen=True)
class AllowedHost:
    """One parsed ``allowedOutboundHosts`` entry."""

    original: str
    scheme: str | None  # None: any scheme
    kind: str  # "any", "subdomain", "name", "ip", "cidr"
    host: str = ""  # "name": the name; "subdomain": ".suffix"; "ip": the address
    network: IPNetwork | None = None  # "ip" (a /32 or /128) and "cidr"
    ports: tuple[int, int] | None = None  # [low, high) or None for any

    @property
    def explicit(self) -> bool:
        """True for a literal name, an address or a range: the owner named this host."""
        return self.kind in ("name", "ip", "cidr")

    def allows_scheme_port(self, target: Target) -> bool:
        if self.scheme is not None and target.scheme is not None and self.scheme != target.scheme:
            return False
        if self.ports is None:
            return True
        port = target.effective_port
        return port is not None and self.ports[0] <= port < self.ports[1]

    def allows_host(self, target: Target) -> bool:
        address = target.ip
        if self.kind == "any":
            return True
        if self.kind == "subdomain":
            return address is None and target.host.endswith(self.host)
        if self.kind == "name":
            return address is None and target.host == self.host
        assert self.network is not None
        return address is not None and _unmap(address) in self.network

    def allows(self, target: Target) -> bool:
        return self.allows_scheme_port(target) and self.allows_host(target)

    def contains_address(self, address: IPAddress) -> bool:
        return self.network is not None and _unmap(address) in self.network


def parse_allowed_host(text: str) -> AllowedHost:
    """Parse one pattern; raise ``ValueError`` saying what is wrong."""
    original = text
    text = text.strip()
    scheme_text, sep, rest = text.partition("://")
    if not sep:
        raise ValueError(
            f"{original!r}: expected SCHEME://HOST[:PORT] such as https://api.example.com "
            "('*://*:*' allows everything and disables egress control)"
        )
    if scheme_text != "*" and not _SCHEME.match(scheme_text):
        raise ValueError(f"{original!r}: the scheme must be letters or '*'")
    scheme = None if scheme_text == "*" else scheme_text.lower()
    if rest.endswith("/"):
        rest = rest.rstrip("/")
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            raise ValueError(f"{original!r}: unclosed '[' in an IPv6 host")
        host_text, port_text = rest[1:close], rest[close + 1:]
        if port_text and not port_text.startswith(":"):
            raise ValueError(f"{original!r}: expected ':PORT' after the IPv6 host")
        port_text = port_text[1:]
    else:
        host_text, _, port_text = rest.partition(":") if rest.count(":") <= 1 else ("", "", "")
        if rest.count(":") > 1:
            raise ValueError(f"{original!r}: write an IPv6 host in brackets, as [::1]")
    if "/" in host_text and _ip(host_text.split("/", 1)[0]) is None:
        raise ValueError(f"{original!r}: a pattern has no path")
    ports = _parse_ports(port_text, scheme, original)
    if host_text == "*":
        return AllowedHost(original, scheme, "any", ports=ports)
    if host_text == "self":
        raise ValueError(f"{original!r}: 'self' (Spin service chaining) is not supported by wasmlet")
    if host_text.startswith("*."):
        suffix = host_text[2:]
        if "*" in suffix:
            raise ValueError(f"{original!r}: a wildcard is allowed only as the first label ('*.example.com')")
        return AllowedHost(original, scheme, "subdomain", "." + _normalise_name(suffix), ports=ports)
    if "*" in host_text:
        raise ValueError(f"{original!r}: a wildcard is allowed only as the whole host or the first label")
    if "/" in host_text:
        try:
            network = ipaddress.ip_network(host_text, strict=False)
        except ValueError as exc:
            raise ValueError(f"{original!r}: {exc}") from exc
        return AllowedHost(original, scheme, "cidr", str(network), network, ports)
    address = _ip(host_text)
    if address is not None:
        return AllowedHost(original, scheme, "ip", str(address), ipaddress.ip_network(address), ports)
    try:
        return AllowedHost(original, scheme, "name", _normalise_name(host_text), ports=ports)
    except ValueError as exc:
        raise ValueError(f"{original!r}: {exc}") from exc


def _parse_ports(text: str, scheme: str | None, original: str) -> tuple[int, int] | None:
    if text == "*":
        return None
    if not text:
        port = WELL_KNOWN_PORTS.get(scheme or "")
        if port is None:
            raise ValueError(f"{original!r}: no port, and the scheme has no well-known port; add ':PORT' or ':*'")
        return port, port + 1
    low_text, dots, high_text = text.partition("..")
    try:
        low = int(low_text)
        high = int(high_text) if dots else low + 1
    except ValueError as exc:
        raise ValueError(f"{original!r}: the port must be a number, A..B or '*'") from exc
    if not (0 < low <= 65535 and 0 < high <= 65536 and low < high):
        raise ValueError(f"{original!r}: port out of range")
    return low, high


def parse_allowed_hosts(patterns: Iterable[str | AllowedHost]) -> tuple[AllowedHost, ...]:
    return tuple(p if isinstance(p, AllowedHost) else parse_allowed_host(p) for p in patterns)


@dataclasses.dataclass(frozen=True)
class Target:
    """Where a guest wants to connect."""

    scheme: str | None  # None for a bare HOST:PORT
    host: str  # a normalised name, or an address without brackets
    port: int | None  # as written; None when the URL has none

    @property
    def ip(self) -> IPAddress | None:
        return _ip(self.host)

    @property
    def effective_port(self) -> int | None:
        return self.port if self.port is not None else WELL_KNOWN_PORTS.get(self.scheme or "")

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.port is not None else host


def parse_target(url_or_hostport: str) -> Target:
    """A URL or ``HOST:PORT``; raise ``ValueError`` if it is neither."""
    text = url_or_hostport.strip()
    if "://" not in text:
        text = "tcp-unknown://" + text
        bare = True
    else:
        bare = False
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{url_or_hostport!r}: {exc}") from exc
    host = parts.hostname
    if not host:
        raise ValueError(f"{url_or_hostport!r}: no host")
    if bare and port is None:
        raise ValueError(f"{url_or_hostport!r}: expected HOST:PORT")
    address = _ip(host)
    normalised = str(address) if address is not None else _normalise_name(host)
    return Target(None if bare else parts.scheme.lower(), normalised, port)


def is_allowed(url_or_hostport: str | Target, allowed_outbound_hosts: Iterable[str | AllowedHost]) -> bool:
    """Whether a pattern allows the target (Spin's semantics; no DNS). False for an unparsable target."""
    try:
        target = url_or_hostport if isinstance(url_or_hostport, Target) else parse_target(url_or_hostport)
    except ValueError:
        return False
    return any(p.allows(target) for p in parse_allowed_hosts(allowed_outbound_hosts))


def _unmap(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_internal(address: IPAddress | str) -> bool:
    """Not globally routable (see the module docstring for the list)."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        embedded: ipaddress.IPv4Address | None = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and is_internal(embedded):
            return True
    return not ip.is_global or ip.is_multicast or ip.is_unspecified
