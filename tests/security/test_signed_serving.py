"""The signature chain on a real host: keygen, certify, sign with the CLI; serve --trust; revoke live."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from tests.conftest import EXAMPLES, Server, write_manifest

Serve = Callable[..., Server]


def wasmlet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wasmlet", *args], capture_output=True, text=True, timeout=60)


def test_sign_serve_and_revoke(serve: Serve, tmp_path: Path) -> None:
    keys, trust = tmp_path / "keys", tmp_path / "trust"
    assert wasmlet("keygen", str(keys), "--name", "root").returncode == 0
    publisher = wasmlet("keygen", str(keys), "--name", "publisher")
    assert publisher.returncode == 0
    key_id = publisher.stdout.split()[2]
    (trust / "roots").mkdir(parents=True)
    shutil.copy(keys / "root.pub", trust / "roots" / "root.pub")
    cert = tmp_path / "publisher.cert"
    certified = wasmlet("certify", "--root-key", str(keys / "root.key"), "--publisher", str(keys / "publisher.pub"),
                        "--scope", "shop/*", "--not-after", "30d", "-o", str(cert))
    assert certified.returncode == 0, certified.stderr
    signed = tmp_path / "hello.signed.wasm"
    shutil.copy(EXAMPLES / "hello" / "hello.wasm", signed)
    assert wasmlet("sign", str(signed), "--key", str(keys / "publisher.key"), "--cert", str(cert)).returncode == 0
    verified = wasmlet("verify", str(signed), "--trust", str(trust), "--subject", "shop/cart")
    assert verified.returncode == 0, verified.stderr

    unsigned = write_manifest(tmp_path / "unsigned.yaml", [{"name": "cart", "properties": {
        "moduleURL": str(EXAMPLES / "hello" / "hello.wasm")}}], name="shop")
    refused = wasmlet("serve", str(unsigned), "--trust", str(trust), "--listen", "127.0.0.1:0",
                      "--admin-listen", "none")
    assert refused.returncode == 1 and "unsigned" in refused.stderr.lower()

    out_of_scope = write_manifest(tmp_path / "other.yaml", [{"name": "cart", "properties": {
        "moduleURL": str(signed)}}], name="other")
    refused = wasmlet("serve", str(out_of_scope), "--trust", str(trust), "--listen", "127.0.0.1:0",
                      "--admin-listen", "none")
    assert refused.returncode == 1 and "scope" in refused.stderr

    manifest = write_manifest(tmp_path / "shop.yaml", [{"name": "cart", "properties": {"moduleURL": str(signed)}}],
                              name="shop")
    server = serve(str(manifest), "--trust", str(trust))
    assert httpx.get(server.url + "/").text == "Hello, world!\n"

    # Revoke the publisher key while serving: within seconds the app is refused, without a restart.
    (trust / "revoked").write_text(f"{key_id}\n")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and httpx.get(server.url + "/").status_code == 200:
        time.sleep(0.2)
    response = httpx.get(server.url + "/")
    assert response.status_code == 503 and response.headers["x-wasmlet-error"] == "revoked"
    assert server.admin("GET", "/v1/apps/shop%2Fcart").json()["state"] == "revoked"
    # Lifting the revocation restores it, still without a restart.
    (trust / "revoked").write_text("")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and httpx.get(server.url + "/").status_code != 200:
        time.sleep(0.2)
    assert httpx.get(server.url + "/").status_code == 200
