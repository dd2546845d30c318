"""The egress policy: Spin's pattern semantics, and the after-DNS rule."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from wasmlet import EgressDenied
from wasmlet.guest import resolve_and_check
from wasmlet.plan import is_allowed, is_internal, parse_allowed_host


@pytest.mark.parametrize(("target", "patterns", "expected"), [
    # exact host; the port defaults to the scheme's
    ("https://api.example.com/v1?x=1", ["https://api.example.com"], True),
    ("https://api.example.com:443/", ["https://api.example.com"], True),
    ("https://api.example.com:8443/", ["https://api.example.com"], False),
    ("http://api.example.com/", ["https://api.example.com"], False),
    ("https://API.Example.COM./", ["https://api.example.com"], True),
    ("https://other.example.com/", ["https://api.example.com"], False),
    # subdomain wildcard: any name under the suffix, not the suffix itself
    ("https://a.example.com/", ["https://*.example.com:443"], True),
    ("https://a.b.example.com/", ["https://*.example.com:443"], True),
    ("https://example.com/", ["https://*.example.com:443"], False),
    ("https://evilexample.com/", ["https://*.example.com:443"], False),
    # any host, any port, any scheme
    ("https://anything.test:8443/", ["https://*:*"], True),
    ("http://anything.test:8443/", ["https://*:*"], False),
    ("http://anything.test:8443/", ["*://*:*"], True),
    ("https://a.test:9000/", ["https://a.test:*"], True),
    # port ranges: Spin's A..B, B excluded
    ("http://a.test:8000/", ["http://a.test:8000..8010"], True),
    ("http://a.test:8009/", ["http://a.test:8000..8010"], True),
    ("http://a.test:8010/", ["http://a.test:8000..8010"], False),
    # IP literals and CIDR ranges; a name pattern never matches an address
    ("http://10.1.2.3/", ["http://10.0.0.0/8"], True),
    ("http://11.1.2.3/", ["http://10.0.0.0/8"], False),
    ("http://[::1]:8080/", ["http://[::1]:8080"], True),
    ("http://[0:0::1]:8080/", ["http://[::1]:8080"], True),
    ("http://127.0.0.1/", ["http://localhost"], False),
    # non-HTTP schemes and bare HOST:PORT (scheme unknown: host and port only)
    ("postgres://db.internal/shop", ["postgres://db.internal:5432"], True),
    ("postgres://db.internal:5433/shop", ["postgres://db.internal:5432"], False),
    ("db.internal:5432", ["postgres://db.internal:5432"], True),
    ("db.internal:6379", ["postgres://db.internal:5432"], False),
    ("redis://cache:6379", ["redis://cache"], True),
    # nothing allowed, or garbage
    ("https://api.example.com/", [], False),
    ("not a url", ["*://*:*"], False),
    ("https://:443/", ["*://*:*"], False),
])
def test_is_allowed(target: str, patterns: list[str], expected: bool) -> None:
    assert is_allowed(target, patterns) is expected


@pytest.mark.parametrize(("pattern", "message"), [
    ("example.com", "SCHEME://HOST"),
    ("*", "SCHEME://HOST"),
    ("h1ttp://x.test", "letters"),
    ("https://x.test/path", "no path"),
    ("https://*.*.x.test", "first label"),
    ("https://x*.test", "wildcard"),
    ("tcp://x.test", "no well-known port"),
    ("https://x.test:0", "out of range"),
    ("https://x.test:99999", "out of range"),
    ("https://x.test:abc", "must be a number"),
    ("https://x.test:9..3", "out of range"),
    ("https://::1:80", "brackets"),
    ("http://self", "not supported"),
    ("https://exa mple.com", "not a valid host"),
])
def test_bad_patterns(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_allowed_host(pattern)


def test_trailing_slash_is_fine() -> None:
    assert parse_allowed_host("https://x.test/").host == "x.test"


@pytest.mark.parametrize(("address", "internal"), [
    ("127.0.0.1", True), ("10.0.0.5", True), ("172.16.3.4", True), ("192.168.1.1", True),
    ("169.254.169.254", True), ("100.64.0.1", True), ("0.0.0.0", True), ("224.0.0.1", True),
    ("::1", True), ("fd00::1", True), ("fe80::1", True), ("::", True),
    ("::ffff:127.0.0.1", True), ("64:ff9b::a00:1", True), ("2002:7f00:1::", True),
    ("93.184.216.34", False), ("2606:2800:220:1:248:1893:25c8:1946", False), ("64:ff9b::5db8:d822", False),
])
def test_is_internal(address: str, internal: bool) -> None:
    assert is_internal(address) is internal


def fake_dns(table: dict[str, Sequence[str]]):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> Sequence[str]:
        if host not in table:
            raise OSError(f"no such host {host}")
        return table[host]
    return resolve


DNS = fake_dns({
    "api.example.com": ["93.184.216.34"],
    "evil.example.com": ["127.0.0.1"],
    "mixed.example.com": ["93.184.216.34", "10.0.0.1"],
    "metadata.example.com": ["169.254.169.254"],
    "db.internal": ["10.20.0.5"],
    "localhost": ["127.0.0.1", "::1"],
})


def test_public_names_pass_and_pin_their_addresses() -> None:
    checked = resolve_and_check("https://api.example.com/x", ["https://*.example.com"], DNS)
    assert checked.addresses == ("93.184.216.34",) and checked.port == 443


@pytest.mark.parametrize("host", ["evil.example.com", "mixed.example.com", "metadata.example.com"])
def test_a_wildcard_never_reaches_an_internal_address(host: str) -> None:
    with pytest.raises(EgressDenied, match="internal address"):
        resolve_and_check(f"https://{host}/", ["https://*.example.com", "*://*:*"], DNS)


def test_an_explicit_name_may_be_internal() -> None:
    # The seed's wasm-to-db: TCP 5432 to the database tier only.
    policy = ["postgres://db.internal:5432"]
    assert resolve_and_check("postgres://db.internal:5432", policy, DNS).addresses == ("10.20.0.5",)
    assert resolve_and_check("db.internal:5432", policy, DNS).addresses == ("10.20.0.5",)
    with pytest.raises(EgressDenied, match="no allowedOutboundHosts entry"):
        resolve_and_check("db.internal:22", policy, DNS)
    with pytest.raises(EgressDenied, match="no allowedOutboundHosts entry"):
        resolve_and_check("https://api.example.com/", policy, DNS)
    assert resolve_and_check("http://localhost:8080/", ["http://localhost:8080"], DNS).addresses == (
        "127.0.0.1", "::1")


def test_an_address_or_range_may_be_internal() -> None:
    assert resolve_and_check("http://127.0.0.1:8080/", ["http://127.0.0.1:8080"], DNS)
    with pytest.raises(EgressDenied, match="internal address"):
        resolve_and_check("http://127.0.0.1:8080/", ["http://*:8080"], DNS)
    # A name resolving into an allowed range, for the same scheme and port.
    policy = ["https://*.example.com", "https://127.0.0.0/8"]
    assert resolve_and_check("https://evil.example.com/", policy, DNS).addresses == ("127.0.0.1",)
    with pytest.raises(EgressDenied):
        resolve_and_check("https://evil.example.com/", ["https://*.example.com", "http://127.0.0.0/8"], DNS)


def test_unresolvable_and_bad_targets() -> None:
    with pytest.raises(EgressDenied, match="cannot resolve"):
        resolve_and_check("https://nowhere.example.com/", ["https://*.example.com"], DNS)
    with pytest.raises(EgressDenied, match="not a valid URL"):
        resolve_and_check("https://exa mple.com/", ["*://*:*"], DNS)
