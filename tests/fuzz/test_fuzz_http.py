"""Fuzzing the HTTP-side parsers: a guest's CGI response, the CGI environment, the router.

The guest's stdout is written by code the host does not trust, and request
headers, host and path by clients it does not trust. What must hold:
``parse_cgi_response`` returns a response that cannot split the HTTP stream
(no CR, LF or NUL in a header, no framing header of the guest's, a status
the server can send) or raises ``MalformedResponse``; ``build_environment``
gives each variable once, with a name a WASI environment can hold; the
router returns a route whose prefix and host really match, preferring a
host-bound route and then the longest prefix, and never raises.
"""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st
from tests.fuzz._fuzz import fuzz

from wasmlet import MalformedResponse
from wasmlet.guest import CgiRequest, build_environment, parse_cgi_response
from wasmlet.server import Route, Router, normalise_path

# CGI responses ----------------------------------------------------------------------------------------
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
FRAMING = {b"content-length", b"transfer-encoding", b"connection", b"te", b"trailer", b"upgrade", b"keep-alive",
           b"proxy-connection"}
HEADER_NAMES = st.one_of(
    st.sampled_from([b"Status", b"Content-Type", b"Location", b"Content-Length", b"Transfer-Encoding",
                     b"Connection", b"X-Wasmlet-Error", b"X-Request-Id", b"Set-Cookie", b"X-A"]),
    st.binary(max_size=12))
HEADER_VALUES = st.one_of(
    st.sampled_from([b"200 OK", b"204", b"304 Not Modified", b"101 Switching", b"100", b"599", b"600", b"abc",
                     b"text/plain", b"/elsewhere", b"a\rb", b"a\x00b", b"a\x01b", b" \t "]),
    st.binary(max_size=20))


@st.composite
def cgi_outputs(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.tuples(HEADER_NAMES, st.sampled_from([b": ", b":", b" : ", b""]), HEADER_VALUES),
                          max_size=6))
    newline = draw(st.sampled_from([b"\n", b"\r\n"]))
    head = newline.join(name + colon + value for name, colon, value in lines)
    blank = draw(st.sampled_from([b"\n\n", b"\r\n\r\n", b"\r\n\n", b"\n\r\n", b"", b"\n"]))
    return head + blank + draw(st.binary(max_size=40))


@fuzz(500)
@given(st.one_of(cgi_outputs(), st.binary(max_size=200)))
@example(b"Status: 204\n\nbody for the next request")
@example(b"Content-Type: text/plain\nX-A: one\rtwo\n\n")
@example(b"Content-Type: text/plain\n" + b"X: " + b"a" * 70_000 + b"\n\n")
def test_cgi_response(output: bytes) -> None:
    try:
        response = parse_cgi_response(output)
    except MalformedResponse as exc:
        assert exc.status == 502 and len(str(exc)) < 400
        return
    assert 100 <= response.status <= 599
    for name, value in response.headers:
        assert TOKEN.fullmatch(name), name
        assert name not in FRAMING
        assert not re.search(rb"[\r\n\0]", value), value
    assert output.endswith(response.body)


# The CGI environment ----------------------------------------------------------------------------------
HEADER_NAME_TEXT = st.one_of(st.sampled_from(["host", "proxy", "content-type", "content-length", "cookie",
                                              "x-user", "x_user", "x-user-", "a=b", "x\x00y"]),
                             st.text(max_size=10).map(str.lower))
LATIN1 = st.text(st.characters(max_codepoint=255), max_size=20)
ROUTES = st.sampled_from(["/", "/api", "/a/b"])


@st.composite
def requests(draw: st.DrawFn) -> tuple[CgiRequest, str]:
    route = draw(ROUTES)
    path = draw(st.one_of(st.sampled_from(["/", "/api", "/api/x", "/apix", "/a/b/c", ""]), LATIN1))
    request = CgiRequest(
        method=draw(st.sampled_from(["GET", "POST", "X"])), path=path, raw_path=draw(st.just(path) | LATIN1),
        query=draw(LATIN1), headers=tuple(draw(st.lists(st.tuples(HEADER_NAME_TEXT, LATIN1), max_size=6))),
        body=draw(st.binary(max_size=8)))
    return request, route


@fuzz(400)
@given(requests(), st.lists(st.tuples(st.sampled_from(["HTTP_X_USER", "QUOTA", "HTTP_HOST"]), LATIN1), max_size=2))
def test_cgi_environment(case: tuple[CgiRequest, str], static: list[tuple[str, str]]) -> None:
    request, route = case
    env = build_environment(request, route, static)
    names = [name for name, _ in env]
    assert len(names) == len(set(names))
    for name, value in env:
        assert isinstance(value, str) and name and "=" not in name and "\0" not in name, name
    variables = dict(env)
    for required in ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL",
                     "GATEWAY_INTERFACE", "SERVER_NAME", "SERVER_PORT", "REMOTE_ADDR"):
        assert required in variables
    if "HTTP_PROXY" not in dict(static):
        assert "HTTP_PROXY" not in variables  # httpoxy: never from a client
    if route == "/" or request.path == route or request.path.startswith(route + "/"):
        assert variables["SCRIPT_NAME"] + variables["PATH_INFO"] == request.path


# The router -------------------------------------------------------------------------------------------
PREFIXES = st.sampled_from(["/", "/api", "/api/v1", "/a", "/a/b", "/b"])
HOSTS = st.sampled_from([None, None, "example.com", "api.example.com", "*.example.com", "example.com:8080"])


def host_matches(pattern: str, host: str) -> bool:
    """A second reading of the router's host rule, for the oracle."""
    host = host.lower()
    if not host.startswith("["):
        name, colon, port = host.partition(":")
        host = name.removesuffix(".") + colon + port
    if ":" not in pattern and host.count(":") == 1:
        host = host.split(":")[0]
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def path_matches(prefix: str, path: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


REQUEST_HOSTS = st.one_of(st.none(), st.sampled_from(["example.com", "EXAMPLE.com.", "api.example.com:8080",
                                                      "x.api.example.com", "example.com:8080", "[::1]:80",
                                                      "evil.com", ""]), st.text(max_size=20))
PATHS = st.one_of(st.sampled_from(["/", "/api", "/api/", "/apix", "/api/v1/x", "/a/b", "/b/../a"]),
                  st.text(max_size=20))


@fuzz(400)
@given(st.lists(st.tuples(PREFIXES, HOSTS), min_size=1, max_size=6, unique=True), REQUEST_HOSTS, PATHS)
def test_router(routes: list[tuple[str, str | None]], host: str | None, raw_path: str) -> None:
    router = Router([Route(prefix, route_host, index) for index, (prefix, route_host) in enumerate(routes)])
    path = normalise_path(raw_path)
    if path is None:
        return
    assert path.startswith("/") and "//" not in path and normalise_path(path) == path
    assert not {"..", "."} & set(path.split("/"))
    found = router.match(host, path)
    candidates = [(prefix, route_host) for prefix, route_host in routes if path_matches(prefix, path)
                  and (route_host is None or host_matches(route_host, host or ""))]
    if not candidates:
        assert found is None
        return
    assert found is not None and (found.prefix, found.host) in candidates
    bound = [c for c in candidates if c[1] is not None]
    assert (found.host is not None) is bool(bound)  # a host-bound route first
    assert len(found.prefix) == max(len(p) for p, h in (bound or candidates))  # then the longest prefix


@fuzz(300)
@given(st.text(max_size=40))
@example("/a/..%2F..")
@example("/%00")
def test_normalise_path(raw: str) -> None:
    path = normalise_path(raw)
    if path is not None:
        assert path.startswith("/") and "//" not in path and normalise_path(path) == path
        assert not re.search(r"[\x00-\x1f\x7f]", path)
