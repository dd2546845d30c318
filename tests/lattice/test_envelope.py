"""The forwarding envelope and subjects (pure): what one host sends another, and what it refuses."""

from __future__ import annotations

import json
import struct

import pytest

from wasmlet.server import (
    ForwardReply,
    ForwardRequest,
    MalformedEnvelope,
    app_subject,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    is_idempotent,
)


def _request(**changes: object) -> ForwardRequest:
    fields: dict[str, object] = {
        "app": "shop/web", "method": "POST", "path": "/shop/cart", "raw_path": "/shop/cart", "query": "a=1",
        "headers": (("host", "example.com"), ("x-request-id", "abc")), "scheme": "http",
        "server": ("127.0.0.1", 3000), "client": ("10.0.0.9", 51000), "http_version": "1.1",
        "body": b"\x00binary\xffbody",
    }
    fields.update(changes)
    return ForwardRequest(**fields)  # type: ignore[arg-type]


def test_a_request_and_a_reply_survive_the_trip() -> None:
    request = _request()
    assert decode_request(encode_request(request)) == request
    reply = ForwardReply(201, (("content-type", "text/plain"),), b"made", host="alpha", cause="", retry=False)
    assert decode_response(encode_response(reply)) == reply


@pytest.mark.parametrize("app", [
    "shop.>/web", "shop/*", "shop/web.x", "shop/web >", "Shop/web", "shop", "shop/web/extra", "shop/\r\nPUB x",
    "", "/web", "shop/", "a" * 64 + "/web",
])
def test_no_app_name_can_carry_a_wildcard_or_another_token_into_a_subject(app: str) -> None:
    with pytest.raises(ValueError, match="APP/COMPONENT"):
        app_subject("wasmlet", app)


def test_subjects_are_two_tokens_of_the_name() -> None:
    assert app_subject("wasmlet", "shop/web") == "wasmlet.http.shop.web"
    with pytest.raises(ValueError, match="prefix"):
        app_subject("was.mlet", "shop/web")


def _meta() -> dict[str, object]:
    data = encode_request(_request())
    (size,) = struct.unpack_from(">I", data, 4)
    return dict(json.loads(data[8:8 + size]))


def _raw(meta: object, body: bytes = b"") -> bytes:
    head = json.dumps(meta).encode()
    return b"WLF1" + struct.pack(">I", len(head)) + head + body


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "magic"),
    (b"GET / HTTP/1.1\r\n", "magic"),
    (b"WLF1" + struct.pack(">I", 10**9) + b"{}", "metadata length"),
    (b"WLF1" + struct.pack(">I", 5) + b"{nope", "not JSON"),
    (_raw([1, 2]), "not a JSON object"),
    (_raw({"method": "GET"}), "path"),
    (_raw({**_meta(), "method": "G T"}), "method"),
    (_raw({**_meta(), "scheme": "gopher"}), "scheme"),
    (_raw({**_meta(), "client": ["x", 70000]}), "client"),
    (_raw({**_meta(), "headers": [["a"]]}), "headers"),
])
def test_malformed_envelopes_are_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedEnvelope, match=reason):
        decode_request(data)


def test_header_injection_through_an_envelope_is_refused() -> None:
    data = encode_request(_request(headers=(("x-a", "1\r\nx-injected: 2"),)))
    with pytest.raises(MalformedEnvelope, match="CR, LF or NUL"):
        decode_request(data)


def test_a_reply_with_a_bad_status_is_refused() -> None:
    with pytest.raises(MalformedEnvelope, match="status"):
        decode_response(_raw({"status": 99999, "headers": [], "host": "", "cause": "", "retry": False}))


def test_idempotent_methods_are_those_of_rfc_9110() -> None:
    assert [m for m in ("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", "POST", "PATCH") if is_idempotent(m)] \
        == ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]
