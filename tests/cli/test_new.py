"""`wasmlet new NAME --lang c`: a ready app folder that `wasmlet serve` answers at once."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
from tests.cli.conftest import User

TEMPLATES = Path(__file__).resolve().parents[2] / "src" / "wasmlet" / "templates"


def test_new_then_serve_answers_at_once(user: User) -> None:
    created = user.run("new", "x", "--lang", "c")
    assert created.returncode == 0, created.stderr
    assert "next: wasmlet serve x/app.yaml" in created.stdout
    assert sorted(p.name for p in (user.cwd / "x").iterdir()) == ["app.c", "app.wasm", "app.yaml", "build.sh"]
    host = user.serve("x/app.yaml")  # no toolchain needed: the module comes prebuilt
    response = httpx.get(host.url + "/hi")
    assert response.status_code == 200
    assert response.text == "Hello from x! (GET /hi)\n"
    assert user.run("logs", "x").stdout.rstrip().endswith("answered GET /hi")  # its stderr, in the host's log


def test_the_template_module_is_what_its_source_builds_to(tmp_path: Path) -> None:
    out = tmp_path / "app.wasm"
    subprocess.run(["clang", "--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-Wl,--strip-all",
                    str(TEMPLATES / "c" / "app.c"), "-o", str(out)], check=True, capture_output=True)
    assert out.read_bytes() == (TEMPLATES / "c" / "app.wasm").read_bytes(), "rebuild with examples/build.sh"


def test_the_build_script_of_a_new_app_rebuilds_its_module(user: User) -> None:
    assert user.run("new", "rebuilt").returncode == 0
    folder = user.cwd / "rebuilt"
    shipped = (folder / "app.wasm").read_bytes()
    (folder / "app.wasm").unlink()
    built = subprocess.run(["./rebuilt/build.sh"], cwd=user.cwd, env=user.env, capture_output=True, text=True,
                           timeout=120)
    assert built.returncode == 0, built.stderr
    assert (folder / "app.wasm").read_bytes() == shipped


def test_new_refuses_an_existing_folder_and_changes_nothing(user: User) -> None:
    (user.cwd / "taken").mkdir()
    (user.cwd / "taken" / "mine.txt").write_text("keep me")
    result = user.run("new", "taken")
    assert result.returncode == 1
    assert result.stderr == "error: taken already exists and is not an empty folder; choose another NAME or remove it\n"
    assert [p.name for p in (user.cwd / "taken").iterdir()] == ["mine.txt"]
    (user.cwd / "empty").mkdir()
    assert user.run("new", "empty").returncode == 0  # an empty folder is filled


@pytest.mark.parametrize(("name", "expected"), [
    ("My_App", "error: NAME: the app is named after its folder, 'My_App': expected a lower-case RFC 1123 name"),
    ("-x", "error: NAME: the app is named after its folder, '-x'"),
    ("a" * 64, "at most 63 characters"),
])
def test_new_refuses_a_name_that_is_not_an_app_name(user: User, name: str, expected: str) -> None:
    result = user.run("new", "--", name)
    assert result.returncode == 1
    assert expected in result.stderr
    assert list(user.cwd.iterdir()) == []  # nothing left behind


def test_new_names_the_languages_it_knows(user: User) -> None:
    result = user.run("new", "x", "--lang", "cobol")
    assert result.returncode == 1
    assert result.stderr == "error: --lang: expected one of c, got 'cobol'\n"
