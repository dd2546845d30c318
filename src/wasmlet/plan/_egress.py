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

**Internal addresses** (``is_internal``), from tables rather than from
``ipaddress``'s ``is_global`` (whose tables change between Python patch
releases):

- IPv4: the ranges the IANA IPv4 Special-Purpose Address Registry marks not
  globally reachable (``this network``, RFC 1918, CGNAT, loopback,
  link-local with the cloud metadata address, IETF protocol assignments,
  documentation, benchmarking, the deprecated 6to4 relay anycast), multicast
  and the reserved ``240.0.0.0/4``;
- IPv6 that carries an IPv4 address is internal when that address is, in
  every form: IPv4-mapped ``::ffff:a.b.c.d`` and IPv4-compatible ``::a.b.c.d``
  (RFC 4291, section 2.5.5), IPv4-translated ``::ffff:0:a.b.c.d`` (RFC 2765,
  section 2.1), NAT64 ``64:ff9b::/96`` (RFC 6052), 6to4 ``2002::/16``
  (RFC 3056) and Teredo ``2001::/32`` (RFC 4380: the server address, and the
  client address stored inverted);
- other IPv6 is internal outside ``2000::/3``, the only space IANA allocates
  for global unicast (that covers loopback, unspecified, IPv4-compatible and
  -translated, local-use NAT64 ``64:ff9b:1::/48`` (RFC 8215), discard
  ``100::/64``, ULA ``fc00::/7``, link-local ``fe80::/10``, the deprecated
  site-local ``fec0::/10`` (RFC 3879) and multicast ``ff00::/8``), and inside
  it in the IETF protocol block ``2001::/23`` (Teredo included), documentation
  ``2001:db8::/32`` and ``3fff::/20``, and SRv6 SIDs ``5f00::/16``.

IPv4-mapped, NAT64 ``64:ff9b::/96`` and 6to4 addresses of a *public* IPv4
address are public: on an IPv6-only network with DNS64 every IPv4 destination
looks like ``64:ff9b::a.b.c.d``. A network-specific NAT64 prefix (RFC 6052,
section 2.2) cannot be told from the address: refuse it with the network
policy around the host.
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
    "embedded_ipv4",
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

# IANA IPv4 Special-Purpose Address Registry, "Globally Reachable: False", and multicast/reserved.
_INTERNAL_V4 = tuple(ipaddress.IPv4Network(net) for net in (
    "0.0.0.0/8",  # "this network" (RFC 791); Linux connects 0.0.0.0 to the local host
    "10.0.0.0/8",  # private (RFC 1918)
    "100.64.0.0/10",  # shared address space, carrier-grade NAT (RFC 6598)
    "127.0.0.0/8",  # loopback (RFC 1122)
    "169.254.0.0/16",  # link-local (RFC 3927), cloud metadata 169.254.169.254
    "172.16.0.0/12",  # private (RFC 1918)
    "192.0.0.0/24",  # IETF protocol assignments (RFC 6890)
    "192.0.2.0/24",  # documentation TEST-NET-1 (RFC 5737)
    "192.88.99.0/24",  # 6to4 relay anycast, deprecated (RFC 7526)
    "192.168.0.0/16",  # private (RFC 1918)
    "198.18.0.0/15",  # benchmarking (RFC 2544)
    "198.51.100.0/24",  # documentation TEST-NET-2 (RFC 5737)
    "203.0.113.0/24",  # documentation TEST-NET-3 (RFC 5737)
    "224.0.0.0/4",  # multicast (RFC 5771)
    "240.0.0.0/4",  # reserved (RFC 1112), broadcast 255.255.255.255 included
))
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_INTERNAL_V6 = tuple(ipaddress.IPv6Network(net) for net in (
    "2001::/23",  # IETF protocol assignments (RFC 2928): Teredo, benchmarking, ORCHID, ...
    "2001:db8::/32",  # documentation (RFC 3849)
    "3fff::/20",  # documentation (RFC 9637)
    "5f00::/16",  # SRv6 SIDs (RFC 9602)
))
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291, section 2.5.5.1 (deprecated)
_V4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765, section 2.1
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052, the well-known prefix


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
    if not host or len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
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
    if scheme_text != "*" and not _SCHEME.fullmatch(scheme_text):
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


def embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address carries, in each form that carries one (module docstring)."""
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        return (address.ipv4_mapped,)
    if address in _V4_COMPATIBLE or address in _V4_TRANSLATED or address in _NAT64:
        return (low,)
    if address.sixtofour is not None:
        return (address.sixtofour,)
    if address.teredo is not None:
        return address.teredo  # (server, client); ipaddress undoes the client's inversion
    return ()


def is_internal(address: IPAddress | str) -> bool:
    """Not globally reachable (the module docstring has the list). ``ValueError`` for a bad address."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv4Address):
        return any(ip in net for net in _INTERNAL_V4)
    if any(is_internal(v4) for v4 in embedded_ipv4(ip)):
        return True
    if ip.ipv4_mapped is not None or ip in _NAT64 or ip.sixtofour is not None:
        return False  # reaches the IPv4 address it carries, which is public
    return ip not in _GLOBAL_UNICAST or any(ip in net for net in _INTERNAL_V6)
