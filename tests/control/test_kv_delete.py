"""Deleting an app deletes its Spin key-value store (issue 11), once the delete is durable, and only then.

A real ``ControlPlane`` over a real ``StateStore`` deploys real (WAT) modules;
the store is written through ``KeyValueHost``, as a worker's guest writes it,
under the state folder the plan names (``<state>/kv``). The last tests do the
same through a real ``wasmlet serve`` and its admin API, the data written by a
real guest (``proxy_kv.wasm``: ``/kvset?KEY=VALUE``, ``/kvget?KEY``) over HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import GUESTS, Server, label_module, write_manifest

from wasmlet.control import ControlPlane, StateStore
from wasmlet.engine import default_cache_dir
from wasmlet.guest import KeyValueHost
from wasmlet.plan import EngineSettings, Plan

PROXY_KV = GUESTS / "components" / "proxy_kv.wasm"
APP = "shop"  # the manifest's app: every component of it shares <state>/kv/shop.sqlite


def manifest(tmp_path: Path, label: str, components: tuple[str, ...] = ("web",), app: str = APP) -> Path:
    return write_manifest(tmp_path / f"{app}-{label}.yaml", [
        {"name": name, "properties": {
            "moduleURL": str(label_module(tmp_path / f"{label}-{name}.wasm", f"{label} {name}")),
            "route": f"/{app}/{name}"}} for name in components], name=app)


@pytest.fixture
def control(tmp_path: Path) -> Iterator[ControlPlane]:
    with StateStore(tmp_path / "state") as store:
        yield ControlPlane(store, EngineSettings(), default_cache_dir())


def kv_of(control: ControlPlane) -> KeyValueHost:
    """What a worker opens: ``<plan.blob_root>/kv``."""
    return KeyValueHost(Path(control.plan().blob_root) / "kv")


def files(control: ControlPlane, app: str = APP) -> list[str]:
    kv = control.state.directory / "kv"
    return sorted(p.name for p in kv.iterdir() if p.name.startswith(f"{app}.")) if kv.exists() else []


def test_delete_removes_the_store_after_the_delete_is_durable(control: ControlPlane, tmp_path: Path) -> None:
    control.deploy_files([manifest(tmp_path, "v1")])
    worker = kv_of(control)
    worker.stores(APP).set("default", "cart", b"3 apples")  # a worker's pool stays open: -wal and -shm exist
    assert files(control) == ["shop.sqlite", "shop.sqlite-shm", "shop.sqlite-wal"]
    at_publish: list[tuple[list[str], list[str]]] = []

    def publish(plan: Plan) -> None:  # the workers get the plan without the app: the store is still there
        at_publish.append(([a.app for a in control.state.apps()], files(control)))

    with control.publishing_to(publish):
        control.delete(f"{APP}/web")
    assert at_publish == [([], ["shop.sqlite", "shop.sqlite-shm", "shop.sqlite-wal"])]
    assert files(control) == []
    # Re-deployed under the same name: a new, empty store, even in the worker that had the old one open.
    control.deploy_files([manifest(tmp_path, "v1")])
    again = worker.stores(APP)
    assert again.get("default", "cart") is None and again.usage() == (0, 0)
    assert kv_of(control).stores(APP).get_keys("default") == []


def test_a_new_version_and_a_rollback_keep_the_data(control: ControlPlane, tmp_path: Path) -> None:
    control.deploy_files([manifest(tmp_path, "v1")])
    kv_of(control).stores(APP).set("default", "cart", b"3 apples")
    report = control.deploy_files([manifest(tmp_path, "v2")])
    assert [(r.app, r.version, r.changed) for r in report.results] == [(f"{APP}/web", 2, True)]
    assert kv_of(control).stores(APP).get("default", "cart") == b"3 apples"
    control.rollback(f"{APP}/web")
    assert control.app(f"{APP}/web").version == 1
    assert kv_of(control).stores(APP).get("default", "cart") == b"3 apples"
    assert files(control)[0] == "shop.sqlite"


def test_the_store_stays_while_another_component_of_the_app_is_deployed(control: ControlPlane,
                                                                         tmp_path: Path) -> None:
    control.deploy_files([manifest(tmp_path, "v1", ("web", "api")), manifest(tmp_path, "v1", app="other")])
    kv_of(control).stores(APP).set("default", "cart", b"3 apples")
    kv_of(control).stores("other").set("default", "k", b"v")
    control.delete(f"{APP}/web")
    assert kv_of(control).stores(APP).get("default", "cart") == b"3 apples"  # shop/api still uses it
    control.delete(f"{APP}/api")
    assert files(control) == []
    assert kv_of(control).stores("other").get("default", "k") == b"v"  # another app's store is untouched


def test_a_store_that_cannot_be_removed_is_logged_and_the_delete_stands(
        control: ControlPlane, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    control.deploy_files([manifest(tmp_path, "v1")])
    # An attacker (or an operator's mistake) made <state>/kv a symlink to a folder that is not the host's.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "shop.sqlite").write_bytes(b"not the host's")
    (control.state.directory / "kv").symlink_to(elsewhere, target_is_directory=True)
    with caplog.at_level(logging.ERROR, logger="wasmlet.control"):
        control.delete(f"{APP}/web")
    assert control.state.apps() == []
    assert (elsewhere / "shop.sqlite").read_bytes() == b"not the host's"
    assert any("key-value store" in r.getMessage() and "not removed" in r.getMessage() for r in caplog.records)


def test_delete_through_the_admin_api_of_a_running_host(serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve(str(manifest(tmp_path, "v1")), "--allow-files", str(tmp_path))
    assert httpx.get(server.url + "/shop/web", timeout=10).text.strip() == "v1 web"
    kv = KeyValueHost(server.state_dir / "kv")
    kv.stores(APP).set("default", "cart", b"3 apples")
    assert (server.state_dir / "kv" / "shop.sqlite").exists()
    assert server.admin("DELETE", f"/v1/apps/{APP}/web").status_code == 204
    assert httpx.get(server.url + "/shop/web", timeout=10).status_code == 404
    assert sorted(p.name for p in (server.state_dir / "kv").iterdir()) == []
    assert "removed its key-value store" in server.output()
    kv.close()


def kv_manifest(tmp_path: Path, label: str) -> Path:
    """The key-value guest as ``shop/web``; ``label`` (an environment value) makes a new version."""
    module = tmp_path / "proxy_kv.wasm"  # in the --allow-files folder, for the admin API's deploys
    module.write_bytes(PROXY_KV.read_bytes())
    return write_manifest(tmp_path / f"kv-{label}.yaml", [{"name": "web", "properties": {
        "moduleURL": str(module), "route": "/", "environment": [{"name": "LABEL", "value": label}]}}], name=APP)


def test_a_guest_s_data_lives_with_the_app_and_goes_with_it(serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve(str(kv_manifest(tmp_path, "v1")), "--allow-files", str(tmp_path), workers=2)

    def get(key: str) -> httpx.Response:
        return httpx.get(f"{server.url}/kvget?{key}", timeout=30)

    assert httpx.get(server.url + "/kvset?cart=3-apples", timeout=30).status_code == 200
    assert {get("cart").text for _ in range(6)} == {"3-apples"}  # both workers see it
    assert get("nothing").status_code == 404
    # A new version and a rollback: the same app, the same data.
    assert server.admin("POST", "/v1/deploy", content=kv_manifest(tmp_path, "v2").read_text()).status_code < 300
    assert server.admin("GET", f"/v1/apps/{APP}/web").json()["version"] == 2
    assert get("cart").text == "3-apples"
    assert server.admin("POST", f"/v1/apps/{APP}/web/rollback").status_code == 200
    assert server.admin("GET", f"/v1/apps/{APP}/web").json()["version"] == 1
    assert {get("cart").text for _ in range(6)} == {"3-apples"}
    # Deleted: the file goes; deployed again under the same name: empty, in every worker.
    assert server.admin("DELETE", f"/v1/apps/{APP}/web").status_code == 204
    assert get("cart").text == "no app is routed here\n"
    assert sorted(p.name for p in (server.state_dir / "kv").iterdir()) == []
    assert server.admin("POST", "/v1/deploy", content=kv_manifest(tmp_path, "v1").read_text()).status_code < 300
    assert {(get("cart").status_code, get("cart").text) for _ in range(6)} == {(404, "")}  # the guest's: no key
    assert httpx.get(server.url + "/kvset?cart=fresh", timeout=30).status_code == 200
    assert {get("cart").text for _ in range(6)} == {"fresh"}
