"""Ed25519 keys: generation, key ids and files.

Files use the serialisation of the WebAssembly signatures proposal
(tool-conventions ``Signatures.md``, "Signature algorithms and key
serialization"), which is also what ``wasmsign2 keygen`` writes, so keys can be
shared with that tool:

- public key ``NAME.pub``: ``0x01`` followed by the 32-byte public key;
- key pair ``NAME.key``: ``0x81``, the 32-byte secret key, the 32-byte public key
  (written with mode 0600).

A key id is derived from the public key, never claimed: the first 16 bytes of
``SHA-256(0x01 || public key)`` as 32 lower-case hex digits. Revocation lists
name key ids, so a revoked key cannot escape its id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .._errors import KeyFileError

# cryptography (and bcrypt, which its serialization module imports) loads when a key is first used,
# not with the package: `wasmlet serve` imports this for its trust store, and most deploys verify nothing.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "KeyPair",
    "PublicKey",
    "keygen",
    "load_key_pair",
    "load_public_key",
]

PUBLIC_KEY_ID = 0x01
KEY_PAIR_ID = 0x81


@dataclasses.dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key and its key id."""

    raw: bytes  # 32 bytes

    def __post_init__(self) -> None:
        if len(self.raw) != 32:
            raise KeyFileError("an Ed25519 public key is 32 bytes")

    @property
    def key_id(self) -> str:
        return hashlib.sha256(bytes([PUBLIC_KEY_ID]) + self.raw).digest()[:16].hex()

    def to_bytes(self) -> bytes:
        return bytes([PUBLIC_KEY_ID]) + self.raw

    def verify(self, signature: bytes, message: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclasses.dataclass(frozen=True)
class KeyPair:
    """An Ed25519 key pair; ``repr`` never shows the secret."""

    secret: bytes = dataclasses.field(repr=False)  # 32-byte seed
    public: PublicKey

    @classmethod
    def generate(cls) -> KeyPair:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        private = Ed25519PrivateKey.generate()
        return cls._from_private(private)

    @classmethod
    def _from_private(cls, private: Ed25519PrivateKey) -> KeyPair:
        from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

        seed = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return cls(seed, PublicKey(raw))

    @property
    def key_id(self) -> str:
        return self.public.key_id

    def sign(self, message: bytes) -> bytes:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519PrivateKey.from_private_bytes(self.secret).sign(message)

    def to_bytes(self) -> bytes:
        return bytes([KEY_PAIR_ID]) + self.secret + self.public.raw


def public_key_from_bytes(data: bytes, source: str = "<bytes>") -> PublicKey:
    if len(data) != 33 or data[0] != PUBLIC_KEY_ID:
        raise KeyFileError(f"{source}: not an Ed25519 public key (expected 0x01 and 32 bytes, {len(data)} bytes found)")
    return PublicKey(data[1:])


def key_pair_from_bytes(data: bytes, source: str = "<bytes>") -> KeyPair:
    if len(data) != 65 or data[0] != KEY_PAIR_ID:
        raise KeyFileError(f"{source}: not an Ed25519 key pair (expected 0x81 and 64 bytes, {len(data)} bytes found)")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pair = KeyPair._from_private(Ed25519PrivateKey.from_private_bytes(data[1:33]))
    if pair.public.raw != data[33:]:
        raise KeyFileError(f"{source}: the public half does not belong to the secret key")
    return pair


def load_public_key(path: str | Path) -> PublicKey:
    """Read a ``.pub`` file; a ``.key`` file is accepted too and its public half returned."""
    data = _read(path)
    if data[:1] == bytes([KEY_PAIR_ID]):
        return key_pair_from_bytes(data, str(path)).public
    return public_key_from_bytes(data, str(path))


def load_key_pair(path: str | Path) -> KeyPair:
    return key_pair_from_bytes(_read(path), str(path))


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the key: {exc.strerror}") from exc


def keygen(directory: str | Path, name: str) -> tuple[Path, Path, KeyPair]:
    """Create ``NAME.key`` (mode 0600) and ``NAME.pub`` in ``directory``; never overwrite.

    Returns the two paths and the key pair.
    """
    if not name or "/" in name or name.startswith("."):
        raise KeyFileError(f"{name!r}: a key name is a plain file name (no '/', not starting with '.')")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    pair = KeyPair.generate()
    secret_path = folder / f"{name}.key"
    public_path = folder / f"{name}.pub"
    for path in (secret_path, public_path):
        if path.exists():
            raise KeyFileError(f"{path}: already exists; refusing to overwrite a key")
    try:
        fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pair.to_bytes())
        public_path.write_bytes(pair.public.to_bytes())
    except OSError as exc:
        raise KeyFileError(f"{folder}: cannot write the key files: {exc.strerror}") from exc
    return secret_path, public_path, pair
