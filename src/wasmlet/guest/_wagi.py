"""WAGI: CGI 1.1 (RFC 3875) over WASI preview 1, as pure functions.

The request becomes environment variables, argv and stdin; the guest's
stdout is a CGI response. Nothing here touches a socket or wasmtime, so all
of it is unit-tested directly. The variable set follows deislabs' WAGI and
Spin's ``wagi`` executor: the RFC 3875 meta-variables, ``HTTP_*`` headers, and
WAGI's ``X_FULL_URL``, ``X_MATCHED_ROUTE`` and ``X_RAW_PATH_INFO``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote

from .._errors import MalformedResponse

__all__ = ["ArgvTemplate", "CgiRequest", "CgiResponse", "build_argv", "build_environment", "environment",
           "parse_cgi_response"]

SERVER_SOFTWARE = "wasmlet"
# Responses that never carry content (RFC 9110 section 6.4.1); 1xx are refused outright.
_BODILESS = frozenset({204, 304})

# RFC 9110 section 5.6.2: a header name is a token.
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# RFC 9110 section 5.5: a field value holds VCHAR, obs-text, SP and HTAB; any other
# control character would let a guest end the header block (response splitting)
# or make the HTTP server drop the connection.
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# Headers the host owns: framing and connection management (RFC 9110 section 7.6.1, RFC 9112 section 6),
# and the host's own answers about a request, which a guest must not forge.
_HOST_OWNED = {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade",
               b"proxy-connection", b"content-length", b"x-wasmlet-error", b"x-request-id"}
# Header names that become HTTP_* variables: letters, digits and '-' only. A name
# with '_' (or any other token character) would collide with a '-' twin once
# mapped ("X-User" and "X_User" both give HTTP_X_USER), letting a client forge a
# header a proxy in front vouches for; Apache httpd 2.4 drops such headers too.
_CGI_HEADER = re.compile(r"^[A-Za-z0-9-]+$")
_MAX_HEADER_BYTES = 64 * 1024


@dataclasses.dataclass(frozen=True)
class CgiRequest:
    """An HTTP request, reduced to what a CGI program sees."""

    method: str
    path: str  # decoded path, as the server received it
    raw_path: str  # the path as sent on the wire (percent-encoded)
    query: str
    headers: tuple[tuple[str, str], ...]  # lower-case names, in arrival order
    body: bytes
    scheme: str = "http"
    server_name: str = "localhost"
    server_port: int = 80
    remote_addr: str = ""
    remote_port: int = 0
    http_version: str = "1.1"


@dataclasses.dataclass(frozen=True)
class CgiResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def _header_env_name(name: str) -> str:
    return "HTTP_" + name.upper().replace("-", "_")


_header_keys: dict[str, str] = {}  # header name -> its variable, "" when never passed on (bounded below)


def _header_key(name: str) -> str:
    key = _header_keys.get(name)
    if key is None:
        key = "" if name == "proxy" or not _CGI_HEADER.match(name) else _header_env_name(name)
        if len(_header_keys) < 1024:  # names are the client's choice: remember only so many
            _header_keys[name] = key
    return key


def build_environment(
    request: CgiRequest,
    route: str,
    static_env: Iterable[tuple[str, str]] = (),
) -> list[tuple[str, str]]:
    """The guest's environment for ``request`` matched on ``route``, as pairs (see ``environment``)."""
    return list(environment(request, route, static_env).items())


def environment(
    request: CgiRequest,
    route: str,
    static_env: Iterable[tuple[str, str]] = (),
) -> dict[str, str]:
    """The guest's environment for ``request`` matched on ``route``, in order.

    The manifest's ``environment`` comes first; CGI variables follow and win,
    so request data is always what the RFC says it is. A client's header never
    replaces a variable the manifest sets (the operator's ``HTTP_X_TENANT`` stays
    the operator's), and only header names of letters, digits and ``-`` are
    mapped, so two names never collide in one variable. The ``Proxy`` header is
    never passed on: as ``HTTP_PROXY`` it would steer the guest's HTTP client
    to an attacker's proxy ("httpoxy", CVE-2016-5385).
    """
    script_name = "" if route == "/" else route
    path_info = request.path[len(script_name):] if request.path.startswith(script_name) else request.path
    raw_script = script_name
    raw_path_info = request.raw_path[len(raw_script):] if request.raw_path.startswith(raw_script) else request.raw_path
    env: dict[str, str] = dict(static_env)
    host_header = ""
    content_type = ""
    content_length = ""
    merged: dict[str, str] = {}
    for name, value in request.headers:
        if name == "content-type":
            content_type = value
            continue
        if name == "content-length":
            content_length = value
            continue
        key = _header_key(name)
        if not key:  # "proxy", or a name with characters other than letters, digits and "-"
            continue
        if name == "host":
            host_header = value
        if key in env:  # the manifest set it
            continue
        if key in merged:
            # RFC 9110 section 5.3 joins repeated fields with ", "; cookies use "; " (RFC 6265 section 5.4).
            merged[key] += ("; " if name == "cookie" else ", ") + value
        else:
            merged[key] = value
    env.update(merged)
    host = host_header or f"{request.server_name}:{request.server_port}"
    full_url = f"{request.scheme}://{host}{request.raw_path}" + (f"?{request.query}" if request.query else "")
    env.update({
        "AUTH_TYPE": "",
        "CONTENT_LENGTH": content_length if content_length else (str(len(request.body)) if request.body else ""),
        "CONTENT_TYPE": content_type,
        "GATEWAY_INTERFACE": "CGI/1.1",
        "PATH_INFO": path_info,
        "PATH_TRANSLATED": path_info,
        "QUERY_STRING": request.query,
        "REMOTE_ADDR": request.remote_addr,
        "REMOTE_HOST": request.remote_addr,
        "REMOTE_USER": "",
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": script_name,
        "SERVER_NAME": request.server_name,
        "SERVER_PORT": str(request.server_port),
        "SERVER_PROTOCOL": f"HTTP/{request.http_version}",
        "SERVER_SOFTWARE": SERVER_SOFTWARE,
        "X_FULL_URL": full_url,
        "X_MATCHED_ROUTE": route,
        "X_RAW_PATH_INFO": raw_path_info,
    })
    return env


def build_argv(template: str, environment: Mapping[str, str], query: str) -> list[str]:
    """WAGI's ``argv``: ``${NAME}`` replaced from the environment, ``${ARGS}`` by the query.

    ``${ARGS}`` expands to the query string split on ``&`` and percent-decoded,
    one argument each (RFC 3875 section 4.4 splits an "indexed" query into
    command-line words in the same spirit). Words are split on spaces before
    substitution, so a value with spaces stays one argument.
    """
    return ArgvTemplate(template).build(environment, query)


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ArgvTemplate:
    """``build_argv`` with the template split once (a handler keeps one; ``build`` runs per request)."""

    __slots__ = ("_words",)

    def __init__(self, template: str) -> None:
        # (word, its ${NAME} keys); ${ARGS} alone is the query's words.
        self._words = [(word, None if word == "${ARGS}" else _VARIABLE.findall(word)) for word in template.split()]

    def build(self, environment: Mapping[str, str], query: str) -> list[str]:
        argv: list[str] = []
        for word, keys in self._words:
            if keys is None:
                if query:
                    argv.extend(unquote(part.replace("+", " ")) for part in query.split("&") if part)
                continue
            out = word
            for key in keys:
                out = out.replace("${" + key + "}", environment.get(key, ""))
            argv.append(out)
        return argv or [""]


# The end of the CGI header block: the first blank line, whatever mix of CRLF and LF ends
# its two lines (the earliest of "\r\n\r\n", "\n\n", "\r\n\n" and "\n\r\n").
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
# Parsed header blocks by their exact bytes: a guest writes the same few on every request.
# Bounded in count and size, as the blocks are the guest's choice.
_HEADS: dict[bytes, tuple[int, tuple[tuple[bytes, bytes], ...]]] = {}
_HEADS_KEPT = 256
_HEAD_KEPT_BYTES = 1024


def parse_cgi_response(output: bytes) -> CgiResponse:
    """Parse a CGI response (RFC 3875 section 6) from the guest's stdout.

    Header lines end in LF or CRLF and stop at the first empty line. At least
    one of ``Content-Type``, ``Location`` or ``Status`` must be present
    (section 6.2). ``Status`` sets the code; a ``Location`` without ``Status``
    is a client redirect, sent as 302 (section 6.2.4). Headers the host owns
    (``Content-Length``, ``Transfer-Encoding``, ``X-Request-Id``, ...) are
    dropped. A 1xx status is refused: an interim response (RFC 9110 section
    15.2) followed by the guest's body would let the guest write the client's
    final response itself, or claim a protocol switch (101). A 204 or 304
    has no body (RFC 9110 sections 15.3.5 and 15.4.5): whatever the guest
    wrote after the headers is dropped, or on a kept-alive connection it would
    be read as the answer to the next request. Raises ``MalformedResponse``
    saying what is wrong.
    """
    blank = _BLANK_LINE.search(output)
    if blank is None:
        if not output:
            raise MalformedResponse("the guest wrote nothing to stdout (expected CGI headers, a blank line, a body)")
        raise MalformedResponse("no blank line ends the CGI headers")
    end = blank.start()
    if end > _MAX_HEADER_BYTES:
        raise MalformedResponse(f"CGI headers exceed {_MAX_HEADER_BYTES} bytes")
    head = output[:end]
    parsed = _HEADS.get(head)
    if parsed is None:
        parsed = _parse_head(head)  # raises for a malformed block, which is never kept
        if end <= _HEAD_KEPT_BYTES:
            if len(_HEADS) >= _HEADS_KEPT:
                _HEADS.clear()
            _HEADS[head] = parsed
    status, headers = parsed
    return CgiResponse(status=status, headers=list(headers),
                       body=b"" if status in _BODILESS else output[blank.end():])


def _parse_head(head: bytes) -> tuple[int, tuple[tuple[bytes, bytes], ...]]:
    """The status and the headers passed on, from a CGI header block (``parse_cgi_response``)."""
    status: int | None = None
    location = False
    content_type = False
    headers: list[tuple[bytes, bytes]] = []
    for number, line in enumerate(head.split(b"\n"), start=1):
        line = line.rstrip(b"\r")
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.match(name):
            raise MalformedResponse(f"CGI header line {number} is not 'Name: value': {line[:80]!r}")
        value = value.strip(b" \t")
        if _CONTROL.search(value):
            raise MalformedResponse(f"CGI header line {number} holds a control character: {line[:80]!r}")
        lower = name.lower()
        if lower == b"status":
            code = value.split(b" ", 1)[0]
            if not (len(code) == 3 and code.isdigit() and 100 <= int(code) <= 599):
                raise MalformedResponse(f"CGI Status must start with a 3-digit code 100-599, got {value[:40]!r}")
            if code.startswith(b"1"):
                raise MalformedResponse(f"CGI Status {code.decode()} is an interim (1xx) response; "
                                        "a guest must answer with a final status, 200-599")
            status = int(code)
            continue
        if lower == b"location":
            location = True
        elif lower == b"content-type":
            content_type = True
        if lower in _HOST_OWNED:
            continue
        headers.append((lower, value))
    if status is None and not location and not content_type:
        raise MalformedResponse("CGI response has none of Content-Type, Location or Status (RFC 3875 section 6.2)")
    if status is None:
        status = 302 if location else 200
    return status, tuple(headers)
