"""What ``wasmlet keygen``, ``wasmlet certify``, ``wasmlet sign`` and ``wasmlet verify`` do.

Each function does the whole job on files and returns the lines to print;
errors are ``WasmletError`` subclasses (``KeyFileError``, ``SignatureError``,
``TrustStoreError``), so a click command only wraps and prints.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from .._errors import KeyFileError
from .._files import atomic_write
from ._keys import keygen, load_key_pair, load_public_key
from ._signing import Certificate, TrustStore, certify, sign_module, verify_module

__all__ = ["certify_command", "keygen_command", "parse_when", "sign_command", "verify_command"]


def parse_when(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """``2027-01-31``, ``2027-01-31T12:00:00Z`` or a duration from now: ``90d``, ``12h``."""
    now = now or dt.datetime.now(dt.UTC)
    text = text.strip()
    units = {"d": 86400, "h": 3600, "m": 60}
    if text[-1:] in units and text[:-1].isdigit():
        return (now + dt.timedelta(seconds=int(text[:-1]) * units[text[-1]])).replace(microsecond=0)
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            pass
    raise ValueError(f"{text!r}: expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or a duration such as 365d")


def _write_atomic(path: Path, data: bytes) -> None:
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot write: {exc.strerror}") from exc


def keygen_command(directory: str | Path, name: str) -> list[str]:
    secret, public, pair = keygen(directory, name)
    return [f"key id {pair.key_id}", f"secret key {secret} (keep it private)", f"public key {public}"]


def certify_command(
    root_key: str | Path,
    publisher_pub: str | Path,
    scope: Sequence[str],
    not_after: str,
    output: str | Path,
    subject: str = "",
) -> list[str]:
    root = load_key_pair(root_key)
    publisher = load_public_key(publisher_pub)
    cert = certify(root, publisher, list(scope), parse_when(not_after), subject=subject)
    _write_atomic(Path(output), cert.to_bytes())
    return [
        f"certified key {cert.key_id} under root {root.key_id}",
        f"scope {', '.join(cert.scope)}; valid until {cert.not_after:%Y-%m-%dT%H:%M:%SZ}",
        f"certificate {output}",
    ]


def sign_command(
    module: str | Path, key: str | Path, cert: str | Path | None, output: str | Path | None = None
) -> list[str]:
    pair = load_key_pair(key)
    certificate = None
    if cert is not None:
        try:
            certificate = Certificate.from_bytes(Path(cert).read_bytes(), str(cert))
        except OSError as exc:
            raise KeyFileError(f"{cert}: cannot read the certificate: {exc.strerror}") from exc
    try:
        wasm = Path(module).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{module}: cannot read the module: {exc.strerror}") from exc
    target = Path(output) if output is not None else Path(module)
    _write_atomic(target, sign_module(wasm, pair, certificate))
    return [f"signed {target} with key {pair.key_id}" + (" (certificate embedded)" if certificate else "")]


def verify_command(
    module: str | Path, trust_dir: str | Path, subject: str, now: dt.datetime | None = None
) -> list[str]:
    store = TrustStore.from_dir(trust_dir)
    try:
        wasm = Path(module).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{module}: cannot read the module: {exc.strerror}") from exc
    verified = verify_module(wasm, store, subject, now)
    return [
        f"{module}: signature verified for {subject!r}",
        f"publisher key {verified.key_id} ({verified.publisher or 'no name'}), root {verified.root_id}",
        f"certificate valid until {verified.not_after:%Y-%m-%dT%H:%M:%SZ}, scope {', '.join(verified.scope)}",
        f"module sha256 {verified.module_hash}",
    ]
