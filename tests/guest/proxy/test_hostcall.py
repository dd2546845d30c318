"""The host-call helper (``_hostcall.c``) against ctypes' callback (``_abi._call``): the same values in and out.

A host function defined through the helper is entered by ``wasmlet_host_call``,
which decodes its arguments and writes the common results in C; through ctypes
``_abi._call`` does it in Python. Both are called here directly, as wasmtime
calls them, on the same argument arrays (real ``wasmtime_component_val_t``
values built by ``_abi``'s encoders, resources made in a real store): the
Python function must receive equal values of the same types, the results must
decode alike, and failures must become the same trap message. Every proxy
test also runs a guest through both (``conftest.request_path``).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import wasmtime
from wasmtime import _ffi as ffi

from wasmlet.guest import _native as native
from wasmlet.guest._proxy import _abi as abi

Build = Callable[[int, int], None]  # (context, address of the value to fill)
_CALL = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                         ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t)
_DROP = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32)
_flags_new_uninit = abi.prototype("wasmtime_component_valflags_new_uninit", None, ctypes.c_void_p, ctypes.c_size_t)
_RESOURCE_TYPE = 7


@pytest.fixture(scope="module")
def helper() -> Iterator[native.HostCalls]:
    found = native.host_calls()
    assert found is not None, "the host-call helper did not build (is python3-dev installed?)"
    abi.use_host_calls(found)
    abi.use_host_calls(None)  # initialised; the linkers built by other tests pick their own way
    yield found


@pytest.fixture()
def context() -> Iterator[int]:
    store = wasmtime.Store(wasmtime.Engine())
    address = ctypes.cast(store._context(), ctypes.c_void_p).value
    assert address
    yield address
    del store


def _value(encoder: abi.Encoder, value: Any) -> Build:
    return lambda context, out: encoder(context, value, out)


def _flags(names: list[str]) -> Build:
    def build(context: int, out: int) -> None:
        _flags_new_uninit(out + 8, len(names))
        data = ctypes.c_uint64.from_address(out + 16).value
        for i, name in enumerate(names):
            raw = name.encode()
            ffi.wasm_byte_vec_new(ctypes.cast(data + 16 * i, ctypes.POINTER(ffi.wasm_byte_vec_t)), len(raw),
                                  ctypes.cast(ctypes.c_char_p(raw), ctypes.POINTER(ctypes.c_uint8)))
        ctypes.c_uint8.from_address(out).value = ffi.WASMTIME_COMPONENT_FLAGS.value

    return build


def _raw(kind: int, payload: bytes = b"") -> Build:
    def build(context: int, out: int) -> None:
        ctypes.memmove(out + 8, payload, len(payload))
        ctypes.c_uint8.from_address(out).value = kind

    return build


def _bad_utf8(context: int, out: int) -> None:
    ffi.wasm_byte_vec_new(ctypes.cast(out + 8, ctypes.POINTER(ffi.wasm_byte_vec_t)), 2,
                          ctypes.cast(ctypes.c_char_p(b"\xff\xfe"), ctypes.POINTER(ctypes.c_uint8)))
    ctypes.c_uint8.from_address(out).value = ffi.WASMTIME_COMPONENT_STRING.value


_S32 = abi._scalar(ffi.WASMTIME_COMPONENT_S32.value, "i")
_S64 = abi._scalar(ffi.WASMTIME_COMPONENT_S64.value, "q")
_VARIANT = abi.variant({"none": None, "some": abi.u64, "text": abi.string})
ARGUMENTS: dict[str, list[Build]] = {
    "scalars": [_value(abi.boolean, True), _value(abi.boolean, False), _value(abi.u8, 255), _value(abi.u16, 65535),
                _value(abi.u32, 2**32 - 1), _value(abi.u64, 2**64 - 1), _value(_S32, -(2**31)),
                _value(_S64, -(2**63))],
    "strings": [_value(abi.string, "h\u00e9llo \u2713 \U0001f600"), _value(abi.string, ""), _value(abi.enum, "get")],
    "bytes": [_value(abi.bytes_list, bytes(range(256)) * 3), _value(abi.bytes_list, b""),
              _value(abi.bytes_list, b"\x00")],
    "lists": [_value(abi.list_of(abi.string), ["a", "", "c"]), _value(abi.list_of(abi.u64), [1, 2**40]),
              _value(abi.list_of(abi.tuple_of(abi.string, abi.bytes_list)), [("content-type", b"text/plain"),
                                                                              ("x", b"")])],
    "compound": [_value(abi.tuple_of(abi.string, abi.u32, abi.boolean), ("x", 7, True)),
                 _value(abi.record(("first", abi.u8), ("second", abi.option(abi.string))), (1, "z")),
                 _value(abi.record(("first", abi.u8), ("second", abi.option(abi.string))), (2, None)),
                 _flags(["read", "write"]), _flags([])],
    "variants": [_value(_VARIANT, ("none", None)), _value(_VARIANT, ("some", 9)), _value(_VARIANT, ("text", "t")),
                 _value(abi.option(abi.u64), None), _value(abi.option(abi.u64), 0),
                 _value(abi.option(abi.option(abi.string)), "nested"),
                 _value(abi.result(abi.u8, abi.string), (True, 3)),
                 _value(abi.result(abi.u8, abi.string), (False, "no")),
                 _value(abi.result(None, None), (True, None)), _value(abi.result(None, None), (False, None))],
    "resources": [_value(abi.own(_RESOURCE_TYPE), 0), _value(abi.own(_RESOURCE_TYPE), 2**32 - 1),
                  _value(abi.option(abi.own(_RESOURCE_TYPE)), 12)],
    "many": [_value(abi.u32, i) for i in range(11)],  # more than the C callback keeps on its stack
    "none": [],
}


def _arguments(context: int, builds: list[Build]) -> Any:
    array = (abi.Val * max(1, len(builds)))()
    for i, build in enumerate(builds):
        build(context, ctypes.addressof(array) + i * abi.VAL_SIZE)
    return array


def _delete(array: Any, count: int) -> None:
    for i in range(count):
        ffi.wasmtime_component_val_delete(ctypes.cast(ctypes.addressof(array) + i * abi.VAL_SIZE,
                                                      ctypes.POINTER(abi.Val)))


def _via_c(helper: native.HostCalls, func: Callable[..., Any], encode: abi.Encoder | None, context: int, args: Any,
           nargs: int, results: Any, nresults: int) -> int:
    plan, type_id = abi.plan_of(encode) or (native.PLAN_PYTHON, 0)
    defined = native.HostFunc(func, encode, plan, type_id)
    error: int | None = _CALL(helper.call_at)(ctypes.addressof(defined), context, None, ctypes.addressof(args),
                                              nargs, ctypes.addressof(results) if results is not None else None,
                                              nresults)
    return error or 0


def _via_ctypes(func: Callable[..., Any], encode: abi.Encoder | None, context: int, args: Any, nargs: int,
                results: Any, nresults: int) -> int:
    key = 2**40  # beyond the keys _abi hands out
    abi._functions[key] = (func, encode)
    try:
        error: int = abi._call(key, context, None, ctypes.addressof(args), nargs,
                               ctypes.addressof(results) if results is not None else None, nresults)
    finally:
        del abi._functions[key]
    return error


def _message(error: int) -> str:
    assert error, "the call did not fail"
    return str(abi.wasmtime_error(error))


@pytest.mark.parametrize("shape", sorted(ARGUMENTS))
def test_both_callbacks_hand_the_function_equal_arguments(helper: native.HostCalls, context: int,
                                                          shape: str) -> None:
    builds = ARGUMENTS[shape]
    seen: dict[str, tuple[Any, ...]] = {}
    for way in ("c", "ctypes"):
        args = _arguments(context, builds)

        def record(*values: Any, way: str = way) -> None:
            seen[way] = values

        try:
            error = (_via_c(helper, record, None, context, args, len(builds), None, 0) if way == "c"
                     else _via_ctypes(record, None, context, args, len(builds), None, 0))
            assert error == 0, _message(error)
        finally:
            _delete(args, len(builds))
    assert seen["c"] == seen["ctypes"]
    assert [_types(v) for v in seen["c"]] == [_types(v) for v in seen["ctypes"]]
    assert len(seen["c"]) == len(builds)


def _types(value: Any) -> Any:
    """The value's type, and its items' (``True == 1``, ``b"" != []``: equality alone misses a wrong type)."""
    if isinstance(value, (list, tuple)):
        return type(value), [_types(v) for v in value]
    if isinstance(value, dict):
        return dict, {k: _types(v) for k, v in value.items()}
    return type(value)


def test_the_resources_come_as_their_reps_and_are_taken(helper: native.HostCalls, context: int) -> None:
    args = _arguments(context, ARGUMENTS["resources"])
    got: list[tuple[Any, ...]] = []
    try:
        assert _via_c(helper, lambda *v: got.append(v), None, context, args, 3, None, 0) == 0
        assert got == [(0, 2**32 - 1, 12)]
        # Taken by the conversion: a second call on the same handles fails as the ctypes path does.
        for call in (lambda: _via_c(helper, lambda *v: None, None, context, args, 1, None, 0),
                     lambda: _via_ctypes(lambda *v: None, None, context, args, 1, None, 0)):
            assert "unknown handle index" in _message(call())
    finally:
        _delete(args, 3)


@pytest.mark.parametrize("build,expected", [
    (_raw(ffi.WASMTIME_COMPONENT_F64.value, b"\x00" * 8), "wasmlet: unsupported argument kind"),
    (_raw(ffi.WASMTIME_COMPONENT_S8.value, b"\x01"), "wasmlet: unsupported argument kind"),
    (_bad_utf8, "wasmlet: host function failed: UnicodeDecodeError"),
])
def test_an_argument_that_cannot_be_decoded_traps_alike(helper: native.HostCalls, context: int, build: Build,
                                                        expected: str) -> None:
    called: list[object] = []
    messages = []
    for way in ("c", "ctypes"):
        args = _arguments(context, [_value(abi.u8, 1), build])
        try:
            error = (_via_c(helper, called.append, None, context, args, 2, None, 0) if way == "c"
                     else _via_ctypes(called.append, None, context, args, 2, None, 0))
            messages.append(_message(error))
        finally:
            _delete(args, 2)
    assert called == []
    assert messages[0].splitlines()[0] == messages[1].splitlines()[0]
    assert expected in messages[0]


RESULTS: list[tuple[str, abi.Encoder, Any]] = [
    ("own", abi.own(_RESOURCE_TYPE), 42),
    ("result-own ok", abi.result(abi.own(_RESOURCE_TYPE), _VARIANT), (True, 7)),
    ("result-own err", abi.result(abi.own(_RESOURCE_TYPE), _VARIANT), (False, ("text", "no"))),
    ("result-unit ok", abi.result(None, _VARIANT), (True, None)),
    ("result-unit err", abi.result(None, _VARIANT), (False, ("some", 3))),
    ("result-unit err without payload", abi.result(None, None), (False, None)),
    ("option-string none", abi.option(abi.string), None),
    ("option-string some", abi.option(abi.string), "\u00fcber"),
    ("option-string empty", abi.option(abi.string), ""),
    ("bytes", abi.bytes_list, bytes(range(256)) * 4),
    ("bytes from a bytearray", abi.bytes_list, bytearray(b"\x00\x01")),
    ("bytes empty", abi.bytes_list, b""),
    ("bytes from a list (Python writes it)", abi.bytes_list, [104, 105]),
    ("result-bytes ok", abi.result(abi.bytes_list, _VARIANT), (True, b"body")),
    ("result-bytes err", abi.result(abi.bytes_list, _VARIANT), (False, ("none", None))),
    ("python: u64", abi.u64, 2**64 - 1),
    ("python: list of bytes", abi.list_of(abi.bytes_list), [b"a", b"bc"]),
    ("python: option own", abi.option(abi.own(_RESOURCE_TYPE)), 3),
]
# What the values decode to, where not the value itself (an empty list<u8> decodes as [] either way).
DECODED = {"bytes empty": [], "bytes from a list (Python writes it)": b"hi"}


def test_the_common_results_are_written_in_c() -> None:
    plans = {label: abi.plan_of(encoder) for label, encoder, _ in RESULTS}
    assert plans["own"] == (native.PLAN_OWN, _RESOURCE_TYPE)
    assert plans["result-own ok"] == (native.PLAN_RESULT_OWN, _RESOURCE_TYPE)
    assert plans["result-unit ok"] == (native.PLAN_RESULT_UNIT, 0)
    assert plans["option-string none"] == (native.PLAN_OPTION_STRING, 0)
    assert plans["bytes"] == (native.PLAN_BYTES, 0)
    assert plans["result-bytes ok"] == (native.PLAN_RESULT_BYTES, 0)
    assert all(plans[label] is None for label in plans if label.startswith("python: "))


@pytest.mark.parametrize("label,encoder,value", RESULTS, ids=[r[0] for r in RESULTS])
def test_both_callbacks_write_results_that_decode_alike(helper: native.HostCalls, context: int, label: str,
                                                        encoder: abi.Encoder, value: Any) -> None:
    decoded = []
    for way in ("c", "ctypes"):
        args = _arguments(context, [])
        results = (abi.Val * 1)()
        error = (_via_c(helper, lambda: value, encoder, context, args, 0, results, 1) if way == "c"
                 else _via_ctypes(lambda: value, encoder, context, args, 0, results, 1))
        assert error == 0, _message(error)
        try:
            decoded.append(abi.decode(context, ctypes.addressof(results)))  # a resource: its rep, the handle taken
        finally:
            _delete(results, 1)
    assert decoded[0] == decoded[1] == DECODED.get(label, value)
    assert type(decoded[0]) is type(decoded[1])


def _trap() -> None:
    raise abi.Trap("wasmlet: refused on purpose")


# A rep of the wrong type fails in both, with ctypes' own wording (ArgumentError) on its side.
_WRONG_TYPE = "wasmlet: host function failed: "


@pytest.mark.parametrize("func,encoder,expected", [
    (_trap, None, "wasmlet: refused on purpose"),
    (lambda: 1 // 0, None, "wasmlet: host function failed: ZeroDivisionError: integer division or modulo by zero"),
    (lambda: "not a rep", abi.own(_RESOURCE_TYPE), _WRONG_TYPE),
    (lambda: (True, "not a rep"), abi.result(abi.own(_RESOURCE_TYPE), None), _WRONG_TYPE),
    (lambda: 5, None, "wasmlet: a host function without an encoder was asked for a result"),
    (lambda: "\ud800", abi.option(abi.string), "wasmlet: host function failed: UnicodeEncodeError"),
])
def test_a_failing_function_traps_the_guest_alike(helper: native.HostCalls, context: int, func: Callable[[], Any],
                                                  encoder: abi.Encoder | None, expected: str) -> None:
    messages = []
    for way in ("c", "ctypes"):
        args = _arguments(context, [])
        results = (abi.Val * 1)()
        error = (_via_c(helper, func, encoder, context, args, 0, results, 1) if way == "c"
                 else _via_ctypes(func, encoder, context, args, 0, results, 1))
        messages.append(_message(error).splitlines()[0])
        assert results[0].kind == 0, "a failed result must keep the kind wasmtime gave it"
    assert all(m.startswith(expected) for m in messages), messages
    if expected != _WRONG_TYPE:
        assert messages[0] == messages[1]


def test_a_rep_beyond_u32_is_refused_not_truncated(helper: native.HostCalls, context: int) -> None:
    args = _arguments(context, [])
    results = (abi.Val * 1)()
    error = _via_c(helper, lambda: 2**32 + 5, abi.own(_RESOURCE_TYPE), context, args, 0, results, 1)
    assert "OverflowError" in _message(error)
    assert results[0].kind == 0


def test_a_destructor_gets_the_rep_and_its_failure_traps(helper: native.HostCalls, context: int) -> None:
    dropped: list[int] = []
    ok = native.HostDestructor(dropped.append)
    assert _DROP(helper.drop_at)(ctypes.addressof(ok), context, 2**32 - 1) in (None, 0)
    assert dropped == [2**32 - 1]

    def refuse(rep: int) -> None:
        raise abi.Trap(f"wasmlet: cannot drop {rep}")

    failing = native.HostDestructor(refuse)
    assert _message(_DROP(helper.drop_at)(ctypes.addressof(failing), context, 9)).startswith("wasmlet: cannot drop 9")
