"""Joining a lattice whose NATS servers want TLS (and client certificates) or decentralized JWT credentials.

Real ``nats-server -js`` processes on loopback: one speaking only TLS with a
CA made here, one wanting mutual TLS, and one in operator mode (an operator,
a system account and a JetStream-enabled account, all JWTs signed with nkeys,
served by a memory resolver). User/password and token auth: test_auth.py.
Every refusal must come at once (well inside the 15 s connect deadline), as
one line naming the cause, with no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import EXAMPLES, free_port
from tests.lattice.conftest import (
    NKey,
    deploy,
    echo_manifest,
    lattice_cli,
    operator_server,
    tls_server,
    user_creds,
    wait_for,
    write_pki,
)

pytestmark = pytest.mark.timeout(120)

AT_ONCE = 8.0  # seconds: a refusal must beat the 15 s connect deadline by far (it takes well under 1 s here)


def _refused(tmp_path: Path, url: str, *flags: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """``wasmlet serve --lattice URL FLAGS``, expected to give up: its result and how long it took."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "wasmlet", "serve", "--lattice", url, *flags, "--host-name", "intruder",
         "--listen", f"127.0.0.1:{free_port()}", "--admin-listen", "none",
         "--state-dir", str(tmp_path / f"refused-{time.monotonic_ns()}")],
        capture_output=True, text=True, timeout=60, env=dict(os.environ))
    return result, time.monotonic() - started


def _one_clear_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith(("error", "wasmlet: error", "Error"))]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _serves_an_app(host: Any, tmp_path: Path) -> None:
    response = deploy(host, echo_manifest(tmp_path / "shop.yaml"))
    assert response.status_code == 200, response.text
    wait_for(lambda: httpx.get(f"{host.url}/shop/hi", timeout=5).status_code == 200, 20, "the app answers")


def test_tls_join_serve_and_a_wrong_ca_refused_at_once(tmp_path: Path, lattice_host: Any) -> None:
    pki = write_pki(tmp_path / "pki")
    server = tls_server(tmp_path, pki, verify=False)
    try:
        host = lattice_host("alpha", server.url, "--lattice-tls-ca", str(pki["ca"]), "--allow-files", str(EXAMPLES))
        _serves_an_app(host, tmp_path)
        listed = lattice_cli(server.url, "hosts", "--lattice-tls-ca", str(pki["ca"]))
        assert listed.returncode == 0 and "alpha" in listed.stdout, listed.stderr

        # A CA that did not sign the server's certificate: the handshake fails, and retrying would not help.
        result, took = _refused(tmp_path, server.url, "--lattice-tls-ca", str(pki["other_ca"]))
        line = _one_clear_line(result, "cannot connect to the lattice", "CERTIFICATE_VERIFY_FAILED", "--lattice-tls-ca")
        assert took < AT_ONCE, (took, line)
        # No CA at all: the system's trust store does not know the test CA either.
        result, took = _refused(tmp_path, server.url.replace("nats://", "tls://"))
        _one_clear_line(result, "CERTIFICATE_VERIFY_FAILED")
        assert took < AT_ONCE, took
        # A CA file that is not PEM: named, before any connection is tried.
        junk = tmp_path / "junk.pem"
        junk.write_text("not a certificate\n")
        result, took = _refused(tmp_path, server.url, "--lattice-tls-ca", str(junk))
        _one_clear_line(result, "--lattice-tls-ca", str(junk))
        assert took < AT_ONCE, took
    finally:
        server.stop()


def test_mutual_tls_join_with_a_client_certificate_and_without_one_refused(
        tmp_path: Path, lattice_host: Any) -> None:
    pki = write_pki(tmp_path / "pki")
    server = tls_server(tmp_path, pki, verify=True)
    try:
        host = lattice_host("alpha", server.url, "--lattice-tls-ca", str(pki["ca"]),
                            "--lattice-tls-cert", str(pki["client_cert"]), "--lattice-tls-key",
                            str(pki["client_key"]), "--allow-files", str(EXAMPLES))
        _serves_an_app(host, tmp_path)
        # Without a client certificate the server ends the handshake with an alert (RFC 8446 section 6.2).
        result, took = _refused(tmp_path, server.url, "--lattice-tls-ca", str(pki["ca"]))
        _one_clear_line(result, "cannot connect to the lattice", "CERTIFICATE_REQUIRED")
        assert took < AT_ONCE, took
    finally:
        server.stop()


def test_creds_of_an_operator_mode_account_join_and_a_stranger_refused_at_once(
        tmp_path: Path, lattice_host: Any) -> None:
    server, account = operator_server(tmp_path)
    try:
        creds = user_creds(tmp_path / "host.creds", account, "wasmlet-host")
        anonymous, took = _refused(tmp_path, server.url)
        _one_clear_line(anonymous, "cannot connect to the lattice", "uthorization")
        assert took < AT_ONCE, took

        host = lattice_host("alpha", server.url, "--lattice-creds", str(creds), "--allow-files", str(EXAMPLES))
        _serves_an_app(host, tmp_path)  # JetStream (the account's KV and object store) works under its limits
        listed = subprocess.run([sys.executable, "-m", "wasmlet", "lattice", "hosts", "--lattice", server.url],
                                capture_output=True, text=True, timeout=60,
                                env={**os.environ, "WASMLET_LATTICE_CREDS": str(creds)})
        assert listed.returncode == 0 and "alpha" in listed.stdout, listed.stderr

        # A user of an account this operator never signed: refused by the server, at once.
        stranger = user_creds(tmp_path / "stranger.creds", NKey("account"), "stranger")
        result, took = _refused(tmp_path, server.url, "--lattice-creds", str(stranger))
        _one_clear_line(result, "cannot connect to the lattice", "uthorization")
        assert took < AT_ONCE, took
        # A user JWT signed by the right account but with someone else's seed: the nonce signature fails.
        forged = tmp_path / "forged.creds"
        forged.write_text(creds.read_text().replace(creds.read_text().split("SEED-----\n")[1].split("\n")[0],
                                                    NKey("user").seed))
        result, took = _refused(tmp_path, server.url, "--lattice-creds", str(forged))
        _one_clear_line(result, "cannot connect to the lattice")
        assert took < AT_ONCE, took
    finally:
        server.stop()


@pytest.mark.parametrize("content", ["", "just some text\n", "-----BEGIN NATS USER JWT-----\neyJ.x.y\n"])
def test_a_file_that_is_not_a_creds_file_is_named_not_hung_on(tmp_path: Path, content: str) -> None:
    # nats-py reads lines until the JWT block: without the check, such a file hangs the connect forever.
    creds = tmp_path / "bad.creds"
    creds.write_text(content)
    result, took = _refused(tmp_path, f"nats://127.0.0.1:{free_port()}", "--lattice-creds", str(creds))
    _one_clear_line(result, "--lattice-creds", str(creds), "not a NATS credentials file")
    assert took < AT_ONCE, took


def test_a_garbled_seed_in_a_creds_file_is_a_clear_error(tmp_path: Path) -> None:
    server, account = operator_server(tmp_path)
    try:
        creds = user_creds(tmp_path / "host.creds", account, "wasmlet-host")
        seed = creds.read_text().split("SEED-----\n")[1].split("\n")[0]
        creds.write_text(creds.read_text().replace(seed, "SUNOTASEED"))
        result, took = _refused(tmp_path, server.url, "--lattice-creds", str(creds))
        _one_clear_line(result, "cannot connect to the lattice")
        assert took < AT_ONCE, took
    finally:
        server.stop()
