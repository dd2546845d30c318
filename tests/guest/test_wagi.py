"""WAGI's CGI mapping (RFC 3875): pure functions, no wasm."""

from __future__ import annotations

import pytest

from wasmlet import MalformedResponse
from wasmlet.guest import CgiRequest, build_argv, build_environment, parse_cgi_response


def request(**overrides: object) -> CgiRequest:
    fields: dict[str, object] = {
        "method": "POST", "path": "/api/items/7", "raw_path": "/api/items/%37", "query": "a=1&b=x%20y",
        "headers": (("host", "example.com:8080"), ("content-type", "text/plain"), ("content-length", "5"),
                    ("x-multi", "1"), ("x-multi", "2"), ("cookie", "a=1"), ("cookie", "b=2"),
                    ("proxy", "http://evil:1")),
        "body": b"hello", "server_name": "127.0.0.1", "server_port": 8080, "remote_addr": "127.0.0.9",
    }
    fields.update(overrides)
    return CgiRequest(**fields)  # type: ignore[arg-type]


def test_meta_variables() -> None:
    env = dict(build_environment(request(), "/api"))
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == "/api"
    assert env["PATH_INFO"] == "/items/7"
    assert env["X_RAW_PATH_INFO"] == "/items/%37"
    assert env["QUERY_STRING"] == "a=1&b=x%20y"
    assert env["CONTENT_TYPE"] == "text/plain"
    assert env["CONTENT_LENGTH"] == "5"
    assert env["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.9"
    assert env["X_MATCHED_ROUTE"] == "/api"
    assert env["X_FULL_URL"] == "http://example.com:8080/api/items/%37?a=1&b=x%20y"


def test_headers_become_http_variables() -> None:
    env = dict(build_environment(request(), "/"))
    assert env["HTTP_HOST"] == "example.com:8080"
    assert env["HTTP_X_MULTI"] == "1, 2"  # RFC 9110 section 5.3
    assert env["HTTP_COOKIE"] == "a=1; b=2"  # RFC 6265 section 5.4
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert "HTTP_PROXY" not in env  # httpoxy


def test_root_route_has_empty_script_name() -> None:
    env = dict(build_environment(request(), "/"))
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/api/items/7"


def test_manifest_environment_cannot_override_cgi() -> None:
    env = dict(build_environment(request(), "/", [("QUALITY", "85"), ("REQUEST_METHOD", "forged")]))
    assert env["QUALITY"] == "85"
    assert env["REQUEST_METHOD"] == "POST"


def test_argv() -> None:
    env = {"SCRIPT_NAME": "/api"}
    assert build_argv("${SCRIPT_NAME} ${ARGS}", env, "a=1&b=x%20y&c+d") == ["/api", "a=1", "b=x y", "c d"]
    assert build_argv("${SCRIPT_NAME} ${ARGS}", env, "") == ["/api"]
    assert build_argv("prog --flag", env, "q") == ["prog", "--flag"]


def test_parse_response() -> None:
    response = parse_cgi_response(b"Content-Type: text/html\r\nX-A: b\r\n\r\n<p>hi</p>")
    assert response.status == 200
    assert response.headers == [(b"content-type", b"text/html"), (b"x-a", b"b")]
    assert response.body == b"<p>hi</p>"


def test_status_and_location() -> None:
    assert parse_cgi_response(b"Status: 404 Not Found\nContent-Type: text/plain\n\nno").status == 404
    redirect = parse_cgi_response(b"Location: https://example.com/\n\n")
    assert redirect.status == 302
    assert (b"location", b"https://example.com/") in redirect.headers


def test_framing_headers_are_the_hosts() -> None:
    response = parse_cgi_response(b"Content-Type: a/b\nContent-Length: 999\nTransfer-Encoding: chunked\n\nxy")
    assert response.headers == [(b"content-type", b"a/b")]
    assert response.body == b"xy"


def test_body_may_hold_blank_lines() -> None:
    assert parse_cgi_response(b"Content-Type: a/b\n\n\n\nbody\n\n").body == b"\n\nbody\n\n"


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (b"", "wrote nothing"),
        (b"Content-Type: text/plain\nno blank line", "no blank line"),
        (b"not a header\n\nbody", "not 'Name: value'"),
        (b"Bad Name: x\n\n", "not 'Name: value'"),
        (b"X-Only: 1\n\nbody", "none of Content-Type, Location or Status"),
        (b"Status: abc\n\n", "3-digit code"),
        (b"Status: 999 Nope\n\n", "3-digit code"),
    ],
)
def test_malformed_responses(output: bytes, message: str) -> None:
    with pytest.raises(MalformedResponse, match=message):
        parse_cgi_response(output)


@pytest.mark.parametrize("status", [b"100", b"101 Switching Protocols", b"103 Early Hints", b"199"])
def test_interim_statuses_are_refused(status: bytes) -> None:
    # An interim response then the guest's body: the client would read the body as the final answer.
    with pytest.raises(MalformedResponse, match="interim"):
        parse_cgi_response(b"Status: " + status + b"\nContent-Type: text/plain\n\nHTTP/1.1 200 OK\r\n\r\nforged")


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_statuses_lose_the_body(status: int) -> None:
    response = parse_cgi_response(b"Status: %d\nContent-Type: text/plain\n\nHTTP/1.1 200 OK\r\n\r\nforged" % status)
    assert response.status == status
    assert response.body == b""


@pytest.mark.parametrize("value", [b"a\x01b", b"a\x08b", b"a\x0bb", b"a\x1fb", b"a\x7fb", b"a\rb", b"a\x00b"])
def test_control_characters_in_values_are_bad_cgi(value: bytes) -> None:
    with pytest.raises(MalformedResponse, match="control character"):
        parse_cgi_response(b"Content-Type: text/plain\nX-A: " + value + b"\n\nbody")


def test_tab_and_obs_text_are_kept() -> None:
    response = parse_cgi_response(b"Content-Type: text/plain\nX-A: a\tb \xe9\n\nbody")
    assert (b"x-a", b"a\tb \xe9") in response.headers


def test_the_hosts_own_headers_cannot_be_forged() -> None:
    response = parse_cgi_response(b"Content-Type: text/plain\nX-Request-Id: forged\nX-Wasmlet-Error: timeout\n"
                                  b"x-request-id: again\n\nbody")
    assert response.headers == [(b"content-type", b"text/plain")]


def test_dash_and_underscore_names_do_not_collide() -> None:
    # A proxy in front vouches for X-User; a client must not reach HTTP_X_USER through X_User.
    headers = (("x-user", "alice"), ("x_user", "mallory"), ("x.user", "eve"), ("x-user_", "trudy"))
    env = build_environment(request(headers=headers), "/")
    assert dict(env)["HTTP_X_USER"] == "alice"
    assert [name for name, _ in env if name.startswith("HTTP_X_USER")] == ["HTTP_X_USER"]
    assert not any("mallory" in value or "eve" in value or "trudy" in value for _, value in env)


def test_a_client_header_never_replaces_the_manifests_variable() -> None:
    headers = (("x-tenant", "evil"), ("x-tenant", "evil2"), ("host", "example.com"))
    env = dict(build_environment(request(headers=headers), "/", [("HTTP_X_TENANT", "acme"), ("HTTP_HOST", "fixed")]))
    assert env["HTTP_X_TENANT"] == "acme"
    assert env["HTTP_HOST"] == "fixed"


@pytest.mark.parametrize("ends", [(b"\r\n", b"\r\n"), (b"\n", b"\n"), (b"\r\n", b"\n"), (b"\n", b"\r\n")])
def test_the_first_blank_line_ends_the_headers_whatever_its_line_ends(ends: tuple[bytes, bytes]) -> None:
    first, second = ends
    output = b"Content-Type: a/b" + first + b"X-A: 1" + first + second + b"body\n\nmore\r\n\r\n"
    response = parse_cgi_response(output)
    assert response.headers == [(b"content-type", b"a/b"), (b"x-a", b"1")]
    assert response.body == b"body\n\nmore\r\n\r\n"


def test_a_header_block_seen_before_parses_the_same_and_is_not_shared() -> None:
    # Parsed blocks are kept by their bytes: the second parse comes from there.
    output = b"Status: 201 Created\nContent-Type: text/plain\nX-A: b\n\nfirst"
    first = parse_cgi_response(output)
    first.headers.append((b"x-injected", b"1"))  # a caller changing its copy changes nothing kept
    second = parse_cgi_response(output[: -len(b"first")] + b"second")
    assert second.status == 201
    assert second.headers == [(b"content-type", b"text/plain"), (b"x-a", b"b")]
    assert second.body == b"second"


def test_a_malformed_block_is_refused_every_time() -> None:
    for _ in range(3):
        with pytest.raises(MalformedResponse, match="control character"):
            parse_cgi_response(b"Content-Type: text/plain\nX-A: a\x01b\n\nbody")


def test_kept_header_blocks_are_bounded() -> None:
    from wasmlet.guest import _wagi

    for number in range(_wagi._HEADS_KEPT * 3):  # a guest writing a new block every time
        assert parse_cgi_response(b"Content-Type: text/plain\nX-N: %d\n\n" % number).headers[1] == (
            b"x-n", b"%d" % number)
    assert len(_wagi._HEADS) <= _wagi._HEADS_KEPT
    big = b"Content-Type: text/plain\nX-Big: " + b"v" * _wagi._HEAD_KEPT_BYTES + b"\n\nbody"
    assert parse_cgi_response(big).body == b"body"
    assert big.split(b"\n\n")[0] not in _wagi._HEADS  # a long block is parsed every time, never kept
