"""Version numbers are per app: a new app starts at version 1, whatever else the host runs (issue 10, item 9).

Driven as a user meets it: a real ``wasmlet serve`` from a fresh state folder,
the ``wasmlet deploy``/``apps``/``rollback``/``delete`` commands as
subprocesses, and what they print. A state database written before per-app
numbers keeps the numbers it showed and goes on serving.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from tests.conftest import Server, label_module, write_manifest

Serve = Callable[..., Server]


def shop(tmp_path: Path, web_label: str) -> Path:
    return write_manifest(tmp_path / "shop.yaml", [  # one file: shop/api stays unchanged
        {"name": "api", "properties": {"moduleURL": str(label_module(tmp_path / "api.wasm", "api")), "route": "/api"}},
        {"name": "web", "properties": {"moduleURL": str(label_module(tmp_path / f"{web_label}.wasm", web_label)),
                                       "route": "/"}},
    ], name="shop")


def blog(tmp_path: Path, label: str = "blog") -> Path:
    return write_manifest(tmp_path / f"{label}.yaml", [
        {"name": "web", "properties": {"moduleURL": str(label_module(tmp_path / f"{label}.wasm", label)),
                                       "route": "/blog"}},
    ], name="blog")


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WASMLET_ADMIN": server.admin_url, "WASMLET_STATE_DIR": str(server.state_dir)}
    result = subprocess.run([sys.executable, "-m", "wasmlet", *args], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def listed(server: Server) -> dict[str, int]:
    """``wasmlet apps`` as {name: version}, read from what it prints."""
    lines = cli(server, "apps").stdout.splitlines()
    found = {}
    for line in lines:
        match = re.match(r"^(\S+)\s+v(\d+)\s", line)
        assert match, f"unexpected line from `wasmlet apps`: {line!r}"
        found[match.group(1)] = int(match.group(2))
    return found


def get(server: Server, path: str) -> str:
    return httpx.get(server.url + path, timeout=10).text.strip()


def test_a_new_app_starts_at_version_1(serve: Serve, tmp_path: Path) -> None:
    server = serve(str(shop(tmp_path, "web-a")), "--allow-files", str(tmp_path))
    assert "shop/web: version 2" in cli(server, "deploy", str(shop(tmp_path, "web-b"))).stdout
    assert "shop/web: version 3" in cli(server, "deploy", str(shop(tmp_path, "web-c"))).stdout

    # Five versions exist on the host; the new app's first one is still its version 1.
    deployed = cli(server, "deploy", str(blog(tmp_path)))
    assert "blog/web: version 1\n" in deployed.stdout
    assert listed(server) == {"blog/web": 1, "shop/api": 1, "shop/web": 3}
    # Equal numbers in two apps are two versions: each route serves its own.
    assert (get(server, "/blog"), get(server, "/"), get(server, "/api")) == ("blog", "web-c", "api")

    rolled = cli(server, "rollback", "shop/web")
    assert re.search(r"^shop/web\s+v2\s", rolled.stdout, re.M), rolled.stdout
    assert get(server, "/") == "web-b"

    # A deleted app's numbers are not reused: a later deploy of the name goes on counting.
    cli(server, "delete", "blog/web")
    assert "blog/web: version 2\n" in cli(server, "deploy", str(blog(tmp_path, "blog-again"))).stdout
    assert get(server, "/blog") == "blog-again"
    assert server.admin("GET", "/v1/apps/blog%2Fweb").json()["version"] == 2
    history = server.admin("GET", "/v1/apps/blog/web/versions").json()
    assert [(v["version"], v["role"]) for v in history] == [(2, "stable"), (1, "retired")]
    assert [v["version"] for v in server.admin("GET", "/v1/apps/shop/web/versions").json()] == [3, 2, 1]


def _downgrade_to_host_wide_ids(state_db: Path) -> None:
    """Make ``state.db`` what a wasmlet before per-app numbers wrote: schema 1, no ``number`` column."""
    db = sqlite3.connect(state_db)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        db.execute("DROP INDEX versions_by_app_number")
        db.execute("ALTER TABLE versions DROP COLUMN number")
        db.execute("PRAGMA user_version=1")
        db.commit()
        columns = [row[1] for row in db.execute("PRAGMA table_info(versions)")]
        assert columns == ["id", "app", "spec_json", "digest", "component", "created"]
    finally:
        db.close()


def test_a_state_database_from_before_keeps_its_numbers(serve: Serve, tmp_path: Path) -> None:
    state = tmp_path / "old-state"
    first = serve(str(shop(tmp_path, "web-a")), "--allow-files", str(tmp_path), state_dir=state)  # ids 1, 2
    cli(first, "deploy", str(shop(tmp_path, "web-b")))  # id 3: the old wasmlet showed "version 3"
    assert first.stop() == 0
    _downgrade_to_host_wide_ids(state / "state.db")

    again = serve("--allow-files", str(tmp_path), state_dir=state)  # no manifest: it serves what the state holds
    assert (get(again, "/"), get(again, "/api")) == ("web-b", "api")
    # What was shown before is shown still: a log line or a script that said v3 names the same version.
    assert listed(again) == {"shop/api": 1, "shop/web": 3}
    assert again.admin("GET", "/v1/apps/shop%2Fweb").json()["previous"]["version"] == 2
    # New versions continue each app's count; a new app starts at 1.
    assert "shop/web: version 4\n" in cli(again, "deploy", str(shop(tmp_path, "web-c"))).stdout
    assert "blog/web: version 1\n" in cli(again, "deploy", str(blog(tmp_path))).stdout
    assert (get(again, "/"), get(again, "/blog")) == ("web-c", "blog")
    rolled = cli(again, "rollback", "shop/web")
    assert re.search(r"^shop/web\s+v3\s", rolled.stdout, re.M), rolled.stdout
    assert get(again, "/") == "web-b"
    db = sqlite3.connect(state / "state.db")
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    finally:
        db.close()
