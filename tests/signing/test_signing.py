"""The signature chain: roots -> publisher certificates -> modules, each failure with its own reason."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from pathlib import Path

import pytest
import wasmtime

from wasmlet import (
    KeyExpired,
    KeyFileError,
    KeyRevoked,
    ModuleError,
    ModuleTampered,
    ModuleUnsigned,
    OutOfScope,
    SignatureError,
    SignatureMalformed,
    TrustStoreError,
    UnknownRoot,
    WasmletError,
)
from wasmlet.signing import (
    Certificate,
    KeyPair,
    TrustStore,
    certify,
    certify_command,
    custom_section,
    keygen,
    keygen_command,
    load_key_pair,
    load_public_key,
    module_subject,
    parse_module,
    scope_matches,
    sign_command,
    sign_module,
    verify_command,
    verify_module,
)
from wasmlet.signing._signing import CERTIFICATE_SECTION, SIGNATURE_SECTION, SignatureData

ROOT = Path(__file__).resolve().parents[2]
HELLO = (ROOT / "examples" / "hello" / "hello.wasm").read_bytes()
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
NEXT_YEAR = dt.datetime(2027, 6, 1, tzinfo=dt.UTC)
LAST_YEAR = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


@pytest.fixture
def chain(tmp_path: Path) -> tuple[KeyPair, KeyPair, Certificate, TrustStore]:
    root = KeyPair.generate()
    publisher = KeyPair.generate()
    cert = certify(root, publisher.public, ["shop/*", "ghcr.io/acme/**"], NEXT_YEAR,
                   subject="acme", not_before=LAST_YEAR)
    return root, publisher, cert, TrustStore([root.public])


def test_sign_and_verify(chain: tuple[KeyPair, KeyPair, Certificate, TrustStore]) -> None:
    root, publisher, cert, store = chain
    signed = sign_module(HELLO, publisher, cert)
    verified = verify_module(signed, store, "shop/cart", NOW)
    assert verified.key_id == publisher.key_id
    assert verified.root_id == root.key_id
    assert verified.publisher == "acme"
    assert verified.not_after == NEXT_YEAR
    # The signed module is still a valid module that wasmtime runs as before.
    wasmtime.Module(wasmtime.Engine(), signed)


def test_section_layout_is_the_proposals(chain: tuple[KeyPair, KeyPair, Certificate, TrustStore]) -> None:
    _, publisher, cert, _ = chain
    signed = sign_module(HELLO, publisher, cert)
    _, sections = parse_module(signed)
    assert sections[0].name == SIGNATURE_SECTION
    assert sections[1].name == CERTIFICATE_SECTION
    data = SignatureData.decode(sections[0].content)
    assert (data.spec_version, data.content_type, data.hash_fn) == (1, 1, 1)
    [entry] = data.signed_hashes
    [signature] = entry.signatures
    assert signature.key_id == publisher.key_id.encode() and signature.alg == 1 and len(signature.signature) == 64
    # The signed hash is SHA-256 of every byte after the signature section...
    end = 8 + len(sections[0].encode())
    assert entry.hashes == (hashlib.sha256(signed[end:]).digest(),)
    # ... over the message "wasmsig" || version || content type || hash fn || hashes.
    assert publisher.public.verify(signature.signature, b"wasmsig\x01\x01\x01" + entry.hashes[0])
    # Encoding round-trips byte for byte.
    assert data.encode() == sections[0].content


def test_resigning_replaces_the_signature(chain: tuple[KeyPair, KeyPair, Certificate, TrustStore]) -> None:
    root, publisher, cert, store = chain
    other = KeyPair.generate()
    other_cert = certify(root, other.public, ["shop/*"], NEXT_YEAR, not_before=LAST_YEAR)
    twice = sign_module(sign_module(HELLO, publisher, cert), other, other_cert)
    names = [s.name for s in parse_module(twice)[1]]
    assert names.count(SIGNATURE_SECTION) == 1 and names.count(CERTIFICATE_SECTION) == 1
    assert verify_module(twice, store, "shop/cart", NOW).key_id == other.key_id


def test_unsigned(chain: tuple[KeyPair, KeyPair, Certificate, TrustStore]) -> None:
    with pytest.raises(ModuleUnsigned) as info:
        verify_module(HELLO, chain[3], "shop/cart", NOW)
    assert info.value.reason == "unsigned"


@pytest.mark.parametrize("where", ["code", "last", "custom"])
def test_tampered(chain: tuple[KeyPair, KeyPair, Certificate, TrustStore], where: str) -> None:
    _, publisher, cert, store = chain
    signed = bytearray(sign_module(HELLO, publisher, cert))
    if where == "code":
        _, sections = parse_module(bytes(signed))
        code = next(s for s in sections if s.id == 10)
        offset = bytes(signed).index(code.payload) + len(code.payload) // 2
        signed[offset] ^= 0x01
    elif where == "last":
        signed[-1] ^= 0x80
    else:  # a custom section appended after signing is not covered
        signed += custom_section("extra", b"hello").encode()
    with pytest.raises(ModuleTampered) as info:
        verify_module(bytes(signed), store, "shop/cart", NOW)
    assert info.value.reason == "tampered"


def test_a_forged_signature_is_tampered(chain: tuple[KeyPair, KeyPair, Certificate, TrustStore]) -> None:
    _, publisher, cert, store = chain
    signed = bytearray(sign_module(HELLO, publisher, cert))
    signed[8 + 20] ^= 0x01  # inside the signature section's signature bytes
    with pytest.raises(SignatureError) as info:
        verify_module(bytes(signed), store, "shop/cart", NOW)
    assert info.value.reason in ("tampered", "malformed")


def test_expired_and_not_yet_valid(chain: tuple[KeyPair, KeyPair, Certificate, TrustStore]) -> None:
    _, publisher, cert, store = chain
    signed = sign_module(HELLO, publisher, cert)
    with pytest.raises(KeyExpired, match="expired at 2027-06-01T00:00:00Z") as info:
        verify_module(signed, store, "shop/cart", NEXT_YEAR)
    assert info.value.reason == "expired"
    with pytest.raises(KeyExpired, match="not valid before"):
        verify_module(signed, store, "shop/cart", LAST_YEAR - dt.timedelta(days=1))


def test_out_of_scope(chain: tuple[KeyPair, KeyPair, Certificate, TrustStore]) -> None:
    _, publisher, cert, store = chain
    signed = sign_module(HELLO, publisher, cert)
    for subject in ("shop/cart", "ghcr.io/acme/x", "ghcr.io/acme/team/y"):
        verify_module(signed, store, subject, NOW)
    for subject in ("bank/vault", "shop/cart/extra", "ghcr.io/evil/x", "ghcr.io/acmex/y"):
        with pytest.raises(OutOfScope) as info:
            verify_module(signed, store, subject, NOW)
        assert info.value.reason == "out-of-scope"


def test_revoked_publisher_and_root(chain: tuple[KeyPair, KeyPair, Certificate, TrustStore]) -> None:
    root, publisher, cert, _ = chain
    signed = sign_module(HELLO, publisher, cert)
    for revoked in (publisher.key_id, root.key_id):
        with pytest.raises(KeyRevoked) as info:
            verify_module(signed, TrustStore([root.public], revoked=[revoked]), "shop/cart", NOW)
        assert info.value.reason == "revoked"


def test_unknown_root(chain: tuple[KeyPair, KeyPair, Certificate, TrustStore]) -> None:
    _, publisher, cert, _ = chain
    signed = sign_module(HELLO, publisher, cert)
    stranger = KeyPair.generate()
    with pytest.raises(UnknownRoot) as info:
        verify_module(signed, TrustStore([stranger.public]), "shop/cart", NOW)
    assert info.value.reason == "unknown-root"


def test_a_self_certified_key_is_an_unknown_root(chain: tuple[KeyPair, KeyPair, Certificate, TrustStore]) -> None:
    _, publisher, _, store = chain
    forged = certify(publisher, publisher.public, ["**"], NEXT_YEAR, not_before=LAST_YEAR)
    with pytest.raises(UnknownRoot):
        verify_module(sign_module(HELLO, publisher, forged), store, "shop/cart", NOW)


def test_a_certificate_with_a_forged_issuer_is_an_unknown_root(
    chain: tuple[KeyPair, KeyPair, Certificate, TrustStore],
) -> None:
    root, _, _, store = chain
    attacker = KeyPair.generate()
    # Claims the real root as issuer but is signed by the attacker.
    real = certify(root, attacker.public, ["**"], NEXT_YEAR, not_before=LAST_YEAR)
    fake = Certificate.from_bytes(certify(attacker, attacker.public, ["**"], NEXT_YEAR,
                                          not_before=LAST_YEAR).to_bytes())
    forged = Certificate(real.payload, fake.signature, real.issuer, real.public_key, "", real.scope,
                         real.not_before, real.not_after)
    with pytest.raises(UnknownRoot, match="does not verify under root"):
        verify_module(sign_module(HELLO, attacker, forged), store, "shop/cart", NOW)


def test_signed_without_certificate(chain: tuple[KeyPair, KeyPair, Certificate, TrustStore]) -> None:
    root, publisher, cert, _ = chain
    signed = sign_module(HELLO, publisher, None)
    with pytest.raises(UnknownRoot, match="no certificate"):
        verify_module(signed, TrustStore([root.public]), "shop/cart", NOW)
    # The host may hold the certificate instead (trust dir certs/), or the caller pass it.
    assert verify_module(signed, TrustStore([root.public], certificates=[cert]), "shop/cart", NOW)
    assert verify_module(signed, TrustStore([root.public]), "shop/cart", NOW, certificates=[cert])


def test_malformed(chain: tuple[KeyPair, KeyPair, Certificate, TrustStore]) -> None:
    store = chain[3]
    garbage = custom_section(SIGNATURE_SECTION, b"\x01\x01\x01\x05\xff")
    with pytest.raises(SignatureMalformed) as info:
        verify_module(HELLO[:8] + garbage.encode() + HELLO[8:], store, "shop/cart", NOW)
    assert info.value.reason == "malformed"
    late = HELLO + custom_section(SIGNATURE_SECTION, b"").encode()
    with pytest.raises(SignatureMalformed, match="must be the first section"):
        verify_module(late, store, "shop/cart", NOW)
    with pytest.raises(SignatureMalformed, match="not a WebAssembly"):
        verify_module(b"not wasm at all", store, "shop/cart", NOW)


MODULE_PREAMBLE = b"\0asm\x01\x00\x00\x00"
COMPONENT_PREAMBLE = b"\0asm\x0d\x00\x01\x00"
COMPONENT = (ROOT / "tests" / "guests" / "components" / "cgi_p2.wasm").read_bytes()


@pytest.mark.parametrize("original", ["module", "component"])
def test_the_preamble_is_signed(chain: tuple[KeyPair, KeyPair, Certificate, TrustStore], original: str) -> None:
    """Issue 14: the 8-byte preamble was in no hash, so a signed module verified as a component, and back."""
    _, publisher, cert, store = chain
    wasm, other = (HELLO, COMPONENT_PREAMBLE) if original == "module" else (COMPONENT, MODULE_PREAMBLE)
    signed = sign_module(wasm, publisher, cert)
    assert verify_module(signed, store, "shop/cart", NOW)
    with pytest.raises(ModuleTampered):
        verify_module(other + signed[8:], store, "shop/cart", NOW)
    for offset in range(4, 8):  # the version and layer bytes: any change is refused
        flipped = bytearray(signed)
        flipped[offset] ^= 0x02
        with pytest.raises(SignatureError):
            verify_module(bytes(flipped), store, "shop/cart", NOW)


def test_a_module_hash_keeps_wasmsign2s_layout(chain: tuple[KeyPair, KeyPair, Certificate, TrustStore]) -> None:
    """A core module's hash is still wasmsign2's (the bytes after the signature section); a component's
    starts with its preamble, and neither can be passed off as the other: a preamble is no section."""
    _, publisher, cert, _ = chain
    for wasm, preamble in ((HELLO, b""), (COMPONENT, COMPONENT_PREAMBLE)):
        signed = sign_module(wasm, publisher, cert)
        _, sections = parse_module(signed)
        [entry] = SignatureData.decode(sections[0].content).signed_hashes
        end = 8 + len(sections[0].encode())
        assert entry.hashes == (hashlib.sha256(preamble + signed[end:]).digest(),)
    with pytest.raises(SignatureMalformed):
        parse_module(MODULE_PREAMBLE + COMPONENT)


def test_errors_fit_the_tree() -> None:
    for cls in (ModuleUnsigned, ModuleTampered, KeyExpired, OutOfScope, KeyRevoked, UnknownRoot, SignatureMalformed):
        assert issubclass(cls, SignatureError) and issubclass(cls, ModuleError) and issubclass(cls, WasmletError)
    reasons = {c.reason for c in (ModuleUnsigned, ModuleTampered, KeyExpired, OutOfScope, KeyRevoked, UnknownRoot)}
    assert len(reasons) == 6


def test_scope_globs() -> None:
    assert scope_matches(["shop/*"], "shop/cart")
    assert not scope_matches(["shop/*"], "shop/a/b")
    assert scope_matches(["shop/**"], "shop/a/b")
    assert scope_matches(["ghcr.io/acme/resizer"], "ghcr.io/acme/resizer")
    assert not scope_matches(["ghcr.io/acme/resizer"], "ghcr.io/acme/resizer2")
    assert scope_matches(["app-?/web"], "app-1/web")
    assert module_subject("oci://ghcr.io/acme/resizer:1.2@sha256:" + "0" * 64, "a/b") == "ghcr.io/acme/resizer"
    assert module_subject("oci://localhost:5000/acme/resizer:1.2", "a/b") == "localhost:5000/acme/resizer"
    assert module_subject("oci://localhost:5000/acme/resizer", "a/b") == "localhost:5000/acme/resizer"
    assert module_subject("../echo/echo.wasm", "image-processor/resizer") == "image-processor/resizer"


# Key files and the trust directory ---------------------------------------------
def test_keygen_files(tmp_path: Path) -> None:
    secret, public, pair = keygen(tmp_path, "publisher")
    assert secret.stat().st_mode & 0o777 == 0o600
    assert secret.read_bytes()[0] == 0x81 and len(secret.read_bytes()) == 65
    assert public.read_bytes() == b"\x01" + pair.public.raw
    assert load_key_pair(secret).key_id == pair.key_id == load_public_key(public).key_id
    with pytest.raises(KeyFileError, match="already exists"):
        keygen(tmp_path, "publisher")
    public.write_bytes(b"\x01short")
    with pytest.raises(KeyFileError, match="not an Ed25519 public key"):
        load_public_key(public)


def _trust_dir(tmp_path: Path, root: KeyPair) -> Path:
    trust = tmp_path / "trust"
    (trust / "roots").mkdir(parents=True)
    (trust / "roots" / "main.pub").write_bytes(root.public.to_bytes())
    return trust


def test_trust_store_reload_applies_revocation_without_restart(
    chain: tuple[KeyPair, KeyPair, Certificate, TrustStore], tmp_path: Path,
) -> None:
    root, publisher, cert, _ = chain
    trust = _trust_dir(tmp_path, root)
    store = TrustStore.from_dir(trust)
    signed = sign_module(HELLO, publisher, cert)
    verified = verify_module(signed, store, "shop/cart", NOW)
    assert store.reload_if_changed() is False

    (trust / "revoked").write_text(f"# leaked on 2026-05-30\n{publisher.key_id}  # build server\n")
    assert store.reload_if_changed() is True
    with pytest.raises(KeyRevoked):
        verify_module(signed, store, "shop/cart", NOW)
    with pytest.raises(KeyRevoked):
        verified.recheck(store, NOW)  # what a running host does for modules it already serves

    # A broken reload keeps the previous state (still revoked) and says why.
    (trust / "revoked").write_text("not-a-key-id\n")
    with pytest.raises(TrustStoreError, match="expected a key id"):
        store.reload()
    assert store.is_revoked(publisher.key_id)

    (trust / "revoked").write_text("")
    store.reload()
    verified.recheck(store, NOW)


def test_trust_store_certs_dir_and_errors(chain: tuple[KeyPair, KeyPair, Certificate, TrustStore],
                                          tmp_path: Path) -> None:
    root, publisher, cert, _ = chain
    trust = _trust_dir(tmp_path, root)
    (trust / "certs").mkdir()
    (trust / "certs" / "acme.cert").write_bytes(cert.to_bytes())
    store = TrustStore.from_dir(trust)
    assert verify_module(sign_module(HELLO, publisher), store, "shop/cart", NOW).key_id == publisher.key_id
    with pytest.raises(TrustStoreError, match="does not exist"):
        TrustStore.from_dir(tmp_path / "nowhere")
    shutil.rmtree(trust / "roots")
    with pytest.raises(TrustStoreError, match="no trust root"):
        TrustStore.from_dir(trust)


def test_command_helpers(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    assert keygen_command(keys, "root")[0].startswith("key id ")
    keygen_command(keys, "acme")
    trust = tmp_path / "trust"
    (trust / "roots").mkdir(parents=True)
    shutil.copy(keys / "root.pub", trust / "roots" / "root.pub")
    certify_command(keys / "root.key", keys / "acme.pub", ["shop/*"], "30d", tmp_path / "acme.cert", subject="acme")
    module = tmp_path / "hello.wasm"
    module.write_bytes(HELLO)
    sign_command(module, keys / "acme.key", tmp_path / "acme.cert")
    lines = verify_command(module, trust, "shop/cart")
    assert "signature verified" in lines[0] and "acme" in lines[1]
    with pytest.raises(OutOfScope):
        verify_command(module, trust, "bank/vault")
