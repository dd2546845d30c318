"""Fuzzing the small parsers of the plan: quantities, durations, egress patterns and targets.

Each parser's API documents ``ValueError`` for bad input, so that is the one
exception allowed; anything else it returns must be in range. Where the
grammar is simple enough, a second implementation (exact fractions) is the
oracle.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from fractions import Fraction

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from tests.fuzz._fuzz import fuzz

from wasmlet import EgressDenied
from wasmlet.guest import resolve_and_check
from wasmlet.plan import (
    AllowedHost,
    Target,
    is_allowed,
    is_internal,
    parse_allowed_host,
    parse_duration,
    parse_quantity,
    parse_target,
)

MAX_QUANTITY = 2**63 - 1
MAX_DURATION = 365 * 24 * 3600.0


# Quantities -------------------------------------------------------------------------------------------
def quantity_or_error(value: str | int | float) -> int | None:
    try:
        result = parse_quantity(value)
    except ValueError as exc:
        assert len(str(exc)) < 200
        return None
    assert isinstance(result, int) and 0 <= result <= MAX_QUANTITY
    return result


@fuzz(300)
@given(st.one_of(st.text(max_size=40), st.integers(), st.floats(),
                 st.text(alphabet="0123456789.+-eEkMGTPi ", max_size=40)))
@example("1e999999999")  # Decimal overflowed: decimal.Overflow, not a ValueError
@example("1e99999")  # a 100,000-digit int
@example("9" * 100_000)
@example("0" * 19 + "\x1f" * 6 + "\U00018cd6" * 12)  # found by bench/fuzz.py: repr's escapes made a long message
def test_quantity_any_input(value: str | int | float) -> None:
    quantity_or_error(value)


SUFFIXES = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


@st.composite
def quantities(draw: st.DrawFn) -> tuple[str, int | None]:
    whole = draw(st.text("0123456789", max_size=33))
    fraction = draw(st.none() | st.text("0123456789", max_size=33))
    number = whole + ("" if fraction is None else "." + fraction)
    exponent = draw(st.none() | st.integers(-1200, 1200))
    suffix = draw(st.sampled_from(sorted(SUFFIXES))) if exponent is None else f"e{exponent}"
    text = draw(st.sampled_from(["", "+"])) + number + suffix
    if (not whole and not fraction) or len(whole) > 30 or len(fraction or "") > 30 or (
            exponent is not None and abs(exponent) > 999):
        return text, None  # outside the grammar: refused
    value = Fraction(number or "0") * (Fraction(10) ** exponent if exponent is not None else SUFFIXES[suffix])
    expected = math.ceil(value)
    return text, expected if expected <= MAX_QUANTITY else None


@fuzz(300)
@given(quantities())
def test_quantity_matches_exact_arithmetic(case: tuple[str, int | None]) -> None:
    text, expected = case
    assert quantity_or_error(text) == expected


# Durations --------------------------------------------------------------------------------------------
def duration_or_error(value: str | int | float) -> float | None:
    try:
        result = parse_duration(value)
    except ValueError as exc:
        assert len(str(exc)) < 200
        return None
    assert isinstance(result, float) and math.isfinite(result) and 0 < result <= MAX_DURATION
    return result


@fuzz(300)
@given(st.one_of(st.text(max_size=40), st.integers(), st.floats(), st.text("0123456789.mshx ", max_size=30)))
@example(float("nan"))  # was returned as the timeout
@example(float("inf"))
@example(10**400)  # float() of it raised OverflowError
@example(-(10**400))
@example("9" * 400 + "s")  # was inf
def test_duration_any_input(value: str | int | float) -> None:
    duration_or_error(value)


UNITS = {"": Fraction(1), "ms": Fraction(1, 1000), "s": Fraction(1), "m": Fraction(60), "h": Fraction(3600)}


@fuzz(200)
@given(st.text("0123456789", min_size=1, max_size=22), st.none() | st.text("0123456789", min_size=1, max_size=22),
       st.sampled_from(["", "ms", "s", "m", "h"]))
def test_duration_matches_exact_arithmetic(whole: str, fraction: str | None, unit: str) -> None:
    number = whole + ("" if fraction is None else "." + fraction)
    seconds = Fraction(number) * UNITS[unit]
    in_grammar = len(whole) <= 20 and len(fraction or "") <= 20
    expected = float(seconds) if in_grammar and 0 < seconds <= Fraction(MAX_DURATION) else None
    result = duration_or_error(number + unit)
    assert result == pytest.approx(expected, rel=1e-12) if expected is not None else result is None


# Egress patterns and targets --------------------------------------------------------------------------
def pattern_or_error(text: str) -> AllowedHost | None:
    try:
        return parse_allowed_host(text)
    except ValueError:
        return None


def target_or_error(text: str) -> Target | None:
    try:
        return parse_target(text)
    except ValueError:
        return None


PATTERN_PIECES = ["http", "https", "*", "://", "[", "]", "::1", "10.0.0.0/8", "/", ":", "..", "80", "*.", "x.test",
                  "ex\u00e4mple.com", "self", "0", "65536", "-1", "a" * 64, ".", "%", "@", "\n", " ", "\u0130"]


@fuzz(300)
@given(st.one_of(st.text(max_size=60), st.lists(st.sampled_from(PATTERN_PIECES), max_size=10).map("".join)))
@example("https://example.com\n:443")  # '$' matches before a trailing newline: a name ending in '\n'
@example("http://" + "a." * 200 + "com")
@example("http://xn--:80")
def test_patterns_and_targets_any_text(text: str) -> None:
    pattern = pattern_or_error(text)
    if pattern is not None and pattern.kind in ("name", "subdomain"):
        assert pattern.host.isascii() and pattern.host.isprintable(), pattern
    target = target_or_error(text)
    if target is not None:
        assert target.host.isprintable() and "\n" not in target.host
        assert target.port is None or 0 <= target.port <= 65535
    assert is_allowed(text, ["*://*:*"]) is (target is not None)


LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
TLD = st.from_regex(r"[a-z]{1,6}", fullmatch=True)  # a name, never an address such as 0.0.0.0
NAME = st.tuples(st.lists(LABEL, max_size=3), TLD).map(lambda parts: ".".join([*parts[0], parts[1]]))


@fuzz(200)
@given(NAME, NAME, st.sampled_from(["http", "https"]), st.integers(1, 65535), st.sampled_from(["", "/", "/a?b"]))
def test_a_named_pattern_allows_that_name_only(name: str, other: str, scheme: str, port: int, path: str) -> None:
    assume(name != other)
    pattern = f"{scheme}://{name}:{port}"
    assert is_allowed(f"{scheme}://{name.upper()}:{port}{path}", [pattern])
    assert not is_allowed(f"{scheme}://{other}:{port}{path}", [pattern])
    assert not is_allowed(f"{scheme}://{name}:{port % 65535 + 1}{path}", [pattern])
    wildcard = f"{scheme}://*.{name}:{port}"
    assert is_allowed(f"{scheme}://{other}.{name}:{port}", [wildcard])
    assert not is_allowed(f"{scheme}://{name}:{port}", [wildcard])  # *.SUFFIX is not SUFFIX itself


@fuzz(200)
@given(st.ip_addresses(), st.integers(0, 128), st.ip_addresses())
@example(ipaddress.IPv6Address("::"), 0, ipaddress.IPv6Address("::ffff:0:0"))  # found by bench/fuzz.py
def test_a_range_pattern_allows_its_addresses(base: ipaddress.IPv4Address | ipaddress.IPv6Address, bits: int,
                                              probe: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    network = ipaddress.ip_network(f"{base}/{min(bits, base.max_prefixlen)}", strict=False)
    host = f"[{network}]" if network.version == 6 else str(network)
    pattern = parse_allowed_host(f"*://{host}:*")
    literal = f"[{probe}]" if probe.version == 6 else str(probe)
    # An IPv4-mapped address is the IPv4 address it maps: only an IPv4 range holds it (not even ::/0), so
    # an IPv6 range never lets a guest reach IPv4 hosts (::ffff:127.0.0.1) by the back door.
    mapped = probe.ipv4_mapped if isinstance(probe, ipaddress.IPv6Address) else None
    expected = mapped in network if mapped is not None else probe in network
    assert is_allowed(f"http://{literal}:8080/", [pattern]) is expected


def resolver_of(addresses: Sequence[str]):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> Sequence[str]:
        return addresses
    return resolve


@fuzz(200)
@given(NAME, st.lists(st.ip_addresses().map(str), min_size=1, max_size=4),
       st.lists(st.sampled_from(["*://*:*", "https://*:443", "https://*.test:*", "http://*:*"]), min_size=1))
def test_a_wildcard_never_reaches_an_internal_address(name: str, answer: list[str], patterns: list[str]) -> None:
    try:
        checked = resolve_and_check(f"https://{name}.test/", patterns, resolver_of(answer))
    except EgressDenied as exc:
        assert "internal address" not in exc.reason or any(is_internal(address) for address in answer)
        return
    assert not any(is_internal(address) for address in checked.addresses)
