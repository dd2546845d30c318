"""The exception tree of wasmlet.

Every error wasmlet raises on purpose derives from one root, so callers can
catch ``WasmletError`` and nothing else::

    WasmletError
     +-- ConfigError                 bad settings or command-line values
     |    +-- KeyFileError           a key file that cannot be read or is not a key      (security)
     |    +-- TrustStoreError        a trust directory that cannot be loaded             (security)
     +-- ManifestError               a manifest that does not validate
     +-- ModuleSourceError           a moduleURL that cannot be fetched or verified
     |    +-- UnsupportedSchemeError a moduleURL scheme this build does not serve
     |    +-- RegistryError          an OCI registry refused, failed or served bad content
     |         +-- RegistryAuthError the registry wants credentials it did not get or accept
     +-- ModuleError                 bytes that are not a usable Wasm module
     |    +-- CapabilityError        imports the component was not granted; .offending  (security)
     |    +-- SignatureError         the signature chain refuses the module; .reason    (security)
     |         +-- ModuleUnsigned, ModuleTampered, SignatureMalformed, UnknownRoot,
     |             KeyRevoked, KeyExpired, OutOfScope
     +-- CacheError                  the precompiled-artifact cache cannot be used
     +-- GuestError                  a request the guest failed to answer
          +-- GuestTrap              the guest trapped (unreachable, OOB, stack overflow)
          +-- GuestExit              the guest exited with a non-zero status
          +-- GuestTimeout           the guest ran past its epoch deadline
          +-- GuestMemoryLimit       the guest failed at its memory limit
          +-- GuestOutputLimit       the guest wrote more than the response cap
          +-- MalformedResponse      the guest's CGI output is not a valid response
     +-- EgressDenied                an outbound request the egress policy refuses       (security)
     +-- Rejected                    a request refused before it reached a guest         (security)
          +-- RateLimited            429, a token bucket is empty
          +-- Overloaded             503, the app's concurrency queue is full
          +-- CircuitOpen            503, the app's circuit breaker is open

Classes marked (security) live in ``wasmlet.security`` beside the code that
raises them, and are re-exported from ``wasmlet``.

Third-party errors (wasmtime traps, YAML, HTTP) are translated at the
boundary with ``raise ... from exc`` so the original stays in ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "CacheError",
    "ConfigError",
    "GuestError",
    "GuestExit",
    "GuestMemoryLimit",
    "GuestOutputLimit",
    "GuestTimeout",
    "GuestTrap",
    "MalformedResponse",
    "ManifestError",
    "ModuleError",
    "ModuleSourceError",
    "RegistryAuthError",
    "RegistryError",
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


class GuestTimeout(GuestError):
    status = 504
    cause = "timeout"


class GuestMemoryLimit(GuestError):
    status = 507
    cause = "memory-limit"


class GuestOutputLimit(GuestError):
    status = 502
    cause = "output-limit"
