"""The host's NATS connection, on an event loop of its own.

The control side is synchronous (the admin API calls ``ControlPlane`` from its
threads); nats-py is asyncio. So the lattice runs one event loop on a daemon
thread and every synchronous caller hands it a coroutine (``call``) and waits
a bounded time for the answer. NATS and JetStream errors are translated here
into ``LatticeError``.

Buckets (``docs/lattice.md``): ``PREFIX-desired`` (key-value: the desired
state and the version records) and ``PREFIX-modules`` (object store: module
bytes by sha256). Both are created on first use with ``replicas`` copies: 3
when the server reports a cluster of three or more, else 1, unless the
operator says (``--lattice-replicas``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import ssl
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js.api import KeyValueConfig, ObjectStoreConfig, StorageType
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from .._errors import LatticeError
from ..plan import LatticeLink
from ..server import connect_options

__all__ = ["CALL_TIMEOUT", "Connection"]

log = logging.getLogger("wasmlet.lattice")

T = TypeVar("T")

CALL_TIMEOUT = 10.0  # seconds a synchronous caller waits for NATS (a JetStream leader election takes a few)
CONNECT_TIMEOUT = 15.0  # seconds `serve --lattice` waits for the first connection
BUCKETS_TIMEOUT = 30.0  # seconds it then waits for JetStream to open the buckets (a new cluster elects leaders)


class Connection:
    """One NATS connection and its JetStream buckets, driven from synchronous code."""

    def __init__(self, link: LatticeLink, name: str, replicas: int | None = None) -> None:
        self.link = link
        self.name = name
        self.replicas_wanted = replicas
        self.replicas = 1
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="wasmlet-lattice", daemon=True)
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self.desired: KeyValue | None = None
        self.modules: ObjectStore | None = None
        self.on_reconnect: list[Callable[[], None]] = []
        self._closing = False

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    # Lifecycle ------------------------------------------------------------
    def start(self, timeout: float = CONNECT_TIMEOUT) -> None:
        """Connect and open (or create) the buckets; ``LatticeError`` if NATS is not there in ``timeout``."""
        self._thread.start()
        self.call(self._start(timeout), timeout + BUCKETS_TIMEOUT + CALL_TIMEOUT, "connect to the lattice")

    async def _start(self, timeout: float) -> None:
        options = connect_options(self.link, self.name)
        options["reconnected_cb"] = self._reconnected
        options["disconnected_cb"] = self._disconnected
        options["error_cb"] = self._error
        errors: list[str] = []
        fatal: list[str] = []
        refused = asyncio.Event()

        async def failed(exc: Exception) -> None:  # the client retries the servers by itself: note why
            errors.append(str(exc) or type(exc).__name__)
            if _fatal(exc):
                fatal.append(errors[-1])
                if isinstance(exc, ssl.SSLCertVerificationError):
                    fatal[-1] += " (is --lattice-tls-ca the CA that signed the NATS server's certificate?)"
                refused.set()  # credentials and certificates do not get better by retrying: say so now

        options["error_cb"] = failed
        connecting = asyncio.ensure_future(nats.connect(**options))
        refusal = asyncio.ensure_future(refused.wait())
        await asyncio.wait((connecting, refusal), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        refusal.cancel()
        if not connecting.done() or connecting.exception() is not None:
            gave_up = connecting.done()  # the client gave up by itself (a creds file it cannot use, say)
            if gave_up:
                failure = connecting.exception()
                fatal.append(f"{type(failure).__name__}: {failure}" if str(failure) else type(failure).__name__)
            connecting.cancel()
            with contextlib.suppress(BaseException):
                await connecting
            why = (fatal or errors or ["no answer"])[-1]
            raise LatticeError(f"cannot connect to the lattice at {', '.join(self.link.servers)}"
                               f"{'' if fatal else f' within {timeout:g}s'}: {why}")
        self._nc = connecting.result()
        self._nc._error_cb = self._error  # past the first connection, errors are only logged
        self._js = self._nc.jetstream(timeout=CALL_TIMEOUT / 2)
        urls = self._nc._server_info.get("connect_urls") or []  # every server of the cluster
        self.replicas = self.replicas_wanted or (3 if len(urls) >= 3 else 1)
        # A cluster just started (or one electing leaders) may take seconds to answer: tried until the deadline.
        deadline = asyncio.get_running_loop().time() + BUCKETS_TIMEOUT
        while True:
            try:
                self.desired = await self._kv(f"{self.link.prefix}-desired", history=5)
                self.modules = await self._objects(f"{self.link.prefix}-modules")
                return
            except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError) as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise LatticeError(f"JetStream did not open the lattice's buckets within {BUCKETS_TIMEOUT:g}s: "
                                       f"{exc or type(exc).__name__}") from exc
                log.info("lattice: JetStream not ready yet (%s); trying again", exc or type(exc).__name__)
                await asyncio.sleep(0.5)

    async def _kv(self, bucket: str, history: int) -> KeyValue:
        assert self._js is not None
        try:
            return await self._js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            pass
        config = KeyValueConfig(bucket=bucket, history=history, replicas=self.replicas, storage=StorageType.FILE,
                                description="wasmlet lattice: desired state and version records")
        try:
            return await self._js.create_key_value(config)
        except nats.js.errors.APIError:  # another host created it first (or with other settings)
            return await self._js.key_value(bucket)

    async def _objects(self, bucket: str) -> ObjectStore:
        assert self._js is not None
        try:
            return await self._js.object_store(bucket)
        except nats.js.errors.BucketNotFoundError:
            pass
        config = ObjectStoreConfig(bucket=bucket, replicas=self.replicas, storage=StorageType.FILE,
                                   description="wasmlet lattice: module bytes by sha256")
        try:
            return await self._js.create_object_store(bucket, config)
        except nats.js.errors.APIError:
            return await self._js.object_store(bucket)

    async def _reconnected(self) -> None:
        log.info("lattice: reconnected to NATS at %s", self._nc.connected_url.netloc if self._nc and
                 self._nc.connected_url else "?")
        for callback in self.on_reconnect:
            callback()

    async def _disconnected(self) -> None:
        if not self._closing:
            log.warning("lattice: disconnected from NATS; reconnecting")

    async def _error(self, exc: Exception) -> None:
        log.debug("lattice: NATS client error: %s", exc)

    def close(self) -> None:
        self._closing = True
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self.call(self._close(), 5.0, "disconnect")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self.loop.close()

    async def _close(self) -> None:
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.close(), 3.0)  # flushes what was published; heartbeats just stop
        # Whatever the client left running ends here, not in a closed loop's garbage.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    # Use ----------------------------------------------------------------
    @property
    def nc(self) -> NATS:
        if self._nc is None:
            raise LatticeError("not connected to the lattice")
        return self._nc

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT, what: str = "") -> T:
        """Run ``coroutine`` on the lattice's loop and wait at most ``timeout`` seconds for it."""
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("Connection.call from the lattice's own loop would wait for itself")
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise LatticeError(f"the lattice did not answer within {timeout:g}s ({what or 'a NATS call'})") from exc
        except LatticeError:
            raise
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            raise LatticeError(f"the lattice refused {what or 'a NATS call'}: {exc or type(exc).__name__}") from exc

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> concurrent.futures.Future[None]:
        """Run ``coroutine`` on the lattice's loop without waiting for it."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)


def _fatal(exc: Exception) -> bool:
    """A refusal that retrying cannot fix: bad credentials, or a server certificate the CA given does not vouch for."""
    text = str(exc).lower()
    if "authorization" in text or "authentication" in text:
        return True
    # RFC 8446 section 6.2: a failed certificate check ends the handshake with an alert; the same cert fails again.
    # The server's alert when it wants a client certificate (mutual TLS) and got none or one it does not trust.
    return isinstance(exc, ssl.SSLCertVerificationError) or (isinstance(exc, ssl.SSLError) and exc.reason in (
        "TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_BAD_CERTIFICATE", "TLSV1_ALERT_UNKNOWN_CA"))
