"""Defence in depth, deny by default (issue 4).

- ``_signing``/``_keys``: Ed25519 module signatures in the tool-conventions
  ``signature`` section, chained to host trust roots by publisher certificates;
- ``_capabilities``: per-component grants (files, outbound hosts, extra WASI
  imports) and the import whitelist checked at deploy;
- ``_egress``: Spin's ``allowedOutboundHosts`` matcher and the after-DNS check;
- ``_wasi_http``: deislabs' ``wasi_experimental_http`` host functions behind it;
- ``_breaker``: a per-app circuit breaker for guests that time out or trap;
- ``_ratelimit``: token buckets per client and a bounded queue per app.

See ``docs/security.md`` for the threat model.
"""

from ._breaker import BreakerRegistry, BreakerSettings, CircuitBreaker, State, counts_as_failure
from ._capabilities import (
    HANDLER_IMPORTS,
    Capabilities,
    FileMount,
    Preopen,
    allowed_imports,
    check_imports,
    offending_imports,
)
from ._egress import (
    AllowedHost,
    CheckedTarget,
    Target,
    is_allowed,
    is_internal,
    parse_allowed_host,
    parse_allowed_hosts,
    resolve_and_check,
)
from ._errors import (
    CapabilityError,
    CircuitOpen,
    EgressDenied,
    KeyExpired,
    KeyFileError,
    KeyRevoked,
    ModuleTampered,
    ModuleUnsigned,
    OutOfScope,
    Overloaded,
    RateLimited,
    Rejected,
    SignatureError,
    SignatureMalformed,
    TrustStoreError,
    UnknownRoot,
)
from ._keys import KeyPair, PublicKey, keygen, load_key_pair, load_public_key
from ._ratelimit import ConcurrencyLimiter, RateLimiter, client_key
from ._signing import (
    Certificate,
    TrustStore,
    VerifiedSignature,
    certify,
    module_subject,
    scope_matches,
    sign_module,
    verify_module,
)
from ._tools import certify_command, keygen_command, sign_command, verify_command
from ._wasi_http import HttpError, OutboundContext, define_wasi_http, outbound_context

__all__ = [
    "HANDLER_IMPORTS",
    "AllowedHost",
    "BreakerRegistry",
    "BreakerSettings",
    "Capabilities",
    "CapabilityError",
    "Certificate",
    "CheckedTarget",
    "CircuitBreaker",
    "CircuitOpen",
    "ConcurrencyLimiter",
    "EgressDenied",
    "FileMount",
    "HttpError",
    "KeyExpired",
    "KeyFileError",
    "KeyPair",
    "KeyRevoked",
    "ModuleTampered",
    "ModuleUnsigned",
    "OutOfScope",
    "OutboundContext",
    "Overloaded",
    "Preopen",
    "PublicKey",
    "RateLimited",
    "RateLimiter",
    "Rejected",
    "SignatureError",
    "SignatureMalformed",
    "State",
    "Target",
    "TrustStore",
    "TrustStoreError",
    "UnknownRoot",
    "VerifiedSignature",
    "allowed_imports",
    "certify",
    "certify_command",
    "check_imports",
    "client_key",
    "counts_as_failure",
    "define_wasi_http",
    "is_allowed",
    "is_internal",
    "keygen",
    "keygen_command",
    "load_key_pair",
    "load_public_key",
    "module_subject",
    "offending_imports",
    "outbound_context",
    "parse_allowed_host",
    "parse_allowed_hosts",
    "resolve_and_check",
    "scope_matches",
    "sign_command",
    "sign_module",
    "verify_command",
    "verify_module",
]
