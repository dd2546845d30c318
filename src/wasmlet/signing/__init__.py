"""Module signatures: Ed25519 in the tool-conventions ``signature`` section,
chained to the host's trust roots by publisher certificates (``docs/security.md``).

Used by the control side (deploy verifies, serve re-checks on revocation) and
the CLI (``keygen``, ``certify``, ``sign``, ``verify``); never by workers.

- ``_keys``: key pairs and public keys on disk;
- ``_signing``: certificates, the trust store, signing and verifying a module;
- ``_wasmbin``: the few bits of the Wasm binary format the signature needs;
- ``_tools``: the CLI verbs.
"""

from ._keys import KeyPair, PublicKey, keygen, load_key_pair, load_public_key
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
from ._wasmbin import custom_section, parse_module

__all__ = [
    "Certificate",
    "KeyPair",
    "PublicKey",
    "TrustStore",
    "VerifiedSignature",
    "certify",
    "certify_command",
    "custom_section",
    "keygen",
    "keygen_command",
    "load_key_pair",
    "load_public_key",
    "module_subject",
    "parse_module",
    "scope_matches",
    "sign_command",
    "sign_module",
    "verify_command",
    "verify_module",
]
