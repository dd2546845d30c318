"""The errors of the security layer.

They live here until they are moved into ``wasmlet._errors``; each derives
from an existing branch of the tree so that the callers that already catch
``ModuleError`` (deploy) or ``ConfigError`` (settings) handle them unchanged::

    WasmletError
     +-- ConfigError
     |    +-- KeyFileError            a key or certificate file that cannot be read or written
     |    +-- TrustStoreError         a trust directory that cannot be loaded
     +-- ModuleError
     |    +-- SignatureError          a module whose signature chain does not verify (.reason)
     |    |    +-- ModuleUnsigned     "unsigned": no ``signature`` section first in the module
     |    |    +-- SignatureMalformed "malformed": the section or certificate cannot be decoded
     |    |    +-- ModuleTampered     "tampered": the bytes do not match the signed hash
     |    |    +-- UnknownRoot        "unknown-root": no trust root vouches for the signing key
     |    |    +-- KeyRevoked         "revoked": the publisher or root key id is revoked
     |    |    +-- KeyExpired         "expired": the publisher certificate is outside its validity
     |    |    +-- OutOfScope         "out-of-scope": the certificate does not cover this module
     |    +-- CapabilityError         the module imports what its capabilities do not grant
     +-- EgressDenied                 an outbound connection the policy refuses
     +-- Rejected                     a request refused before it reaches a guest (.status, .cause, .retry_after)
          +-- RateLimited             429 "rate-limited": the client's token bucket is empty
          +-- Overloaded              503 "overloaded": the app's queue is full or the wait timed out
          +-- CircuitOpen             503 "circuit-open": the app's circuit breaker is open
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .._errors import ConfigError, ModuleError, WasmletError

__all__ = [
    "CapabilityError",
    "CircuitOpen",
    "EgressDenied",
    "KeyExpired",
    "KeyFileError",
    "KeyRevoked",
    "ModuleTampered",
    "ModuleUnsigned",
    "OutOfScope",
    "Overloaded",
    "RateLimited",
    "Rejected",
    "SignatureError",
    "SignatureMalformed",
    "TrustStoreError",
    "UnknownRoot",
]


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
