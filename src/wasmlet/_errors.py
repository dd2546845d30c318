"""The exception tree of wasmlet: every error it raises on purpose.

Callers catch ``WasmletError`` and nothing else; each class says what went
wrong in its name and, where a caller branches on it, in a stable attribute::

    WasmletError
     +-- ConfigError                 bad settings or command-line values
     |    +-- KeyFileError           a key or certificate file that cannot be read or written
     |    +-- TrustStoreError        a trust directory that cannot be loaded
     |    +-- FileGrantError         a host path the file policy does not let a manifest mount or read
     +-- ManifestError               a manifest that does not validate (.source, .problems)
     +-- ModuleSourceError           a moduleURL that cannot be fetched or verified
     |    +-- UnsupportedSchemeError a moduleURL scheme this build does not serve
     |    +-- RegistryError          an OCI registry refused, failed or served bad content
     |         +-- RegistryAuthError the registry wants credentials it did not get or accept
     +-- ModuleError                 bytes that are not a usable Wasm module
     |    +-- CapabilityError        imports the component was not granted (.offending)
     |    +-- SignatureError         the signature chain refuses the module (.reason)
     |         +-- ModuleUnsigned     "unsigned": no ``signature`` section first in the module
     |         +-- SignatureMalformed "malformed": the section or certificate cannot be decoded
     |         +-- ModuleTampered     "tampered": the bytes do not match the signed hash
     |         +-- UnknownRoot        "unknown-root": no trust root vouches for the signing key
     |         +-- KeyRevoked         "revoked": the publisher or root key id is revoked
     |         +-- KeyExpired         "expired": the publisher certificate is outside its validity
     |         +-- OutOfScope         "out-of-scope": the certificate does not cover this module
     +-- CacheError                  the precompiled-artifact cache cannot be used
     +-- StateError                  the control-plane state refuses an operation
     |    +-- UnknownApp             no app of that name is deployed
     |    +-- UnknownVersion         no version with that id
     |    +-- NoCanary               promote/abort without a canary
     |    +-- NothingToRollBack      rollback without a previous version
     |    +-- StateLocked            another process holds the state directory
     |    +-- ControlPlaneBusy       another change holds the control plane past the wait (503, try again)
     |    +-- LatticeError           the lattice (NATS, JetStream) is unreachable or refuses (503)
     +-- AdminError                  the admin API answered 4xx/5xx (.status), or is unreachable (status 0)
     +-- GuestError                  a request the guest failed to answer (.status, .cause)
     |    +-- GuestTrap              500 "trap": unreachable, out-of-bounds, stack overflow
     |    +-- GuestExit              501 "exit": the guest exited with a non-zero status
     |    +-- MalformedResponse      502 "bad-cgi": the guest's output is not a valid response
     |    +-- GuestBadResponse       502 "bad-response": a wasi:http guest set no response, an error, or a bad one
     |    +-- GuestOutputLimit       502 "output-limit": the guest wrote more than the response cap
     |    +-- AppUnavailable         503 "unavailable": the version could not be loaded on this host
     |    +-- GuestCapacity          503 "capacity": no instance slot free on this worker (the pool's limit)
     |    +-- GuestTimeout           504 "timeout": the guest ran past its epoch deadline
     |    +-- GuestMemoryLimit       507 "memory-limit": the guest failed at its memory limit
     +-- EgressDenied                an outbound connection the egress policy refuses (.reason)
     +-- Rejected                    a request refused before it reached a guest (.status, .cause, .retry_after)
          +-- RateLimited            429 "rate-limited": a token bucket is empty
          +-- Overloaded             503 "overloaded": the app's queue is full or the wait timed out
          +-- CircuitOpen            503 "circuit-open": the app's circuit breaker is open

Every class is re-exported from ``wasmlet``. Third-party errors (wasmtime
traps, YAML, pydantic, HTTP, SQLite) are translated at the boundary with
``raise ... from exc`` so the original stays in ``__cause__``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "AdminError",
    "AppUnavailable",
    "CacheError",
    "CapabilityError",
    "CircuitOpen",
    "ConfigError",
    "ControlPlaneBusy",
    "EgressDenied",
    "FileGrantError",
    "GuestBadResponse",
    "GuestError",
    "GuestCapacity",
    "GuestExit",
    "GuestMemoryLimit",
    "GuestOutputLimit",
    "GuestTimeout",
    "GuestTrap",
    "KeyExpired",
    "KeyFileError",
    "KeyRevoked",
    "LatticeError",
    "MalformedResponse",
    "ManifestError",
    "ModuleError",
    "ModuleSourceError",
    "ModuleTampered",
    "ModuleUnsigned",
    "NoCanary",
    "NothingToRollBack",
    "OutOfScope",
    "Overloaded",
    "RateLimited",
    "RegistryAuthError",
    "RegistryError",
    "Rejected",
    "SignatureError",
    "SignatureMalformed",
    "StateError",
    "StateLocked",
    "TrustStoreError",
    "UnknownApp",
    "UnknownRoot",
    "UnknownVersion",
    "UnsupportedSchemeError",
    "WasmletError",
]


class WasmletError(Exception):
    """Root of every error wasmlet raises on purpose."""


class ConfigError(WasmletError):
    """A setting or command-line value is invalid."""


class ManifestError(WasmletError):
    """A manifest is invalid.

    ``problems`` holds one ``(field_path, message)`` pair per problem, where the
    field path is spelled the way a user reads YAML:
    ``spec.components[0].properties.memoryLimit``.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: invalid manifest"]
        lines += [f"  {path or '(document)'}: {message}" for path, message in problems]
        super().__init__("\n".join(lines))


class ModuleSourceError(WasmletError):
    """A ``moduleURL`` cannot be fetched, or its bytes fail verification."""


class UnsupportedSchemeError(ModuleSourceError):
    """A ``moduleURL`` scheme that this build of wasmlet does not serve yet."""


class RegistryError(ModuleSourceError):
    """An OCI registry cannot be reached, refuses a request, or serves content that fails verification."""


class RegistryAuthError(RegistryError):
    """An OCI registry wants credentials that wasmlet does not have, or rejected the ones it sent."""


class ModuleError(WasmletError):
    """Bytes that are not a valid or usable WebAssembly module."""


class CacheError(WasmletError):
    """The precompiled-artifact cache cannot be read or written."""


class GuestError(WasmletError):
    """A guest failed to answer a request.

    Each subclass maps to one HTTP status (see ``docs/guest-errors.md``):
    ``status`` is what the client receives and ``cause`` is the short,
    stable name used in logs and in the ``X-Wasmlet-Error`` header.
    """

    status = 500
    cause = "guest-error"
    #: What the guest wrote to stderr before failing (logged, never sent to the client).
    stderr: bytes = b""
    #: Measurements of the failed run (a ``wasmlet.guest.GuestStats``), if it started.
    stats: object | None = None


class GuestTrap(GuestError):
    status = 500
    cause = "trap"


class GuestExit(GuestError):
    status = 501
    cause = "exit"

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class MalformedResponse(GuestError):
    status = 502
    cause = "bad-cgi"


class GuestBadResponse(GuestError):
    """A ``wasi:http`` guest returned without a usable response: the outparam never set, set to an
    ``error-code``, its body not finished, a 1xx status or a header value with a control character."""

    status = 502
    cause = "bad-response"


class GuestTimeout(GuestError):
    status = 504
    cause = "timeout"


class GuestCapacity(GuestError):
    """No instance could be made: the worker's pooling allocator had no slot free (its limit of
    core instances, memories or tables, shared by the requests running at once). The host's
    capacity, not the guest's fault: 503, and the app's circuit breaker does not count it."""

    status = 503
    cause = "capacity"


class GuestMemoryLimit(GuestError):
    status = 507
    cause = "memory-limit"


class GuestOutputLimit(GuestError):
    status = 502
    cause = "output-limit"


class AppUnavailable(GuestError):
    """The app's version could not be loaded (its bytes or artifact are missing or refused);
    the worker serves every other app and answers this one with 503."""

    status = 503
    cause = "unavailable"


class FileGrantError(ConfigError):
    """A ``files`` mount or local ``moduleURL`` the host's file policy does not allow."""


class KeyFileError(ConfigError):
    """A key or certificate file is missing, unreadable or not in the expected format."""


class TrustStoreError(ConfigError):
    """The trust directory (roots, certificates, revocation list) cannot be loaded."""


class SignatureError(ModuleError):
    """A module's signature chain does not verify; ``reason`` names why, stably."""

    reason = "signature"


class ModuleUnsigned(SignatureError):
    reason = "unsigned"


class SignatureMalformed(SignatureError):
    reason = "malformed"


class ModuleTampered(SignatureError):
    reason = "tampered"


class UnknownRoot(SignatureError):
    reason = "unknown-root"


class KeyRevoked(SignatureError):
    reason = "revoked"


class KeyExpired(SignatureError):
    reason = "expired"


class OutOfScope(SignatureError):
    reason = "out-of-scope"


class CapabilityError(ModuleError):
    """A module imports host functions its component was not granted.

    ``offending`` lists them as ``module::name``, sorted.
    """

    def __init__(self, name: str, offending: Sequence[str]) -> None:
        self.offending = tuple(offending)
        super().__init__(
            f"{name}: the module imports what its capabilities do not grant: {', '.join(self.offending)} "
            "(grant files, allowedOutboundHosts or wasiImports in the component's capabilities)"
        )


class EgressDenied(WasmletError):
    """An outbound connection refused by the egress policy; ``reason`` says which rule."""

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"outbound connection to {target} refused: {reason}")


class Rejected(WasmletError):
    """A request refused before it reaches a guest.

    ``status`` and ``cause`` are for the response (``X-Wasmlet-Error``), and
    ``retry_after`` (seconds) for its ``Retry-After`` header: use
    ``retry_after_header`` to get the integer the header needs.
    """

    status = 503
    cause = "rejected"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(0.0, retry_after)

    @property
    def retry_after_header(self) -> bytes:
        """``Retry-After`` is whole seconds (RFC 9110, section 10.2.3); round up, at least 1."""
        return str(max(1, math.ceil(self.retry_after))).encode()


class RateLimited(Rejected):
    status = 429
    cause = "rate-limited"


class Overloaded(Rejected):
    status = 503
    cause = "overloaded"


class CircuitOpen(Rejected):
    status = 503
    cause = "circuit-open"


class StateError(WasmletError):
    """The control-plane state refuses an operation (bad input, or not possible in the app's state)."""


class _AboutAnApp(StateError):
    """A refusal about one app; ``app`` names it, ``template`` words it."""

    template = "app {app!r}"

    def __init__(self, app: str) -> None:
        super().__init__(self.template.format(app=app))
        self.app = app


class UnknownApp(_AboutAnApp):
    """No app of that name is deployed."""

    template = "no app named {app!r} is deployed"


class UnknownVersion(StateError):
    """No version with that id exists."""

    def __init__(self, version_id: int) -> None:
        super().__init__(f"no version {version_id}")
        self.version_id = version_id


class NoCanary(_AboutAnApp):
    """``promote`` or ``abort`` on an app that has no canary."""

    template = "app {app!r} has no canary"


class NothingToRollBack(_AboutAnApp):
    """``rollback`` on an app that has no previous version."""

    template = "app {app!r} has no previous version to roll back to"


class StateLocked(StateError):
    """Another process holds the state directory."""

    def __init__(self, directory: Path) -> None:
        super().__init__(f"state directory {directory} is in use by another process (its lock file is held)")
        self.directory = directory


class ControlPlaneBusy(StateError):
    """Another change (a deploy, a rollback, ...) held the control plane longer than a caller waits.

    Nothing was changed; the admin API answers 503 and the call can be made again.
    """

    http_status = 503

    def __init__(self, operation: str, holder: str, held: float, waited: float) -> None:
        super().__init__(
            f"the control plane is busy: {holder} has been running for {held:.0f}s and {operation} "
            f"waited {waited:g}s for it; nothing was changed, try again"
        )
        self.operation = operation
        self.holder = holder


class LatticeError(StateError):
    """The lattice's NATS servers cannot be reached in time, or JetStream refuses an operation.

    The admin API answers 503: try again once the lattice is back. A message says
    whether the change was not made or may have been recorded (a lost acknowledgement).
    """

    http_status = 503


class AdminError(WasmletError):
    """The admin API answered with an error (``status`` 4xx/5xx), or could not be reached (``status`` 0)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message if status == 0 else f"admin API error {status}: {message}")
