"""Module signatures: trust roots -> publisher certificates -> signed modules.

The signature travels in the module, in the format of the WebAssembly
tool-conventions *Signatures* proposal as ``wasmsign2`` writes it: a custom
section named ``signature``, first in the module, holding::

    spec_version:varuint (0x01)  content_type:varuint (0x01, module)  hash_fn:varuint (0x01, SHA-256)
    count:varuint  signed_hashes*   each length-prefixed:
        hashes_count:varuint  hash*(32 bytes)  signatures_count:varuint  signature*   each length-prefixed:
            key_id:(varuint length, bytes)  alg:u8 (0x01, Ed25519)  signature:(varuint length, bytes)

The signed hash covers every byte but the signature section's own. For a
core module it is SHA-256 of every byte after the signature section, as
``wasmsign2`` computes it; the 8-byte preamble it leaves out is not free,
though: such a hash is accepted only under the core module preamble
(``\0asm`` version 1, the only one a module has). For a component it is
SHA-256 of the preamble followed by those bytes. So no preamble can be
swapped (issue 14: a signed module verified with a component's preamble, and
the reverse, as the preamble was in no hash). The two hashes cannot stand
for each other: bytes that begin with a preamble do not parse as sections
(``\0asm`` reads as a custom section whose name runs past its end). The signed
message is ``"wasmsig" || 0x01 || 0x01 || 0x01 || hashes``. A module signed
here verifies with ``wasmsign2 verify`` and the publisher's public key, and
the reverse.

Above that, wasmlet adds a chain the host can trust without knowing every
publisher: the host holds **trust roots**; a root **certifies** a publisher
key with a small JSON certificate (``issuer``, ``keyId``, ``publicKey``,
``scope`` globs, ``notBefore``/``notAfter``), signed by the root; the module
carries its publisher certificate in a second custom section,
``wasmlet.certificate`` (inside the signed bytes), or the host keeps it in the
trust directory's ``certs/``. ``verify_module`` accepts a module only when a
signature verifies under a certified publisher key, the bytes match the
signed hash, the certificate verifies under a configured root, neither key is
revoked, the certificate is valid at ``now``, and its scope covers the
module's subject.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._errors import (
    KeyExpired,
    KeyFileError,
    KeyRevoked,
    ModuleTampered,
    ModuleUnsigned,
    OutOfScope,
    SignatureError,
    SignatureMalformed,
    TrustStoreError,
    UnknownRoot,
)
from ._keys import KeyPair, PublicKey, load_public_key
from ._wasmbin import MODULE_PREAMBLE, Section, custom_section, parse_module, read_u32, u32

__all__ = [
    "CERTIFICATE_SECTION",
    "SIGNATURE_SECTION",
    "Certificate",
    "SignatureData",
    "TrustStore",
    "VerifiedSignature",
    "certify",
    "module_subject",
    "scope_matches",
    "sign_module",
    "verify_module",
]

SIGNATURE_SECTION = "signature"
DELIMITER_SECTION = "signature_delimiter"
CERTIFICATE_SECTION = "wasmlet.certificate"
SPEC_VERSION = 0x01
CONTENT_TYPE_MODULE = 0x01
HASH_SHA256 = 0x01
ALG_ED25519 = 0x01
_DOMAIN = b"wasmsig"
_CERT_DOMAIN = b"wasmlet-certificate-v1\0"
_CERT_TYPE = "wasmlet-publisher-certificate"
_MAX_HASHES = 64  # wasmsign2's limits
_MAX_SIGNATURES = 256
_KEY_ID = re.compile(r"^[0-9a-f]{32}$")


# The signature section --------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Signature:
    key_id: bytes  # may be empty
    alg: int
    signature: bytes


@dataclasses.dataclass(frozen=True)
class SignedHashes:
    hashes: tuple[bytes, ...]
    signatures: tuple[Signature, ...]


@dataclasses.dataclass(frozen=True)
class SignatureData:
    """The payload of a ``signature`` section."""

    signed_hashes: tuple[SignedHashes, ...]
    spec_version: int = SPEC_VERSION
    content_type: int = CONTENT_TYPE_MODULE
    hash_fn: int = HASH_SHA256

    def encode(self) -> bytes:
        out = bytearray(u32(self.spec_version) + u32(self.content_type) + u32(self.hash_fn))
        out += u32(len(self.signed_hashes))
        for entry in self.signed_hashes:
            inner = bytearray(u32(len(entry.hashes)))
            for digest in entry.hashes:
                inner += digest
            inner += u32(len(entry.signatures))
            for sig in entry.signatures:
                record = _slice(sig.key_id) + bytes([sig.alg]) + _slice(sig.signature)
                inner += _slice(record)
            out += _slice(bytes(inner))
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> SignatureData:
        version, pos = read_u32(data, 0)
        content_type, pos = read_u32(data, pos)
        hash_fn, pos = read_u32(data, pos)
        if version != SPEC_VERSION:
            raise SignatureMalformed(f"unsupported signature specification version {version:#x}")
        if content_type != CONTENT_TYPE_MODULE:
            raise SignatureMalformed(f"unsupported signature content type {content_type:#x}")
        if hash_fn != HASH_SHA256:
            raise SignatureMalformed(f"unsupported signature hash function {hash_fn:#x}")
        count, pos = read_u32(data, pos)
        if count > _MAX_HASHES:
            raise SignatureMalformed(f"too many signed hash sets ({count})")
        entries = []
        for _ in range(count):
            blob, pos = _get_slice(data, pos)
            entries.append(_decode_signed_hashes(blob))
        if pos != len(data):
            raise SignatureMalformed("trailing bytes after the signature data")
        return cls(tuple(entries), version, content_type, hash_fn)


def _decode_signed_hashes(data: bytes) -> SignedHashes:
    count, pos = read_u32(data, 0)
    if count > _MAX_HASHES:
        raise SignatureMalformed(f"too many hashes ({count})")
    hashes = []
    for _ in range(count):
        if pos + 32 > len(data):
            raise SignatureMalformed("truncated hash")
        hashes.append(bytes(data[pos:pos + 32]))
        pos += 32
    count, pos = read_u32(data, pos)
    if count > _MAX_SIGNATURES:
        raise SignatureMalformed(f"too many signatures ({count})")
    signatures = []
    for _ in range(count):
        record, pos = _get_slice(data, pos)
        key_id, rpos = _get_slice(record, 0)
        if rpos >= len(record):
            raise SignatureMalformed("truncated signature record")
        alg = record[rpos]
        sig, rpos = _get_slice(record, rpos + 1)
        if alg == ALG_ED25519:  # wasmsign2 skips records of other algorithms; so do we
            signatures.append(Signature(key_id, alg, sig))
    return SignedHashes(tuple(hashes), tuple(signatures))


def _slice(data: bytes) -> bytes:
    return u32(len(data)) + data


def _get_slice(data: bytes, pos: int) -> tuple[bytes, int]:
    size, pos = read_u32(data, pos)
    if pos + size > len(data):
        raise SignatureMalformed("truncated length-prefixed field")
    return bytes(data[pos:pos + size]), pos + size


def _message(hashes: Sequence[bytes]) -> bytes:
    return _DOMAIN + bytes([SPEC_VERSION, CONTENT_TYPE_MODULE, HASH_SHA256]) + b"".join(hashes)


# Certificates -----------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _timestamp(when: dt.datetime) -> str:
    if when.tzinfo is None:
        raise ValueError("certificate times must be timezone-aware (UTC)")
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: Any) -> dt.datetime:
    if not isinstance(text, str):
        raise ValueError("expected a time such as 2026-01-31T00:00:00Z")
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


@dataclasses.dataclass(frozen=True)
class Certificate:
    """A publisher key certified by a trust root.

    On the wire it is JSON: ``{"certificate": b64url(payload), "signature":
    b64url(Ed25519(root, "wasmlet-certificate-v1\\0" || payload))}``, where the
    payload is itself JSON with ``version`` 1, ``type``, ``issuer`` (root key
    id), ``keyId``, ``publicKey`` (b64url of 32 bytes), ``subject`` (the
    publisher's name, informative), ``scope`` (globs) and ``notBefore`` /
    ``notAfter`` (UTC, ``YYYY-MM-DDTHH:MM:SSZ``). Signing the payload bytes
    as they are avoids any JSON canonicalisation question.
    """

    payload: bytes
    signature: bytes
    issuer: str
    public_key: PublicKey
    subject: str
    scope: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime

    @property
    def key_id(self) -> str:
        return self.public_key.key_id

    def to_bytes(self) -> bytes:
        document = {"certificate": _b64(self.payload), "signature": _b64(self.signature), "alg": "Ed25519"}
        return (json.dumps(document, indent=2) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<certificate>") -> Certificate:
        """Decode (not verify) a certificate; raise ``SignatureMalformed`` if it is not one."""
        try:
            outer = json.loads(data)
            payload = _unb64(outer["certificate"])
            signature = _unb64(outer["signature"])
            fields = json.loads(payload)
            if fields.get("version") != 1 or fields.get("type") != _CERT_TYPE:
                raise ValueError(f"expected version 1 of {_CERT_TYPE}")
            public_key = PublicKey(_unb64(fields["publicKey"]))
            if fields.get("keyId") != public_key.key_id:
                raise ValueError("keyId does not match publicKey")
            scope = fields["scope"]
            if not isinstance(scope, list) or not all(isinstance(s, str) and s for s in scope):
                raise ValueError("scope must be a list of non-empty strings")
            issuer = fields["issuer"]
            if not isinstance(issuer, str) or not _KEY_ID.match(issuer):
                raise ValueError("issuer must be a key id")
            return cls(
                payload=payload,
                signature=signature,
                issuer=issuer,
                public_key=public_key,
                subject=str(fields.get("subject", "")),
                scope=tuple(scope),
                not_before=_parse_time(fields["notBefore"]),
                not_after=_parse_time(fields["notAfter"]),
            )
        except (ValueError, KeyError, TypeError, binascii.Error, KeyFileError, AttributeError,
                RecursionError) as exc:  # json recurses once per nested array: "[[[[..." from a module
            raise SignatureMalformed(f"{source}: not a wasmlet certificate: {str(exc)[:200]}") from exc

    def signed_by(self, root: PublicKey) -> bool:
        return root.key_id == self.issuer and root.verify(self.signature, _CERT_DOMAIN + self.payload)


def certify(
    root_key: KeyPair,
    publisher_pub: PublicKey,
    scope: Sequence[str],
    not_after: dt.datetime,
    *,
    subject: str = "",
    not_before: dt.datetime | None = None,
) -> Certificate:
    """Certify ``publisher_pub`` under ``root_key`` for modules matching ``scope`` until ``not_after``."""
    if not scope or not all(isinstance(s, str) and s for s in scope):
        raise ValueError("a certificate needs at least one non-empty scope pattern")
    start = not_before or dt.datetime.now(dt.UTC).replace(microsecond=0)
    if not_after <= start:
        raise ValueError("notAfter must be later than notBefore")
    fields = {
        "version": 1,
        "type": _CERT_TYPE,
        "issuer": root_key.key_id,
        "keyId": publisher_pub.key_id,
        "publicKey": _b64(publisher_pub.raw),
        "subject": subject,
        "scope": list(scope),
        "notBefore": _timestamp(start),
        "notAfter": _timestamp(not_after),
    }
    payload = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    signature = root_key.sign(_CERT_DOMAIN + payload)
    return Certificate.from_bytes(
        json.dumps({"certificate": _b64(payload), "signature": _b64(signature)}).encode()
    )


# Scope -----------------------------------------------------------------------
def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def scope_matches(scope: Iterable[str], subject: str) -> bool:
    """``subject`` matches one of the globs: ``*`` within a ``/`` segment, ``**`` across, ``?`` one character."""
    return any(_glob_regex(pattern).fullmatch(subject) for pattern in scope)


def module_subject(module_url: str, qualified_name: str) -> str:
    """The subject a module's certificate scope must cover.

    For ``oci://REGISTRY/REPOSITORY[:TAG][@DIGEST]`` it is ``REGISTRY/REPOSITORY``
    (tag and digest dropped: a certificate covers a repository, not a version);
    for anything else (paths, ``file://``, ``https://``) the component's
    ``APP/COMPONENT`` name.
    """
    if module_url.startswith("oci://"):
        rest = module_url[len("oci://"):].split("@", 1)[0]
        slash = rest.find("/")
        last = rest.rfind("/")
        if slash > 0 and ":" in rest[last + 1:]:
            rest = rest[:last + 1] + rest[last + 1:].split(":", 1)[0]
        return rest
    return qualified_name


# Signing ---------------------------------------------------------------------
def _content_hash(preamble: bytes, sections: Sequence[Section]) -> bytes:
    """The signed hash of a module's or component's bytes after its signature section (see the docstring)."""
    hasher = hashlib.sha256()
    if preamble != MODULE_PREAMBLE:
        hasher.update(preamble)
    for section in sections:
        hasher.update(section.encode())
    return hasher.digest()


def sign_module(wasm: bytes, key: KeyPair, cert: Certificate | None = None) -> bytes:
    """Return ``wasm`` signed by ``key``, with ``cert`` embedded.

    Any previous ``signature`` section is dropped (the signature is replaced,
    as ``wasmsign2 sign`` does) and so is a previous ``wasmlet.certificate``;
    the new signature section goes first, the certificate section second
    (inside the signed bytes), then the module's sections unchanged. With
    ``cert=None`` nothing is embedded and the host must hold the certificate
    in its trust directory's ``certs/``.
    """
    if cert is not None and cert.public_key != key.public:
        raise ValueError("the certificate is for another key than the signing key")
    preamble, sections = parse_module(wasm)
    kept = [s for s in sections if s.name not in (SIGNATURE_SECTION, CERTIFICATE_SECTION)]
    if cert is not None:
        kept.insert(0, custom_section(CERTIFICATE_SECTION, cert.to_bytes()))
    digest = _content_hash(preamble, kept)
    signature = Signature(key.key_id.encode(), ALG_ED25519, key.sign(_message([digest])))
    data = SignatureData((SignedHashes((digest,), (signature,)),))
    header = custom_section(SIGNATURE_SECTION, data.encode())
    return preamble + header.encode() + b"".join(s.encode() for s in kept)


# Trust store -----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _TrustState:
    roots: Mapping[str, PublicKey]
    revoked: frozenset[str]
    certificates: tuple[Certificate, ...]
    fingerprint: tuple[tuple[str, int, int], ...] = ()


class TrustStore:
    """Trust roots, host-held publisher certificates and the revocation list.

    From a directory (``TrustStore.from_dir``)::

        DIR/roots/*.pub      trust roots (Ed25519 public keys, wasmsign2 format)
        DIR/certs/*.cert     publisher certificates kept by the host (optional)
        DIR/revoked          revoked key ids, one per line ('#' starts a comment)

    ``reload()`` re-reads it and swaps the new state in at once (a reader sees
    the old or the new state, never a mix); if the directory does not load it
    raises ``TrustStoreError`` and keeps the previous state. ``reload_if_changed()``
    reloads only when a file's name, size or mtime changed, so it can be
    polled cheaply.
    """

    def __init__(
        self,
        roots: Iterable[PublicKey] = (),
        revoked: Iterable[str] = (),
        certificates: Iterable[Certificate] = (),
        directory: str | Path | None = None,
    ) -> None:
        self.directory = Path(directory) if directory is not None else None
        self._lock = threading.Lock()
        self._state = _TrustState({k.key_id: k for k in roots}, frozenset(revoked), tuple(certificates))

    @classmethod
    def from_dir(cls, path: str | Path) -> TrustStore:
        store = cls(directory=path)
        store.reload()
        return store

    @property
    def roots(self) -> Mapping[str, PublicKey]:
        return self._state.roots

    @property
    def revoked(self) -> frozenset[str]:
        return self._state.revoked

    @property
    def certificates(self) -> tuple[Certificate, ...]:
        return self._state.certificates

    def is_revoked(self, key_id: str) -> bool:
        return key_id in self._state.revoked

    def reload(self) -> bool:
        """Re-read the directory; return True if anything changed."""
        if self.directory is None:
            return False
        with self._lock:
            state = _load_dir(self.directory)
            changed = state.fingerprint != self._state.fingerprint
            self._state = state
            return changed

    def reload_if_changed(self) -> bool:
        if self.directory is None or _fingerprint(self.directory) == self._state.fingerprint:
            return False
        return self.reload()


def _files(directory: Path) -> list[Path]:
    found = []
    for sub, suffix in (("roots", ".pub"), ("certs", ".cert")):
        folder = directory / sub
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if p.suffix == suffix and p.is_file())
    revoked = directory / "revoked"
    if revoked.is_file():
        found.append(revoked)
    return found


def _fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    out = []
    for path in _files(directory):
        try:
            stat = path.stat()
        except OSError:
            continue
        out.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(out)


def _load_dir(directory: Path) -> _TrustState:
    if not directory.is_dir():
        raise TrustStoreError(f"{directory}: the trust directory does not exist")
    fingerprint = _fingerprint(directory)
    roots: dict[str, PublicKey] = {}
    certificates: list[Certificate] = []
    revoked: set[str] = set()
    try:
        for path in _files(directory):
            if path.suffix == ".pub":
                key = load_public_key(path)
                roots[key.key_id] = key
            elif path.suffix == ".cert":
                certificates.append(Certificate.from_bytes(path.read_bytes(), str(path)))
            else:
                for number, line in enumerate(path.read_text().splitlines(), 1):
                    entry = line.split("#", 1)[0].strip().lower()
                    if not entry:
                        continue
                    if not _KEY_ID.match(entry):
                        raise TrustStoreError(f"{path}:{number}: expected a key id (32 hex digits), got {entry!r}")
                    revoked.add(entry)
    except (OSError, KeyFileError, SignatureMalformed) as exc:
        raise TrustStoreError(f"{directory}: cannot load the trust directory: {exc}") from exc
    if not roots:
        raise TrustStoreError(f"{directory}/roots: no trust root (*.pub); every signed module would be refused")
    return _TrustState(roots, frozenset(revoked), tuple(certificates), fingerprint)


# Verification ----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class VerifiedSignature:
    """What ``verify_module`` established, for logs and for re-checks."""

    subject: str
    key_id: str  # the publisher key
    root_id: str  # the trust root that certified it
    publisher: str  # the certificate's subject (informative)
    scope: tuple[str, ...]
    not_after: dt.datetime
    module_hash: str  # hex SHA-256 of the signed bytes (the module minus its signature section)
    certificate: Certificate

    def recheck(self, store: TrustStore, now: dt.datetime | None = None) -> None:
        """Re-check what can change after deploy: the root still trusted, no revocation, not expired.

        Call it after ``store.reload()`` for every deployed module; it does not
        re-hash the module.
        """
        _check_chain(self.certificate, store, self.subject, now or dt.datetime.now(dt.UTC))


def _check_chain(cert: Certificate, store: TrustStore, subject: str, now: dt.datetime) -> str:
    state = store._state  # one snapshot: a concurrent reload is seen entirely or not at all
    root = state.roots.get(cert.issuer)
    if root is None:
        raise UnknownRoot(f"the publisher key {cert.key_id} is certified by {cert.issuer}, which is not a trust root")
    if not cert.signed_by(root):
        raise UnknownRoot(f"the certificate of key {cert.key_id} does not verify under root {cert.issuer}")
    for key_id, what in ((cert.key_id, "publisher key"), (cert.issuer, "root key")):
        if key_id in state.revoked:
            raise KeyRevoked(f"the {what} {key_id} is revoked")
    if now < cert.not_before:
        raise KeyExpired(f"the certificate of key {cert.key_id} is not valid before {_timestamp(cert.not_before)}")
    if now >= cert.not_after:
        raise KeyExpired(f"the certificate of key {cert.key_id} expired at {_timestamp(cert.not_after)}")
    if not scope_matches(cert.scope, subject):
        raise OutOfScope(
            f"the certificate of key {cert.key_id} covers {list(cert.scope)}, not {subject!r}"
        )
    return root.key_id


# Which failure to report when every signature fails: the one that got furthest.
_STAGES: tuple[type[SignatureError], ...] = (UnknownRoot, ModuleTampered, KeyRevoked, KeyExpired, OutOfScope)


def _first_section_end(wasm: bytes) -> int:
    size, pos = read_u32(wasm, 9)
    return pos + size


def verify_module(
    wasm: bytes,
    trust_store: TrustStore,
    subject: str,
    now: dt.datetime | None = None,
    certificates: Iterable[Certificate] = (),
) -> VerifiedSignature:
    """Verify ``wasm``'s embedded signature chain for ``subject``; raise a ``SignatureError`` subclass.

    ``certificates`` adds detached publisher certificates to those embedded in
    the module and those in the trust store.
    """
    now = now or dt.datetime.now(dt.UTC)
    preamble, sections = parse_module(wasm)
    if not sections or sections[0].name != SIGNATURE_SECTION:
        if any(s.name == SIGNATURE_SECTION for s in sections):
            raise SignatureMalformed("the signature section must be the first section of the module")
        raise ModuleUnsigned("the module has no signature section")
    data = SignatureData.decode(sections[0].content)
    rest = sections[1:]
    # The raw bytes after the signature section, as wasmsign2 verify hashes them;
    # with the preamble first unless it is the core module's (see the docstring).
    hasher = hashlib.sha256()
    if preamble != MODULE_PREAMBLE:
        hasher.update(preamble)
    hasher.update(wasm[_first_section_end(wasm):])
    digest = hasher.digest()
    candidates = list(certificates)
    candidates += [
        Certificate.from_bytes(s.content, CERTIFICATE_SECTION) for s in rest if s.name == CERTIFICATE_SECTION
    ]
    candidates += trust_store.certificates
    failures: list[SignatureError] = []
    for entry in data.signed_hashes:
        message = _message(entry.hashes)
        for sig in entry.signatures:
            key_id = sig.key_id.decode("ascii", "replace")
            certs = [c for c in candidates if not sig.key_id or c.key_id == key_id]
            if not certs:
                failures.append(UnknownRoot(
                    f"no certificate for the signing key {key_id or '(no key id)'}; "
                    "modules must be signed by a certified publisher key"
                ))
                continue
            for cert in certs:
                if not cert.public_key.verify(sig.signature, message):
                    failures.append(ModuleTampered(f"the signature by key {cert.key_id} does not verify"))
                    continue
                if digest not in entry.hashes:
                    failures.append(ModuleTampered(
                        f"the module does not match the hash signed by key {cert.key_id} "
                        "(changed after signing, or only partly signed)"
                    ))
                    continue
                try:
                    root_id = _check_chain(cert, trust_store, subject, now)
                except SignatureError as exc:
                    failures.append(exc)
                    continue
                return VerifiedSignature(
                    subject=subject,
                    key_id=cert.key_id,
                    root_id=root_id,
                    publisher=cert.subject,
                    scope=cert.scope,
                    not_after=cert.not_after,
                    module_hash=digest.hex(),
                    certificate=cert,
                )
    if not failures:
        raise ModuleUnsigned("the signature section holds no Ed25519 signature")
    raise max(failures, key=lambda exc: _STAGES.index(type(exc)) if type(exc) in _STAGES else -1)
