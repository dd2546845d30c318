"""wasmlet: a lightweight WebAssembly runtime for HTTP edge functions.

Importing this package has no side effects; the ``wasmlet`` command is in
``wasmlet.cli``.
"""

from ._errors import (
    CacheError,
    ConfigError,
    GuestError,
    GuestExit,
    GuestMemoryLimit,
    GuestOutputLimit,
    GuestTimeout,
    GuestTrap,
    MalformedResponse,
    ManifestError,
    ModuleError,
    ModuleSourceError,
    RegistryAuthError,
    RegistryError,
    UnsupportedSchemeError,
    WasmletError,
)
from .security import (
    CapabilityError,
    CircuitOpen,
    EgressDenied,
    Overloaded,
    RateLimited,
    Rejected,
    SignatureError,
)

__version__ = "0.1.0"

__all__ = [
    "CacheError",
    "CapabilityError",
    "CircuitOpen",
    "EgressDenied",
    "Overloaded",
    "RateLimited",
    "Rejected",
    "SignatureError",
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
    "__version__",
]
