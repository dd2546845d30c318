"""wasmlet: a lightweight WebAssembly runtime for HTTP edge functions.

Importing this package has no side effects and loads no engine: the public
surface here is the exception tree (``wasmlet._errors`` draws it) and the
version. The ``wasmlet`` command is in ``wasmlet.cli`` (its console script,
``wasmlet._launch``, gives ``serve`` a head start); the shared plan in
``wasmlet.plan``; the control side in ``wasmlet.control``.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing it would cost the console script's head start ~8 ms
if TYPE_CHECKING:
    from ._errors import (
        AdminError,
        AppUnavailable,
        CacheError,
        CapabilityError,
        CircuitOpen,
        ConfigError,
        ControlPlaneBusy,
        EgressDenied,
        FileGrantError,
        GuestBadResponse,
        GuestCapacity,
        GuestError,
        GuestExit,
        GuestMemoryLimit,
        GuestOutputLimit,
        GuestTimeout,
        GuestTrap,
        KeyExpired,
        KeyFileError,
        KeyRevoked,
        LatticeError,
        MalformedResponse,
        ManifestError,
        ModuleError,
        ModuleSourceError,
        ModuleTampered,
        ModuleUnsigned,
        NoCanary,
        NothingToRollBack,
        OutOfScope,
        Overloaded,
        RateLimited,
        RegistryAuthError,
        RegistryError,
        Rejected,
        SignatureError,
        SignatureMalformed,
        StateError,
        StateLocked,
        TrustStoreError,
        UnknownApp,
        UnknownRoot,
        UnknownVersion,
        UnsupportedSchemeError,
        WasmletError,
    )


__version__ = "0.1.0"

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
    "__version__",
]


def __getattr__(name: str) -> object:
    """The exception tree loads on first use (PEP 562): ``wasmlet._launch``, the console script, must
    be able to start ``serve``'s zygote before importing anything (``wasmlet._early``)."""
    if name in __all__:
        from . import _errors

        value = getattr(_errors, name)
        globals()[name] = value  # once loaded, a plain attribute
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
