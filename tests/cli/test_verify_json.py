"""Issue 10, item 8: `wasmlet verify -o json`, for scripts, whether the chain holds or not."""

from __future__ import annotations

import json
import shutil

import pytest
from tests.cli.conftest import User
from tests.conftest import EXAMPLES


@pytest.fixture
def signed(user: User) -> User:
    shutil.copy(EXAMPLES / "hello" / "hello.wasm", user.cwd / "hello.wasm")
    shutil.copy(EXAMPLES / "hello" / "hello.wasm", user.cwd / "unsigned.wasm")
    for args in (["keygen", "keys", "--name", "root"], ["keygen", "keys", "--name", "alice"],
                 ["certify", "--root-key", "keys/root.key", "--publisher", "keys/alice.pub", "--scope", "shop/*",
                  "--subject", "Alice", "-o", "keys/alice.cert"],
                 ["sign", "hello.wasm", "--key", "keys/alice.key", "--cert", "keys/alice.cert"]):
        assert user.run(*args).returncode == 0, args
    (user.cwd / "trust" / "roots").mkdir(parents=True)
    shutil.copy(user.cwd / "keys" / "root.pub", user.cwd / "trust" / "roots" / "root.pub")
    return user


def test_verified_as_json(signed: User) -> None:
    result = signed.run("verify", "hello.wasm", "--trust", "trust", "--subject", "shop/web", "-o", "json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["verified"] is True and answer["subject"] == "shop/web" and answer["publisher"] == "Alice"
    assert answer["scope"] == ["shop/*"] and len(answer["module_sha256"]) == 64
    assert json.loads(signed.run("verify", "hello.wasm", "--trust", "trust", "--subject", "shop/web",
                                 "--json").stdout) == answer


@pytest.mark.parametrize(("module", "subject", "reason"), [
    ("hello.wasm", "other/web", "out-of-scope"),
    ("unsigned.wasm", "shop/web", "unsigned"),
])
def test_refused_as_json(signed: User, module: str, subject: str, reason: str) -> None:
    result = signed.run("verify", module, "--trust", "trust", "--subject", subject, "-o", "json")
    assert result.returncode == 1
    answer = json.loads(result.stdout)
    assert answer["verified"] is False and answer["reason"] == reason and answer["error"]


def test_a_trust_folder_that_does_not_load_is_an_error_not_json(signed: User) -> None:
    result = signed.run("verify", "hello.wasm", "--trust", "keys", "--subject", "shop/web", "-o", "json")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error: ") and "no trust root" in result.stderr
