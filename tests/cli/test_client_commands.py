"""Issue 10, items 2, 4, 6 and 8, against a real host: APP alone where it is unambiguous, quiet
HTTP by default (-v to see it), the route clash named in the right manifest, and -o json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tests.cli.conftest import Host, User
from tests.conftest import EXAMPLES, write_manifest

DEMO = str(EXAMPLES / "demo" / "app.yaml")


def _one_component_app(user: User, name: str = "shop", label: str = "v1", route: str = "/shop") -> Path:
    """An app with one component, its module in the user's folder (the host allows that folder)."""
    module = user.cwd / "hello.wasm"
    if not module.exists():
        shutil.copy(EXAMPLES / "hello" / "hello.wasm", module)
    return write_manifest(user.cwd / f"{name}-{label}.yaml", [{"name": "web", "properties": {
        "moduleURL": "hello.wasm", "route": route, "environment": [{"name": "LABEL", "value": label}]}}], name=name)


@pytest.fixture
def host(user: User) -> Host:
    return user.serve(DEMO, "--allow-files", str(user.cwd), "--allow-files", str(EXAMPLES))


def test_app_alone_when_it_has_one_component(user: User, host: Host) -> None:
    assert user.run("deploy", str(_one_component_app(user, label="v1"))).returncode == 0
    assert user.run("deploy", str(_one_component_app(user, label="v2"))).returncode == 0
    rolled = user.run("rollback", "shop")
    assert rolled.returncode == 0, rolled.stderr
    assert rolled.stdout.startswith("shop/web ")
    logs = user.run("logs", "shop")
    assert logs.returncode == 0, logs.stderr
    assert user.run("delete", "shop").stdout == "shop/web: deleted\n"


def test_app_with_several_components_lists_them(user: User, host: Host) -> None:
    for verb in ("logs", "rollback", "promote", "abort", "delete"):
        result = user.run(verb, "demo")
        assert result.returncode == 1
        assert (f"error: app 'demo' has 2 components: demo/echo, demo/hello; name one as APP/COMPONENT, "
                f"e.g. `wasmlet {verb} demo/echo`") in result.stderr
    assert user.run("logs", "demo/echo").returncode == 0


def test_an_unknown_app_lists_what_is_deployed(user: User, host: Host) -> None:
    result = user.run("logs", "nope")
    assert result.returncode == 1
    assert ("no app named 'nope' is deployed (deployed: demo/echo, demo/hello); expected APP or APP/COMPONENT"
            in result.stderr)


def test_http_requests_are_quiet_unless_asked(user: User, host: Host) -> None:
    manifest = str(_one_component_app(user))
    quiet = user.run("deploy", manifest)
    assert quiet.returncode == 0
    assert "HTTP Request" not in quiet.stderr and quiet.stderr == ""
    for args in (["apps", "-v"], ["-v", "apps"], ["deploy", manifest, "-v"]):
        loud = user.run(*args)
        assert loud.returncode == 0
        assert "HTTP Request: " in loud.stderr, args


def test_apps_and_logs_as_json(user: User, host: Host) -> None:
    for flag in (["-o", "json"], ["--json"]):
        listing = user.run("apps", *flag)
        assert listing.returncode == 0
        apps = json.loads(listing.stdout)
        assert [app["name"] for app in apps] == ["demo/echo", "demo/hello"]
        assert {"version", "digest", "route", "state", "canary"} <= apps[0].keys()
    assert json.loads(user.run("logs", "demo/echo", "-o", "json").stdout) == []
    deployed = json.loads(user.run("deploy", str(_one_component_app(user)), "--json").stdout)
    assert deployed["results"][0]["app"] == "shop/web" and deployed["results"][0]["changed"] is True
    assert json.loads(user.run("delete", "shop", "--json").stdout) == {"deleted": True, "name": "shop/web"}
    bad = user.run("apps", "-o", "yaml")
    assert bad.returncode == 2 and "'yaml' is not one of 'text', 'json'" in bad.stderr


def test_top_honours_wasmlet_admin_and_finds_the_host_alone(user: User, host: Host) -> None:
    alone = user.run("top", "--once", "--interval", "0.2")
    assert alone.returncode == 0, alone.stderr
    assert "demo/echo" in alone.stdout or "wasmlet top" in alone.stdout
    elsewhere = user.run("top", "--once", "--interval", "0.2", env={"WASMLET_ADMIN": "http://127.0.0.1:9"})
    assert elsewhere.returncode == 1
    assert "http://127.0.0.1:9/metrics" in elsewhere.stderr


def test_a_route_clash_names_the_manifest_deployed_and_the_index(user: User, host: Host) -> None:
    clash = write_manifest(user.cwd / "clash.yaml", [
        {"name": "api", "properties": {"moduleURL": "hello.wasm", "route": "/api"}},
        {"name": "home", "properties": {"moduleURL": "hello.wasm", "route": "/"}},
    ], name="site")
    shutil.copy(EXAMPLES / "hello" / "hello.wasm", user.cwd / "hello.wasm")
    result = user.run("deploy", str(clash))
    assert result.returncode == 1
    assert f"{clash}: invalid manifest" in result.stderr
    assert ("spec.components[1].properties.route: component site/home and demo/hello "
            f"(from {EXAMPLES / 'demo' / 'app.yaml'}) both claim route /") in result.stderr
    assert "give one of them another route" in result.stderr


def test_validate_names_the_later_manifest_of_a_clash(user: User) -> None:
    shutil.copy(EXAMPLES / "hello" / "hello.wasm", user.cwd / "hello.wasm")
    first = write_manifest(user.cwd / "first.yaml", [{"name": "a", "properties": {
        "moduleURL": "hello.wasm", "route": "/x"}}], name="one")
    second = write_manifest(user.cwd / "second.yaml", [
        {"name": "b", "properties": {"moduleURL": "hello.wasm", "route": "/y"}},
        {"name": "c", "properties": {"moduleURL": "hello.wasm", "route": "/x"}},
    ], name="two")
    result = user.run("validate", "first.yaml", "second.yaml")
    assert result.returncode == 1
    assert "second.yaml: invalid manifest" in result.stderr
    assert ("spec.components[1].properties.route: component two/c and one/a (from first.yaml) "
            "both claim route /x") in result.stderr
    assert first.exists() and second.exists()
