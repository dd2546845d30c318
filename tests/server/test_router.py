"""Route matching: pure logic."""

from __future__ import annotations

import pytest

from wasmlet.server import Route, Router, normalise_path


def router() -> Router[str]:
    return Router([
        Route("/", None, "root"),
        Route("/api", None, "api"),
        Route("/api/v2", None, "api-v2"),
        Route("/", "admin.example.com", "admin"),
        Route("/", "*.tenant.example", "tenant"),
        Route("/x", "ported.example:8443", "ported"),
    ])


def target(host: str | None, path: str) -> str | None:
    match = router().match(host, path)
    return match.target if match else None


def test_longest_prefix_on_segment_boundaries() -> None:
    assert target(None, "/api") == "api"
    assert target(None, "/api/items") == "api"
    assert target(None, "/api/v2/items") == "api-v2"
    assert target(None, "/apix") == "root"
    assert target(None, "/") == "root"


def test_host_bound_routes_win_and_ignore_the_port() -> None:
    assert target("admin.example.com", "/api") == "admin"
    assert target("ADMIN.example.com:8080", "/") == "admin"
    assert target("other.example.com", "/api") == "api"


def test_wildcard_hosts() -> None:
    assert target("a.tenant.example", "/") == "tenant"
    assert target("tenant.example", "/") == "root"


def test_host_with_port_must_match_exactly() -> None:
    assert target("ported.example:8443", "/x") == "ported"
    assert target("ported.example", "/x") == "root"


def test_no_match() -> None:
    only = Router([Route("/api", None, "api")])
    assert only.match(None, "/other") is None


@pytest.mark.parametrize(("path", "normal"), [
    ("/", "/"),
    ("/hello/../state", "/state"),
    ("/hello/./../state/x", "/state/x"),
    ("//state", "/state"),
    ("/a//b/", "/a/b/"),
    ("/a/b/..", "/a/"),
    ("/a/.", "/a/"),
    ("/../../state", "/state"),  # above the root stays at the root (RFC 3986 section 5.2.4)
    ("/api/", "/api/"),
    ("*", None),  # OPTIONS *: not a path a guest is routed on
    ("/state/\x00x", None),  # %00 would cut PATH_INFO short in the guest's environment
    ("/state/\nx", None),
    ("/state\x7f", None),
])
def test_normalise_path(path: str, normal: str | None) -> None:
    assert normalise_path(path) == normal


@pytest.mark.parametrize("path", ["/hello/../api", "/hello/..//api/", "//api", "/api/./", "/x/../../api"])
def test_dot_segments_reach_the_route_of_the_normalised_path(path: str) -> None:
    normal = normalise_path(path)
    assert normal is not None
    assert target(None, normal) == "api"


def test_trailing_dot_of_a_host_is_ignored() -> None:
    assert target("admin.example.com.", "/api") == "admin"
    assert target("ADMIN.example.com.:8080", "/") == "admin"
    assert target("a.tenant.example.", "/") == "tenant"
    assert target("ported.example.:8443", "/x") == "ported"
