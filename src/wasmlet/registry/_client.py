"""A small OCI distribution-spec client on httpx: manifests, blobs, auth.

Only what push, pull and login need: ``GET``/``PUT`` of manifests, ``HEAD``/
``GET`` of blobs, the two-step monolithic blob upload (``POST`` then ``PUT
?digest=``), and the ``/v2/`` ping. Every byte read is bounded by the size its
descriptor declares and checked against its digest by the caller; nothing here
writes to disk.

Authentication follows the distribution token spec: a request goes out with
whatever is already known for its scope; a ``401`` carries a
``WWW-Authenticate`` challenge, answered with basic credentials or with a
bearer token fetched from the challenge's realm (anonymously when there are no
credentials, which is how public repositories on most registries work), and
the request is sent once more. Tokens are cached per scope for their
``expires_in``. The docker config is read, and a credential helper run, at the
first challenge only: a registry that asks for nothing never starts a helper
(so a public pull works where the configured helper is not installed).
"""

from __future__ import annotations

import functools
import os
import ssl
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from .._errors import RegistryAuthError, RegistryError
from ._auth import Challenge, Credentials, helper_for, load_credentials, parse_challenge, server_address
from ._progress import Transfer
from ._reference import is_loopback

__all__ = ["RegistryClient", "Unreachable", "insecure_allowed", "registry_timeout"]

_MAX_MANIFEST = 4 << 20  # distribution-spec: registries SHOULD accept manifests up to 4 MiB
_CHUNK = 1 << 20
# A read timeout bounds each wait, not a transfer: a registry sending a byte every few seconds
# never trips it, and a 40 MB component would take years. So a whole body gets the read timeout
# plus the time it takes at this rate (a 40 MB component: 30 s + 152 s), then the pull fails.
MIN_RATE = 256 << 10  # bytes per second
_DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_INSECURE_ENV = "WASMLET_INSECURE_REGISTRIES"
_TIMEOUT_ENV = "WASMLET_REGISTRY_TIMEOUT"


class Unreachable(RegistryError):
    """The registry did not answer (refused, timed out, 5xx): the one case where a local copy may stand in."""


def insecure_allowed(registry: str) -> bool:
    """Plain HTTP is allowed for ``registry`` by ``$WASMLET_INSECURE_REGISTRIES`` (comma-separated host[:port])."""
    listed = {item.strip().lower() for item in os.environ.get(_INSECURE_ENV, "").split(",") if item.strip()}
    return registry.lower() in listed


def registry_timeout() -> httpx.Timeout:
    """``$WASMLET_REGISTRY_TIMEOUT`` seconds for every phase if set, else 10 s to connect and 30 s per read."""
    raw = os.environ.get(_TIMEOUT_ENV)
    if raw:
        try:
            seconds = float(raw)
        except ValueError:
            seconds = 0.0
        if seconds > 0:
            return httpx.Timeout(seconds)
    return _DEFAULT_TIMEOUT


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process: building one (loading the CA bundle) costs ~40 ms, and every
    ``httpx.Client()`` builds its own unless given one, which would dominate a warm deploy."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def _errors_of(response: httpx.Response) -> str:
    """The distribution-spec error body (``{"errors": [{"code", "message"}]}``), shortened."""
    try:
        body: Any = response.json()
    except Exception:
        return ""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return ""
    parts = []
    for error in errors[:3]:
        if isinstance(error, dict):
            parts.append(": ".join(str(error[key]) for key in ("code", "message") if error.get(key)))
    return "; ".join(part for part in parts if part)


class RegistryClient:
    """One registry host. ``where`` prefixes every error (the reference, usually)."""

    def __init__(
        self,
        registry: str,
        *,
        hostname: str,
        where: str,
        insecure: bool = False,
        credentials: Credentials | None = None,
        use_docker_config: bool = True,
        timeout: httpx.Timeout | None = None,
    ) -> None:
        self.registry = registry
        self.where = where
        self.plain_http = is_loopback(hostname) or insecure or insecure_allowed(registry)
        self.base_url = f"{'http' if self.plain_http else 'https'}://{registry}"
        self.timeout = timeout or registry_timeout()
        self.credentials = credentials
        self._look_up = credentials is None and use_docker_config  # in the docker config, at the first challenge
        self._http = httpx.Client(timeout=self.timeout, follow_redirects=False, verify=_tls_context())
        self._tokens: dict[str, tuple[str, float]] = {}  # scope -> (bearer token, expiry)
        self._bearer: Challenge | None = None  # the registry's bearer challenge, once seen
        self._basic = False  # the registry asked for basic auth: send it up front from now on

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- errors -------------------------------------------------------------------------------------

    def _transport_error(self, exc: httpx.TransportError, what: str) -> RegistryError:
        if isinstance(exc, httpx.TimeoutException):
            seconds = self.timeout.read if isinstance(exc, httpx.ReadTimeout) else self.timeout.connect
            return Unreachable(f"{self.where}: {what}: the registry at {self.base_url} did not answer "
                               f"within {seconds:g} s ({type(exc).__name__})")
        if isinstance(exc, httpx.ConnectError):
            return Unreachable(f"{self.where}: {what}: cannot connect to the registry at {self.base_url}: {exc}")
        return Unreachable(f"{self.where}: {what}: the connection to {self.base_url} failed: {exc}")

    def _status_error(self, response: httpx.Response, what: str) -> RegistryError:
        detail = _errors_of(response)
        text = f"{self.where}: {what}: the registry answered HTTP {response.status_code}"
        text += f" ({detail})" if detail else ""
        if response.status_code == 404:
            return RegistryError(f"{text}: not found")
        if response.status_code == 403:
            return RegistryAuthError(f"{text}: access denied for {self._who()}")
        if response.status_code >= 500 or response.status_code == 429:
            # An outage or rate limiting: the registry is not serving, not saying "no".
            return Unreachable(text)
        return RegistryError(text)

    def _who(self) -> str:
        return f"user {self.credentials.username!r}" if self.credentials else "anonymous access"

    def _no_credentials(self) -> RegistryAuthError:
        helper = helper_for(self.registry)
        server = server_address(self.registry)
        hint = f" (docker's credential helper {helper!r} has none for {server})" if helper else ""
        return RegistryAuthError(
            f"{self.where}: the registry requires authentication and there are no credentials for "
            f"{self.registry}{hint}; run: wasmlet login {self.registry} -u USER --password-stdin"
        )

    # -- auth ---------------------------------------------------------------------------------------

    def _auth_header(self, scope: str) -> str | None:
        cached = self._tokens.get(scope)
        if cached and cached[1] > time.monotonic():
            return f"Bearer {cached[0]}"
        if self._bearer is not None:
            return f"Bearer {self._fetch_token(self._bearer, [scope], cache_as=scope)}"
        if self._basic and self.credentials:
            return self.credentials.basic_header()
        return None

    def _load_credentials(self) -> None:
        if not self._look_up:
            return
        self._look_up = False
        try:
            self.credentials = load_credentials(self.registry)
        except RegistryAuthError as exc:
            raise RegistryAuthError(f"{self.where}: the registry requires authentication, and {exc}") from exc

    def _answer(self, response: httpx.Response, scope: str) -> str:
        """The Authorization header that answers a 401's challenge."""
        self._load_credentials()
        challenge = parse_challenge(response.headers.get("www-authenticate", ""))
        if challenge is None or challenge.scheme not in ("basic", "bearer"):
            scheme = challenge.scheme if challenge else "none"
            raise RegistryAuthError(f"{self.where}: the registry answered 401 with an unsupported challenge ({scheme})")
        if challenge.scheme == "basic":
            if self.credentials is None:
                raise self._no_credentials()
            self._basic = True
            return self.credentials.basic_header()
        self._bearer = challenge
        self._tokens.pop(scope, None)
        # Ask for the scope this client needs (pull,push for a push) and also
        # whatever the challenge names, which may differ in spelling or add
        # actions (distribution token spec, "Requesting a Token": scope may repeat).
        extra = challenge.params.get("scope")
        scopes = [scope] + ([extra] if extra and extra != scope else [])
        return f"Bearer {self._fetch_token(challenge, scopes, cache_as=scope)}"

    def _fetch_token(self, challenge: Challenge, scopes: list[str], cache_as: str) -> str:
        realm = challenge.params.get("realm")
        if not realm:
            raise RegistryAuthError(f"{self.where}: the registry's bearer challenge names no realm")
        parts = urlsplit(realm)
        plain_ok = self.plain_http or is_loopback(parts.hostname or "")
        if parts.scheme != "https" and not (parts.scheme == "http" and plain_ok):
            raise RegistryAuthError(f"{self.where}: refusing to send credentials to token realm {realm!r} (not https)")
        service = challenge.params.get("service")
        pairs: list[tuple[str, str | int | float | bool | None]] = [("service", service)] if service else []
        pairs += [("scope", item) for item in scopes if item]
        params = httpx.QueryParams(pairs)
        auth = (self.credentials.username, self.credentials.password) if self.credentials else None
        try:
            response = self._http.get(realm, params=params, auth=auth, follow_redirects=True)
        except httpx.TransportError as exc:
            raise self._transport_error(exc, f"token request to {realm}") from exc
        if response.status_code in (401, 403):
            if self.credentials is None:
                raise self._no_credentials()
            raise RegistryAuthError(f"{self.where}: the token service {realm} rejected {self._who()} "
                                    f"(HTTP {response.status_code})")
        if response.status_code != 200:
            raise self._status_error(response, f"token request to {realm}")
        try:
            body = response.json()
        except ValueError as exc:
            raise RegistryAuthError(f"{self.where}: the token service {realm} answered no JSON") from exc
        token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryAuthError(f"{self.where}: the token service {realm} answered no token")
        # Token spec: expires_in defaults to 60 s; renew a little early.
        expires = body.get("expires_in") if isinstance(body.get("expires_in"), int) else 60
        self._tokens[cache_as] = (token, time.monotonic() + max(expires - 5, 1))
        return token

    # -- requests -----------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        url: str,
        what: str,
        *,
        scope: str,
        headers: dict[str, str] | None = None,
        body: Callable[[], Iterator[bytes] | bytes] | None = None,
        stream: bool = False,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        """Send once, answer a 401 challenge, send again. ``body`` is a factory so a retry can resend it."""
        headers = dict(headers or {})
        for attempt in range(2):
            auth = self._auth_header(scope)
            if auth:
                headers["Authorization"] = auth
            request = self._http.build_request(method, url, headers=headers,
                                               content=body() if body is not None else None)
            try:
                response = self._http.send(request, stream=stream, follow_redirects=follow_redirects)
            except httpx.TransportError as exc:
                raise self._transport_error(exc, what) from exc
            if response.status_code != 401:
                return response
            response.read()
            response.close()
            if attempt:
                raise RegistryAuthError(f"{self.where}: {what}: the registry rejected {self._who()} (HTTP 401); "
                                        f"run: wasmlet login {self.registry}")
            # A stale cached token or a first contact: forget it and answer the challenge.
            self._tokens.pop(scope, None)
            headers["Authorization"] = self._answer(response, scope)
        raise AssertionError("unreachable")

    def ping(self) -> None:
        """``GET /v2/`` with credentials: proves the registry speaks distribution v2 and accepts them."""
        response = self._send("GET", f"{self.base_url}/v2/", "login", scope="")
        if response.status_code != 200:
            raise self._status_error(response, "login")

    def get_manifest(self, repository: str, target: str) -> tuple[bytes, str | None, str | None]:
        """``(body, Content-Type, Docker-Content-Digest)`` of a manifest, by tag or digest."""
        from ._artifact import ACCEPT_MANIFESTS

        url = f"{self.base_url}/v2/{repository}/manifests/{target}"
        response = self._send("GET", url, "fetching the manifest", scope=f"repository:{repository}:pull",
                              headers={"Accept": ACCEPT_MANIFESTS}, stream=True)
        try:
            if response.status_code != 200:
                response.read()
                raise self._status_error(response, "fetching the manifest")
            body = self._read_bounded(response, _MAX_MANIFEST, "the manifest", exact=False)
        finally:
            response.close()
        return body, response.headers.get("content-type"), response.headers.get("docker-content-digest")

    def get_blob(self, repository: str, digest: str, size: int, label: str) -> bytes:
        """A blob's bytes, no more than ``size`` (the caller verifies the digest)."""
        url = f"{self.base_url}/v2/{repository}/blobs/{digest}"
        # Registries commonly redirect blob reads to object storage; httpx drops
        # the Authorization header when the redirect leaves the origin.
        response = self._send("GET", url, f"fetching blob {digest}", scope=f"repository:{repository}:pull",
                              stream=True, follow_redirects=True)
        try:
            if response.status_code != 200:
                response.read()
                raise self._status_error(response, f"fetching blob {digest}")
            with Transfer(label, size) as progress:
                return self._read_bounded(response, size, f"blob {digest}", exact=True, progress=progress)
        finally:
            response.close()

    def _read_bounded(self, response: httpx.Response, limit: int, what: str, *, exact: bool,
                      progress: Transfer | None = None) -> bytes:
        body = bytearray()
        received = 0
        allowed = (self.timeout.read or 30.0) + limit / MIN_RATE
        deadline = time.monotonic() + allowed
        try:
            # No chunk size: each piece is seen as it arrives, so the deadline is checked
            # even when a registry sends one byte at a time.
            for chunk in response.iter_bytes():
                received += len(chunk)
                if received > limit:
                    raise RegistryError(f"{self.where}: {what} is larger than the {limit} bytes expected")
                body += chunk
                if progress is not None:
                    progress.advance(len(chunk))
                if time.monotonic() > deadline and received < limit:
                    raise Unreachable(f"{self.where}: reading {what}: the registry at {self.base_url} sent "
                                      f"{received} of {limit} bytes in {allowed:.3g} s (slower than "
                                      f"{MIN_RATE >> 10} KiB/s); giving up")
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
                raise RegistryError(f"{self.where}: {what} is truncated: the connection closed after "
                                    f"{received} bytes ({exc})") from exc
            raise self._transport_error(exc, f"reading {what}") from exc
        if exact and received != limit:
            raise RegistryError(f"{self.where}: {what} is truncated: got {received} of {limit} bytes")
        return bytes(body)

    def has_blob(self, repository: str, digest: str) -> bool:
        url = f"{self.base_url}/v2/{repository}/blobs/{digest}"
        response = self._send("HEAD", url, f"checking blob {digest}", scope=f"repository:{repository}:pull,push",
                              follow_redirects=True)
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise self._status_error(response, f"checking blob {digest}")

    def put_blob(self, repository: str, digest: str, data: bytes, label: str) -> None:
        """Monolithic upload: ``POST /blobs/uploads/`` for a session, then one ``PUT ...?digest=``."""
        scope = f"repository:{repository}:pull,push"
        what = f"uploading blob {digest}"
        response = self._send("POST", f"{self.base_url}/v2/{repository}/blobs/uploads/", what, scope=scope,
                              headers={"Content-Length": "0"})
        if response.status_code != 202 or "location" not in response.headers:
            raise self._status_error(response, what)
        # The Location may be relative and may already carry a query (distribution-spec, "Pushing blobs").
        location = httpx.URL(urljoin(f"{self.base_url}/", response.headers["location"]))
        url = location.copy_merge_params({"digest": digest})

        with Transfer(label, len(data)) as progress:
            def chunks() -> Iterator[bytes]:
                progress.reset()
                view = memoryview(data)
                for start in range(0, len(view), _CHUNK):
                    piece = bytes(view[start:start + _CHUNK])
                    progress.advance(len(piece))
                    yield piece

            response = self._send(
                "PUT", str(url), what, scope=scope, body=chunks,
                # An explicit length keeps httpx from switching to chunked transfer,
                # which some registries and proxies refuse for blob uploads.
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
            )
        if response.status_code != 201:
            raise self._status_error(response, what)
        echoed = response.headers.get("docker-content-digest")
        if echoed and echoed != digest:
            raise RegistryError(f"{self.where}: {what}: the registry stored it as {echoed}")

    def put_manifest(self, repository: str, tag: str, media_type: str, data: bytes, digest: str) -> None:
        what = "uploading the manifest"
        response = self._send("PUT", f"{self.base_url}/v2/{repository}/manifests/{tag}", what,
                              scope=f"repository:{repository}:pull,push",
                              headers={"Content-Type": media_type}, body=lambda: data)
        if response.status_code != 201:
            raise self._status_error(response, what)
        echoed = response.headers.get("docker-content-digest")
        if echoed and echoed != digest:
            raise RegistryError(f"{self.where}: {what}: the registry stored it as {echoed}, expected {digest}")
