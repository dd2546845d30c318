"""What a Spin host call may see: the component's context, bound to the calling thread.

The host functions are defined once on the shared component linker
(``define_spin``); what a call answers comes from the ``SpinContext`` bound
with ``spin_context(ctx)`` around the guest call. wasmtime-py runs a guest on
the thread that called into it and calls host functions back on that thread,
so a thread-local is exact (as for ``_wasi_http.outbound_context``).

A ``SpinContext`` lives as long as the component's handler; what one request
opens (key-value store handles) lives in a ``_Request`` made by
``spin_context`` and forgotten when the block ends, so one request's handle
never reaches another's.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from ...plan import ComponentSpec
from ._store import DEFAULT_LIMITS, KeyValueStores, KvLimits
from ._variables import Variables

__all__ = ["KeyValueHost", "SpinContext", "current_request", "spin_context", "spin_request_context"]


class KeyValueHost:
    """Every app's key-value stores on this host: ``root/<app>.sqlite``, one ``KeyValueStores`` per app."""

    def __init__(self, root: Path | str, limits: KvLimits = DEFAULT_LIMITS) -> None:
        self.root = Path(root)
        self.limits = limits
        self._apps: dict[str, KeyValueStores] = {}
        self._lock = threading.Lock()

    def stores(self, app: str) -> KeyValueStores:
        """The app's stores; new ones (a new, empty file) if the file the cached ones opened is gone:
        the app was deleted (``remove_app_store``) and this is its re-deploy. The old object stays
        with the deleted app's handlers, for their in-flight requests."""
        with self._lock:
            stores = self._apps.get(app)
            if stores is None or stores.stale():
                stores = self._apps[app] = KeyValueStores(self.root, app, self.limits)
            return stores

    def close(self) -> None:
        with self._lock:
            apps, self._apps = list(self._apps.values()), {}
        for stores in apps:
            stores.close()


@dataclasses.dataclass(frozen=True)
class SpinContext:
    """One component's Spin platform: its app, its variables, its app's key-value stores (or none)."""

    app: str
    variables: Variables
    kv: KeyValueStores | None = None

    @classmethod
    def build(cls, app: str, environment: Iterable[tuple[str, str]], kv: KeyValueHost | None) -> SpinContext:
        return cls(app, Variables(environment), kv.stores(app) if kv is not None else None)


@dataclasses.dataclass
class _Request:
    """The handles one request holds (store rep -> label), and its deadline (``time.monotonic()``)."""

    ctx: SpinContext
    deadline: float | None = None
    stores: dict[int, str] = dataclasses.field(default_factory=dict)

    def wait(self) -> float | None:
        """How long a host call may still wait (for a lock): the time left before the deadline."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())


_bound = threading.local()


def current_request() -> _Request | None:
    request: _Request | None = getattr(_bound, "request", None)
    return request


@contextmanager
def spin_context(ctx: SpinContext, deadline: float | None = None) -> Iterator[SpinContext]:
    """Bind ``ctx`` to this thread for the guest call inside the block, with no handles open.

    ``deadline`` (``time.monotonic()``): the request's; no key-value call waits
    for a lock past it (the epoch deadline cannot interrupt a host call).
    """
    previous = current_request()
    request = _Request(ctx, deadline)
    _bound.request = request
    try:
        yield ctx
    finally:
        _bound.request = previous
        request.stores.clear()


def spin_request_context(
    kv: KeyValueHost | None,
) -> Callable[[ComponentSpec, str], Callable[[], AbstractContextManager[SpinContext]]]:
    """For a handler: given a component's spec (at deploy), what to enter around each of its requests.

    The spec's ``app`` picks the key-value file, its ``environment`` the
    variables; ``kv=None`` (no durable state) makes ``store.open`` answer
    ``access-denied``.
    """

    def for_component(spec: ComponentSpec, name: str) -> Callable[[], AbstractContextManager[SpinContext]]:
        ctx = SpinContext.build(spec.app, spec.environment, kv)
        # Entered just before the guest starts: its deadline, give or take the time to enter.
        return lambda: spin_context(ctx, deadline=time.monotonic() + spec.timeout)

    return for_component
