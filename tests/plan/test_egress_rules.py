"""What counts as an internal address, from a table: every IPv4-embedding form and deprecated range.

Issue 14 found ``::7f00:1``, ``::ffff:0:7f00:1``, ``64:ff9b:1::/48`` and
``fec0::/10`` passing ``is_internal``; the table holds each form that carries an
IPv4 address, with an internal and a public one, and the ranges that are
never globally reachable. The properties check the same for every IPv4
address, and that nothing ``ipaddress`` calls non-global is called public.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.fuzz._fuzz import fuzz

from wasmlet.plan import is_internal

LOOPBACK = int(ipaddress.IPv4Address("127.0.0.1"))
METADATA = int(ipaddress.IPv4Address("169.254.169.254"))
PUBLIC = int(ipaddress.IPv4Address("93.184.216.34"))


def v6(value: int) -> str:
    return str(ipaddress.IPv6Address(value))


# Each form of an IPv6 address that carries an IPv4 address (RFC numbers in plan/_egress.py).
FORMS: dict[str, Callable[[int], str]] = {
    "IPv4-mapped ::ffff:a.b.c.d": lambda v4: v6(0xFFFF << 32 | v4),
    "IPv4-compatible ::a.b.c.d": lambda v4: v6(v4),
    "IPv4-translated ::ffff:0:a.b.c.d": lambda v4: v6(0xFFFF << 48 | v4),
    "NAT64 64:ff9b::/96": lambda v4: v6(0x64FF9B << 96 | v4),
    "local-use NAT64 64:ff9b:1::/48": lambda v4: v6(0x64FF9B0001 << 80 | v4),
    "6to4 2002::/16": lambda v4: v6(0x2002 << 112 | v4 << 80 | 1),
    "Teredo client 2001::/32": lambda v4: v6(0x20010000 << 96 | PUBLIC << 64 | (v4 ^ 0xFFFFFFFF)),
    "Teredo server 2001::/32": lambda v4: v6(0x20010000 << 96 | v4 << 64 | (PUBLIC ^ 0xFFFFFFFF)),
}
# Forms that reach the IPv4 address they carry, so a public one is public; the others are never routed.
REACHES_ITS_IPV4 = {"IPv4-mapped ::ffff:a.b.c.d", "NAT64 64:ff9b::/96", "6to4 2002::/16"}

TABLE = [
    # The four addresses of issue 14, as found.
    ("::7f00:1", True),
    ("::ffff:0:7f00:1", True),
    ("64:ff9b:1::7f00:1", True),
    ("fec0::1", True),
    # Every form, with loopback, the metadata address and a public address inside.
    *[(make(v4), True) for make in FORMS.values() for v4 in (LOOPBACK, METADATA)],
    *[(make(PUBLIC), name not in REACHES_ITS_IPV4) for name, make in FORMS.items()],
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", True),  # Teredo, client 127.0.0.1 stored inverted (RFC 4380)
    # IPv4 ranges not globally reachable.
    ("0.0.0.0", True), ("0.1.2.3", True), ("10.0.0.5", True), ("100.64.0.1", True), ("127.0.0.1", True),
    ("169.254.169.254", True), ("172.16.3.4", True), ("192.0.0.8", True), ("192.0.2.1", True),
    ("192.88.99.1", True), ("192.168.1.1", True), ("198.18.0.1", True), ("198.51.100.1", True),
    ("203.0.113.1", True), ("224.0.0.1", True), ("239.255.255.250", True), ("240.0.0.1", True),
    ("255.255.255.255", True),
    ("93.184.216.34", False), ("8.8.8.8", False), ("1.1.1.1", False),
    # IPv6 ranges not globally reachable, deprecated ones included.
    ("::", True), ("::1", True), ("100::1", True), ("fc00::1", True), ("fd12:3456::1", True), ("fe80::1", True),
    ("fe80::1%eth0", True), ("fec0::1", True), ("feff::1", True), ("ff02::1", True), ("ff0e::1", True),
    ("2001:db8::1", True), ("2001:2::1", True), ("2001:10::1", True), ("3fff::1", True), ("5f00::1", True),
    ("4000::1", True), ("1::1", True),  # outside 2000::/3: unallocated
    ("2606:2800:220:1:248:1893:25c8:1946", False), ("2001:4860:4860::8888", False), ("2a00:1450::1", False),
]


@pytest.mark.parametrize(("address", "internal"), TABLE)
def test_is_internal(address: str, internal: bool) -> None:
    assert is_internal(address) is internal
    assert is_internal(ipaddress.ip_address(address)) is internal


INTERNAL_V4 = st.sampled_from(["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
                               "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4"]).flatmap(
    lambda net: st.integers(int(ipaddress.IPv4Network(net).network_address),
                            int(ipaddress.IPv4Network(net).broadcast_address)))


@fuzz(200)
@given(INTERNAL_V4, st.sampled_from(sorted(FORMS)))
def test_every_form_of_an_internal_ipv4_address_is_internal(v4: int, form: str) -> None:
    assert is_internal(ipaddress.IPv4Address(v4))
    assert is_internal(FORMS[form](v4))


@fuzz(300)
@given(st.ip_addresses())
def test_nothing_ipaddress_calls_non_global_is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    carries_public_ipv4 = isinstance(address, ipaddress.IPv6Address) and (
        address.ipv4_mapped is not None or address in ipaddress.IPv6Network("64:ff9b::/96")
        or address.sixtofour is not None)
    if (not address.is_global or address.is_multicast) and not carries_public_ipv4:
        assert is_internal(address)
