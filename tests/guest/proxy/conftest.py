"""What the in-process proxy tests share: both request paths.

``request_path`` (module-scoped, for the modules that ask for it) runs a module
twice: with the C helpers making a request's wasmtime calls in one crossing,
converting resources (``_native``: ``wasmlet_component_run``,
``wasmlet_resource_rep``/``_own``) and entering the host functions
(``_hostcall.c``: ``wasmlet_host_call``/``_drop``), and with ctypes making the
calls one by one and its callbacks entering the host functions. A handler built
inside takes the path in force when it is built.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from wasmlet.guest import _native as native
from wasmlet.guest._proxy import _abi as abi


@pytest.fixture(scope="module", params=["native", "ctypes"])
def request_path(request: pytest.FixtureRequest) -> Iterator[str]:
    saved = abi._to_rep, abi._own_into
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "native":
            assert native.fast_path() is not None, "the C helper did not build (is a C compiler installed?)"
            assert native.host_calls() is not None, "the host-call helper did not build (python3-dev installed?)"
        else:
            patch.setattr(native, "fast_path", lambda: None)
            patch.setattr(native, "host_calls", lambda: None)
            abi._to_rep, abi._own_into = abi._ctypes_to_rep, abi._ctypes_own_into
        try:
            yield request.param
        finally:
            abi._to_rep, abi._own_into = saved
