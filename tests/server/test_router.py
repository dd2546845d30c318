"""Route matching: pure logic."""

from __future__ import annotations

from wasmlet.server import Route, Router


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
