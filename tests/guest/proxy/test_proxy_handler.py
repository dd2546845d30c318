"""wasi:http/proxy components served in-process through ``build_handler`` (``ProxyHandler``).

The guests are freestanding C against WASI 0.2.0, built by
``tests/guests/components/build.sh`` and committed: ``proxy_guest.wasm`` (one
behaviour per path, see ``proxy_guest.c``) and ``proxy_hello.wasm``.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime
import wasmtime.component as wc
import yaml
from tests.guest.conftest import expect_capacity, pool_slots_taken, ticking_engine

from wasmlet._errors import (
    GuestBadResponse,
    GuestExit,
    GuestOutputLimit,
    GuestTimeout,
    GuestTrap,
    ModuleError,
)
from wasmlet.guest import CgiRequest, GuestResult, Handler, Linkers, ProxyHandler, build_handler
from wasmlet.guest._watch import watches
from wasmlet.plan import EngineSettings, parse_manifest

GUESTS = Path(__file__).resolve().parents[2] / "guests" / "components"


@pytest.fixture(scope="module")
def linkers(engine: wasmtime.Engine) -> Linkers:
    return Linkers(engine)


def spec_for(properties: dict[str, Any], capabilities: dict[str, Any] | None = None) -> Any:
    component: dict[str, Any] = {"name": "proxy", "type": "wasm",
                                 "properties": {"moduleURL": str(GUESTS / "proxy_guest.wasm"), "route": "/",
                                                **properties}}
    if capabilities:
        component["properties"]["capabilities"] = capabilities
    document = {"apiVersion": "core.oam.dev/v1beta1", "kind": "Application", "metadata": {"name": "app"},
                "spec": {"components": [component]}}
    return parse_manifest(yaml.safe_dump(document), "m.yaml")[0]


def make(engine: wasmtime.Engine, linkers: Linkers, wasm: str = "proxy_guest.wasm",
         capabilities: dict[str, Any] | None = None, **properties: Any) -> Handler:
    component = wc.Component.from_file(engine, GUESTS / wasm)
    return build_handler(spec_for({"timeout": "1s", **properties}, capabilities), component, linkers)


# Every test here runs on both request paths (``conftest.request_path``): the C helper's and ctypes'.
pytestmark = pytest.mark.usefixtures("request_path")


@pytest.fixture(scope="module")
def guest(engine: wasmtime.Engine, linkers: Linkers, request_path: str) -> Handler:
    handler = make(engine, linkers, maxResponseSize="256Ki")
    assert isinstance(handler, ProxyHandler) and (handler._fast is not None) == (request_path == "native")
    return handler


def request(path: str, body: bytes = b"", method: str = "GET",
            headers: tuple[tuple[str, str], ...] = (("host", "example.test"),)) -> CgiRequest:
    raw, _, query = path.partition("?")
    return CgiRequest(method=method, path=raw, raw_path=raw, query=query, headers=headers, body=body)


def test_component_exporting_the_handler_gets_a_proxy_handler(guest: Handler) -> None:
    assert isinstance(guest, ProxyHandler)


def test_hello(engine: wasmtime.Engine, linkers: Linkers) -> None:
    hello = make(engine, linkers, "proxy_hello.wasm")
    result = hello.handle(request("/"))
    assert result.response.status == 200
    assert result.response.headers == [(b"content-type", b"text/plain")]
    assert result.response.body == b"hello\n"
    assert result.stats.instantiated_ns >= result.stats.started_ns


def test_echo_method_path_query_authority_headers_and_body(guest: Handler) -> None:
    headers = (("host", "example.test:8080"), ("x-one", "1"), ("x-two", "zwei"), ("accept", "*/*"))
    result = guest.handle(request("/echo?a=1&b=two%20words", b"the body", "PATCH", headers), "00-" + "a" * 32)
    got = dict(result.response.headers)
    assert got[b"x-echo-method"] == b"PATCH"
    assert got[b"x-echo-path"] == b"/echo?a=1&b=two%20words"
    assert got[b"x-echo-authority"] == b"example.test:8080"
    assert got[b"x-echo-headers"] == b"5"  # the four sent and the traceparent the host added
    assert got[b"echo-x-one"] == b"1" and got[b"echo-x-two"] == b"zwei"
    assert result.response.body == b"the body"


def test_traceparent_is_not_added_over_the_clients(guest: Handler) -> None:
    headers = (("host", "h"), ("traceparent", "00-" + "b" * 32 + "-" + "c" * 16 + "-01"))
    result = guest.handle(request("/echo", headers=headers), "00-" + "a" * 32 + "-" + "d" * 16 + "-01")
    assert dict(result.response.headers)[b"x-echo-headers"] == b"2"


@pytest.mark.parametrize("size", [0, 1 << 20])
def test_body_in_and_out(engine: wasmtime.Engine, linkers: Linkers, size: int) -> None:
    big = make(engine, linkers, maxResponseSize="2Mi", timeout="20s")  # ~40 ms/MiB each way: docs/guest-abis.md
    body = bytes(range(256)) * (size // 256)
    assert big.handle(request("/echo", body, "POST")).response.body == body


def test_streamed_response_of_many_writes(guest: Handler) -> None:
    result = guest.handle(request("/stream?300"))
    lines = result.response.body.decode().splitlines()
    assert lines == [f"chunk {i}" for i in range(300)]


def test_trap_mid_stream_is_a_500(guest: Handler) -> None:
    with pytest.raises(GuestTrap, match="unreachable"):
        guest.handle(request("/trap"))


def test_no_outparam_is_a_bad_response(guest: Handler) -> None:
    with pytest.raises(GuestBadResponse, match="without setting the response-outparam") as info:
        guest.handle(request("/noout"))
    assert info.value.status == 502 and info.value.cause == "bad-response"


def test_unfinished_body_is_a_bad_response(guest: Handler) -> None:
    with pytest.raises(GuestBadResponse, match="did not finish the response body"):
        guest.handle(request("/unfinished"))


def test_interim_status_is_refused(guest: Handler) -> None:
    with pytest.raises(GuestBadResponse, match="interim"):
        guest.handle(request("/status?101"))
    assert guest.handle(request("/status?204")).response.status == 204


@pytest.mark.parametrize("path", ["/loop", "/sleep"])
def test_deadline_stops_busy_loop_and_sleep(guest: Handler, path: str) -> None:
    started = time.monotonic()
    with pytest.raises(GuestTimeout):
        guest.handle(request(path))
    assert time.monotonic() - started < 3.0  # timeout is 1 s; the sleep asked for 60 s


def test_sleep_within_the_deadline_is_allowed(engine: wasmtime.Engine, linkers: Linkers) -> None:
    # The guest sleeps 60 s: with a deadline above that it would answer; here the wait is what is
    # bounded, so check the shape of the bound instead: a 2 s deadline ends it near 2 s, not 60 s.
    slow = make(engine, linkers, timeout="2s")
    started = time.monotonic()
    with pytest.raises(GuestTimeout):
        slow.handle(request("/sleep"))
    assert 1.5 < time.monotonic() - started < 4.0


def test_no_run_leaves_its_deadline_watch_behind(engine: wasmtime.Engine, linkers: Linkers) -> None:
    # The store has no finalizer: each run forgets its watch itself once the store is deleted,
    # whatever the outcome (a watch left behind would keep its session, and grow without bound).
    before = len(watches)
    handler = make(engine, linkers)  # the trial instantiation at deploy has a watch too
    assert len(watches) == before
    for path in ("/", "/trap", "/noout", "/loop", "/status?101", "/flood"):
        with contextlib.suppress(GuestTrap, GuestBadResponse, GuestTimeout, GuestOutputLimit):
            handler.handle(request(path))
        assert len(watches) == before, path
    assert isinstance(handler, ProxyHandler)
    result, _ = handler.handle_inline(request("/"), budget=0.5)
    assert result is not None and len(watches) == before


def test_a_full_instance_pool_is_the_hosts_capacity_not_a_trap(request_path: str) -> None:
    # proxy_guest.wasm takes 3 core instances: a pool of 3 with one slot taken cannot give it one.
    # The request gets 503 "capacity" (not counted by the breaker), not a 500 "trap".
    with ticking_engine(EngineSettings(pool_instances=3, pool_max_memory=64 << 20, pool_warm_slots=1)) as engine:
        handler = make(engine, Linkers(engine), timeout="1s")
        assert isinstance(handler, ProxyHandler) and (handler._fast is not None) == (request_path == "native")
        with pool_slots_taken(engine):
            expect_capacity(lambda: handler.handle(request("/hello")))
            # A version deployed meanwhile links (imports are checked before any instance is made):
            # it is accepted, not refused as "cannot link", and serves once a slot is free.
            deployed = make(engine, Linkers(engine), timeout="1s")
        assert handler.handle(request("/hello")).response.body == b"hello\n"
        assert deployed.handle(request("/hello")).response.body == b"hello\n"


def test_response_over_the_cap_is_an_output_limit(guest: Handler) -> None:
    started = time.monotonic()
    with pytest.raises(GuestOutputLimit):
        guest.handle(request("/flood"))
    assert time.monotonic() - started < 3.0


def test_stdout_goes_to_the_log(guest: Handler) -> None:
    result = guest.handle(request("/log"))
    assert result.response.body == b"logged\n"
    assert result.stderr == b"a line for the host log\n"


def test_filesystem_and_sockets_are_denied_cleanly(guest: Handler) -> None:
    # preopens: no directory; create-tcp-socket and resolve-addresses: err(access-denied), enum case 1.
    assert guest.handle(request("/deny")).response.body == b"dirs=0 tcp=err:1 dns=err:1\n"


@pytest.mark.parametrize(("path", "message"), [
    ("/twice", "unknown handle index"),
    ("/dropped", "unknown handle index"),
    ("/foreign", "wrong type"),
    ("/overwrite", "past the 65536 check-write allowed"),
])
def test_misused_handles_trap_and_the_host_serves_on(guest: Handler, path: str, message: str) -> None:
    with pytest.raises(GuestTrap, match=message):
        guest.handle(request(path))
    assert guest.handle(request("/echo", b"still here")).response.body == b"still here"


def test_huge_header_list_is_capped(guest: Handler) -> None:
    assert dict(guest.handle(request("/bigheaders")).response.headers)[b"x-appended"] == b"1000"


def test_billion_byte_read_gets_at_most_a_mebibyte_per_call(engine: wasmtime.Engine, linkers: Linkers) -> None:
    body = b"z" * (3 << 20)
    guest = make(engine, linkers, timeout="20s")
    assert guest.handle(request("/bigread", body, "POST")).response.body == str(len(body)).encode()


def test_each_request_gets_a_fresh_instance(guest: Handler) -> None:
    answers = {guest.handle(request("/echo", str(i).encode(), "POST")).response.body for i in range(20)}
    assert answers == {str(i).encode() for i in range(20)}


# -- deploy-time checks ---------------------------------------------------------------------------------------


def test_files_grant_is_refused_at_deploy(engine: wasmtime.Engine, linkers: Linkers, tmp_path: Path) -> None:
    with pytest.raises(ModuleError, match=r"capabilities\.files is not available to wasi:http components"):
        make(engine, linkers, capabilities={"files": [{"source": str(tmp_path), "destination": "/data"}]})


def test_unknown_import_is_refused_naming_it(engine: wasmtime.Engine, linkers: Linkers) -> None:
    component = wc.Component(engine, """
        (component
          (import "wasmlet:test/nowhere@1.0.0" (instance (export "f" (func))))
          (import "wasi:io/poll@0.3.0" (instance (export "g" (func))))
          (type $req (resource (rep i32)))
          (core module $m (func (export "h") (param i32 i32)))
          (core instance $i (instantiate $m))
          (import "wasi:http/types@0.2.0" (instance $types
            (export "incoming-request" (type (sub resource)))
            (export "response-outparam" (type (sub resource)))))
          (alias export $types "incoming-request" (type $ir))
          (alias export $types "response-outparam" (type $ro))
          (func $h (param "request" (own $ir)) (param "response-out" (own $ro))
            (canon lift (core func $i "h")))
          (instance $handler (export "handle" (func $h)))
          (export "wasi:http/incoming-handler@0.2.0" (instance $handler)))
    """)
    spec = spec_for({})
    with pytest.raises(ModuleError, match=r"wasi:io/poll@0.3.0 .*0\.2\.x.*wasmlet:test/nowhere@1.0.0"):
        build_handler(spec, component, linkers)


def test_wasi_cli_components_still_get_the_cli_handler(engine: wasmtime.Engine, linkers: Linkers) -> None:
    from wasmlet.guest import ComponentHandler

    component = wc.Component.from_file(engine, GUESTS / "cgi_p2.wasm")
    spec = spec_for({"moduleURL": str(GUESTS / "cgi_p2.wasm")})
    assert isinstance(build_handler(spec, component, linkers), ComponentHandler)


# -- outbound HTTP through the egress policy -------------------------------------------------------------------


class _Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        payload = json.dumps({"path": self.path, "host": self.headers.get("host")}).encode()
        self.send_response(203)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def upstream() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def fetch(handler: Handler, authority: str, path: str = "/up?x=1") -> GuestResult:
    headers = (("host", "h"), ("x-target-authority", authority), ("x-target-path", path))
    return handler.handle(request("/fetch", headers=headers))


def test_outgoing_request_allowed(engine: wasmtime.Engine, linkers: Linkers, upstream: int) -> None:
    handler = make(engine, linkers, capabilities={"allowedOutboundHosts": [f"http://127.0.0.1:{upstream}"]})
    result = fetch(handler, f"127.0.0.1:{upstream}")
    assert result.response.status == 203
    assert json.loads(result.response.body) == {"path": "/up?x=1", "host": f"127.0.0.1:{upstream}"}


@pytest.mark.parametrize("grant", [None, ["http://example.com"]])
def test_outgoing_request_denied(engine: wasmtime.Engine, linkers: Linkers, upstream: int,
                                 grant: list[str] | None) -> None:
    capabilities = {"allowedOutboundHosts": grant} if grant else None
    handler = make(engine, linkers, capabilities=capabilities)
    result = fetch(handler, f"127.0.0.1:{upstream}")
    # error-code.HTTP-request-denied is case 15 of wasi:http 0.2.0's error-code.
    assert result.response.status == 502
    assert dict(result.response.headers)[b"x-fetch-error"] == b"15"


def test_outgoing_request_to_a_private_address_by_wildcard_is_denied(engine: wasmtime.Engine, linkers: Linkers,
                                                                      upstream: int) -> None:
    handler = make(engine, linkers, capabilities={"allowedOutboundHosts": ["http://*:*"]})
    assert dict(fetch(handler, f"127.0.0.1:{upstream}").response.headers)[b"x-fetch-error"] == b"15"


# -- guests from real toolchains (examples/, built by their own scripts; c-http's is committed) ---------------

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
TOOLCHAIN_GUESTS = [p for name in ("c-http", "python-hello", "js-hello")
                    for p in sorted((EXAMPLES / name).glob("*.wasm"))]


@pytest.mark.parametrize("path", TOOLCHAIN_GUESTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_toolchain_guest_answers(engine: wasmtime.Engine, linkers: Linkers, path: Path) -> None:
    component = wc.Component.from_file(engine, path)
    spec = spec_for({"moduleURL": str(path), "memoryLimit": "256Mi", "timeout": "10s"})
    handler = build_handler(spec, component, linkers)
    assert isinstance(handler, ProxyHandler)
    for _ in range(2):  # a fresh instance each time: the second answer is the first one again
        result = handler.handle(request("/"))
        assert result.response.status == 200
        assert result.response.body.startswith(b"Hello")


def test_header_bytes_of_a_request_are_capped_across_fields(engine: wasmtime.Engine, linkers: Linkers) -> None:
    from wasmlet.guest._proxy._state import MAX_HELD

    guest = make(engine, linkers, timeout="30s")  # some 80,000 appends, one host call each
    values = int(dict(guest.handle(request("/hoard")).response.headers)[b"x-values"])
    assert 0 < values * (len("x-hoard") + 200) <= MAX_HELD
    assert guest.handle(request("/echo", b"after")).response.body == b"after"


def test_minting_handles_forever_traps(engine: wasmtime.Engine, linkers: Linkers) -> None:
    guest = make(engine, linkers, timeout="30s")
    # wasmtime's own handle table limit, or ours (MAX_OBJECTS), whichever comes first
    with pytest.raises(GuestTrap, match=r"handle limit|live resources"):
        guest.handle(request("/mint"))


def test_exit_ok_keeps_the_response_and_exit_err_is_501(guest: Handler) -> None:
    assert guest.handle(request("/exit-ok")).response.body == b"bye\n"
    with pytest.raises(GuestExit) as info:
        guest.handle(request("/exit-err"))
    assert info.value.status == 501


def test_concurrent_requests_keep_to_their_own_state(guest: Handler) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(15):
                body = f"{n}-{i}".encode() * 50
                assert guest.handle(request(f"/echo?{n}", body, "POST")).response.body == body
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors


def test_fields_validation_and_immutable_request_headers(guest: Handler) -> None:
    # header-error cases: 0 invalid-syntax, 1 forbidden, 2 immutable
    body = guest.handle(request("/fields")).response.body
    assert body == b"badname=err:0 crlf=err:0 forbidden=err:1 ok=ok immutable=err:2\n"
