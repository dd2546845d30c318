"""The egress check after DNS, for a target the manifest's patterns allow.

**After DNS** (``resolve_and_check``), for a target the patterns allow: every
address the name resolves to must be *public*, unless it is allowed
*explicitly*. An address is **internal** when it is not globally routable:
loopback, private (RFC 1918, ULA ``fc00::/7``), link-local (``169.254/16``,
``fe80::/10``), shared CGNAT (``100.64/10``), unspecified, multicast,
documentation and reserved ranges (from IANA's special-purpose tables in
``wasmlet.plan``, not ``ipaddress``' version-dependent ``is_global``), every
IPv6 address outside ``2000::/3`` (site-local ``fec0::/10`` included), and an
IPv4 address carried in IPv6 whenever that IPv4 address is internal: mapped
``::ffff:a.b.c.d``, compatible ``::a.b.c.d``, translated ``::ffff:0:a.b.c.d``,
NAT64 ``64:ff9b::/96`` and local-use ``64:ff9b:1::/48``, 6to4 ``2002::/16``
and Teredo ``2001::/32`` (its server and its inverted client). An internal
address is allowed only if

1. the target names it by a pattern that matched with a *literal* host
   (``http://localhost:8080`` allows whatever ``localhost`` resolves to;
   ``postgres://db.internal:5432`` allows ``db.internal``'s private address), or
2. a pattern whose scheme and port match the target has an IP or CIDR host
   that contains the address (``*://10.0.0.0/8:*``).

A wildcard host (``*``, ``*.example.com``) never reaches an internal address
on its own: ``https://*.example.com`` does not let ``evil.example.com`` resolve
to ``127.0.0.1`` or to the cloud metadata address ``169.254.169.254``. If any
address of the answer is refused the whole request is refused (an attacker
who controls DNS would otherwise choose the address). The connection is then
made to the checked addresses only (see ``_wasi_http``), never by resolving
the name again.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence

from .._errors import EgressDenied
from ..plan import AllowedHost, Target, is_internal, parse_allowed_hosts, parse_target

__all__ = ["CheckedTarget", "Resolver", "resolve_and_check", "system_resolver"]

Resolver = Callable[[str, int], Sequence[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """``getaddrinfo`` for TCP, addresses in the resolver's order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        if address not in out:
            out.append(address)
    return out


@dataclasses.dataclass(frozen=True)
class CheckedTarget:
    """A target the policy allows, with the addresses it may be reached at (in order)."""

    target: Target
    addresses: tuple[str, ...]
    port: int


def resolve_and_check(
    url_or_hostport: str | Target,
    allowed_outbound_hosts: Iterable[str | AllowedHost],
    resolver: Resolver = system_resolver,
) -> CheckedTarget:
    """Match, resolve, check every address; raise ``EgressDenied`` with the reason."""
    patterns = parse_allowed_hosts(allowed_outbound_hosts)
    try:
        target = url_or_hostport if isinstance(url_or_hostport, Target) else parse_target(url_or_hostport)
    except ValueError as exc:
        raise EgressDenied(str(url_or_hostport), f"not a valid URL or HOST:PORT ({exc})") from exc
    shown = f"{target.scheme}://{target.authority}" if target.scheme else target.authority
    matched = [p for p in patterns if p.allows(target)]
    if not matched:
        raise EgressDenied(shown, "no allowedOutboundHosts entry matches")
    port = target.effective_port
    if port is None:
        raise EgressDenied(shown, "no port, and the scheme has no well-known port")
    literal = target.ip
    if literal is not None:
        addresses: Sequence[str] = [str(literal)]
    else:
        try:
            addresses = resolver(target.host, port)
        except OSError as exc:
            raise EgressDenied(shown, f"cannot resolve {target.host}: {exc}") from exc
        if not addresses:
            raise EgressDenied(shown, f"{target.host} resolves to no address")
    named_explicitly = any(p.kind == "name" for p in matched)
    ranges = [p for p in patterns if p.kind in ("ip", "cidr") and p.allows_scheme_port(target)]
    for text in addresses:
        address = ipaddress.ip_address(text)
        if not is_internal(address):
            continue
        if literal is None and named_explicitly:
            continue
        if any(p.contains_address(address) for p in ranges):
            continue
        where = f"{target.host} resolves to {address}, " if literal is None else ""
        raise EgressDenied(
            shown,
            f"{where}an internal address (loopback, private, link-local or reserved) "
            "that no entry allows explicitly (name the host, its address or a CIDR range)",
        )
    return CheckedTarget(target, tuple(str(ipaddress.ip_address(a)) for a in addresses), port)
