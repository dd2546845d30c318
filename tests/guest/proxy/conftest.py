"""What the in-process proxy tests share: both request paths.

``request_path`` (module-scoped, for the modules that ask for it) runs a module
twice: with the C helper making a request's wasmtime calls in one crossing and
converting resources (``_native``: ``wasmlet_component_run``,
``wasmlet_resource_rep``/``_own``), and with ctypes making them one by one. A
handler built inside takes the path in force when it is built.
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
        else:
            patch.setattr(native, "fast_path", lambda: None)
            abi._to_rep, abi._own_into = abi._ctypes_to_rep, abi._ctypes_own_into
        try:
            yield request.param
        finally:
            abi._to_rep, abi._own_into = saved
