"""deploy/kubernetes: every overlay renders, every object validates, and the pods are what the issue asks.

Rendered with ``kubectl kustomize``; core objects validated against the OpenAPI schemas of
Kubernetes (``kubernetes-validate``, strict), custom resources against ``crd_schemas``. What the
pod spec says is also run: tests/kubernetes/test_pod_runs.py.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from tests.kubernetes.conftest import DEPLOY, OVERLAYS, ROOT, SEED, find, render, validate

from wasmlet.plan import load_nodes, load_priority_classes
from wasmlet.server import HEALTH_PATH, READY_PATH


def _pods(objects: tuple[dict[str, Any], ...]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"]) for o in objects
            if o["kind"] in ("DaemonSet", "StatefulSet", "Deployment", "Job")]


def test_the_overlays_are_the_three_documented() -> None:
    assert OVERLAYS == ["lattice", "production", "single-node"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_validates(overlay: str) -> None:
    objects = render(overlay)
    kinds = {o["kind"] for o in objects}
    assert {"Namespace", "PriorityClass", "Secret", "ConfigMap", "DaemonSet", "Service", "NetworkPolicy"} <= kinds
    for document in objects:
        validate(document)
        if document["kind"] not in ("Namespace", "PriorityClass"):  # the cluster-scoped ones
            assert document["metadata"].get("namespace") == "wasmlet", (document["kind"], document["metadata"])
    if overlay != "single-node":
        assert {"StatefulSet"} <= kinds
    if overlay == "production":
        assert {"ServiceMonitor", "PrometheusRule"} <= kinds


def test_the_validation_is_not_a_formality() -> None:
    """A misspelt field, a wrong type and a bad CRD field each fail."""
    daemonset = copy.deepcopy(find(render("lattice"), "DaemonSet", "wasmlet"))
    daemonset["spec"]["template"]["spec"]["tolerations"][0]["efect"] = "NoSchedule"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(daemonset)
    daemonset = copy.deepcopy(find(render("lattice"), "DaemonSet", "wasmlet"))
    daemonset["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "3000"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(daemonset)
    rule = copy.deepcopy(find(render("production"), "PrometheusRule", "wasmlet"))
    rule["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    with pytest.raises(jsonschema.ValidationError):
        validate(rule)
    monitor = copy.deepcopy(find(render("production"), "ServiceMonitor", "wasmlet"))
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_hardened_with_requests_and_limits(overlay: str) -> None:
    pods = _pods(render(overlay))
    assert pods
    for where, pod in pods:
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True and security["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert pod["automountServiceAccountToken"] is False, where
        for container in pod.get("initContainers", []) + pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, (where, container["name"])
            assert context["readOnlyRootFilesystem"] is True, (where, container["name"])
            assert context["capabilities"] == {"drop": ["ALL"]}, (where, container["name"])
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, (where, container["name"])
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_hosts_write_only_to_their_empty_dirs(overlay: str) -> None:
    objects = render(overlay)
    daemonset = find(objects, "DaemonSet", "wasmlet")
    pod = daemonset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    config = find(objects, "ConfigMap", "wasmlet-config")["data"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    for variable in ("WASMLET_STATE_DIR", "WASMLET_CACHE_DIR", "WASMLET_RUNTIME_DIR", "HOME"):
        path = config[variable]
        holder = [m for m in mounts if path == m or path.startswith(m.rstrip("/") + "/")]
        assert holder and "emptyDir" in mounts[holder[0]], (variable, path)
    assert config["PYTHONDONTWRITEBYTECODE"] == "1"  # no .pyc written next to the read-only code


def test_the_image_is_the_containerfile_s() -> None:
    """The pods run the repository's image as its own non-root user, with its own folders."""
    text = (ROOT / "Containerfile").read_text()
    user = re.search(r"^USER (\d+):(\d+)$", text, re.M)
    assert user is not None
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version is not None
    for overlay in OVERLAYS:
        objects = render(overlay)
        pod = find(objects, "DaemonSet", "wasmlet")["spec"]["template"]["spec"]
        assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == \
            (int(user[1]), int(user[2]))
        for container in pod["initContainers"] + pod["containers"]:
            assert container["image"] == f"localhost/wasmlet:{version[1]}"
        config = find(objects, "ConfigMap", "wasmlet-config")["data"]
        for variable in ("WASMLET_STATE_DIR", "WASMLET_CACHE_DIR"):
            assert f"{variable}={config[variable]}" in text  # the image's VOLUMEs are where the pod mounts


def test_the_hosts_run_on_the_seed_s_wasm_node_at_its_priority() -> None:
    """nodeSelector and toleration fit the seed's Node; the PriorityClass is the seed's, unchanged."""
    (node,) = load_nodes(SEED)
    seed_documents = list(yaml.safe_load_all(SEED.read_text()))
    seed_class = next(d for d in seed_documents if d["kind"] == "PriorityClass")
    for overlay in OVERLAYS:
        objects = render(overlay)
        pod = find(objects, "DaemonSet", "wasmlet")["spec"]["template"]["spec"]
        assert all(node.labels.get(k) == v for k, v in pod["nodeSelector"].items())
        for taint in node.taints:
            assert any(t["key"] == taint.key and t.get("value") == taint.value and t["effect"] == taint.effect
                       and t["operator"] == "Equal" for t in pod["tolerations"]), taint
        rendered = find(objects, "PriorityClass", "wasm-critical")
        assert {k: v for k, v in rendered.items() if k != "metadata"} == \
            {k: v for k, v in seed_class.items() if k != "metadata"}
        (priority,) = load_priority_classes(SEED)
        assert pod["priorityClassName"] == priority.name and priority.value == 1_000_000
        assert not priority.global_default


def test_the_probes_ask_the_endpoints_that_exist() -> None:
    """The paths are the data plane's (server/_asgi.py) and the admin API's /healthz; a running host
    answers them in test_pod_runs.py."""
    container = find(render("lattice"), "DaemonSet", "wasmlet")["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"] == {"path": HEALTH_PATH, "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": READY_PATH, "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    ports = {p["name"] for p in container["ports"]}
    assert ports == {"http", "admin"}


def test_services_reach_the_data_plane_and_the_admin_api() -> None:
    objects = render("lattice")
    pod_labels = find(objects, "DaemonSet", "wasmlet")["spec"]["template"]["metadata"]["labels"]
    for name, port in (("wasmlet", "http"), ("wasmlet-admin", "admin")):
        service = find(objects, "Service", name)
        assert all(pod_labels.get(k) == v for k, v in service["spec"]["selector"].items())
        assert [p["targetPort"] for p in service["spec"]["ports"]] == [port]
    assert pod_labels["application"] == "wasm"  # what the seed's Calico policy selects


def test_the_admin_token_comes_from_the_secret() -> None:
    objects = render("single-node")
    secret = find(objects, "Secret", "wasmlet-admin-token")
    # Declared without a value: applying the manifests again never resets the token set out of band.
    assert "data" not in secret and "stringData" not in secret
    pod = find(objects, "DaemonSet", "wasmlet")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "admin-token")
    assert volume["secret"]["secretName"] == "wasmlet-admin-token"
    init = pod["initContainers"][0]
    assert "/run/secrets/wasmlet/admin-token" in init["command"][-1]
    assert "/var/lib/wasmlet/admin-token" in init["command"][-1]


def test_the_nats_cluster_has_three_servers_with_storage_and_routes() -> None:
    for overlay in ("lattice", "production"):
        objects = render(overlay)
        nats = find(objects, "StatefulSet", "wasmlet-nats")
        assert nats["spec"]["replicas"] == 3 and nats["spec"]["podManagementPolicy"] == "Parallel"
        (claim,) = nats["spec"]["volumeClaimTemplates"]
        assert claim["spec"]["resources"]["requests"]["storage"]
        assert claim["metadata"]["name"] in {m["name"] for m in nats["spec"]["template"]["spec"]["containers"][0]
                                             ["volumeMounts"]}
        service = find(objects, "Service", nats["spec"]["serviceName"])
        assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
        namespace = nats["metadata"]["namespace"]
        names = [f"wasmlet-nats-{i}.{service['metadata']['name']}.{namespace}.svc" for i in range(3)]
        conf = find(objects, "ConfigMap", "wasmlet-nats-config")["data"]["nats.conf"]
        assert re.findall(r"nats://([^:\s]+):6222", conf) == names
        assert "jetstream {" in conf and "store_dir: /data/" in conf
        lattice = find(objects, "ConfigMap", "wasmlet-config")["data"]["WASMLET_LATTICE"]
        assert lattice.split(",") == [f"nats://{n}:4222" for n in names]
        args = find(objects, "DaemonSet", "wasmlet")["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--host-name=$(NODE_NAME)" in args and "--label=node-type=wasm" in args
    assert "WASMLET_LATTICE" not in find(render("single-node"), "ConfigMap", "wasmlet-config")["data"]
    # production's patch replaces the --workers value by position: it must still be that value.
    for overlay, workers in (("single-node", "2"), ("lattice", "2"), ("production", "4")):
        args = find(render(overlay), "DaemonSet", "wasmlet")["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[:3] == ["serve", "--listen", "0.0.0.0:3000"] and args[args.index("--workers") + 1] == workers


def test_the_prometheus_rule_carries_the_shipped_alert_rules() -> None:
    shipped = yaml.safe_load((DEPLOY.parent / "prometheus" / "wasmlet-rules.yml").read_text())
    rule = find(render("production"), "PrometheusRule", "wasmlet")
    assert rule["spec"]["groups"] == shipped["groups"]
    assert rule["metadata"]["namespace"] == "wasmlet"
    monitor = find(render("production"), "ServiceMonitor", "wasmlet")
    admin = find(render("production"), "Service", "wasmlet-admin")
    assert all(admin["metadata"]["labels"].get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert monitor["spec"]["endpoints"][0]["port"] == admin["spec"]["ports"][0]["name"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_the_seed_stream_fixture_has_all_four_documents() -> None:
    documents = [d for d in yaml.safe_load_all(SEED.read_text()) if d]
    assert [(d["apiVersion"], d["kind"], d["metadata"]["name"]) for d in documents] == [
        ("v1", "Node", "wasm-node-01"),
        ("core.oam.dev/v1beta1", "Application", "image-processor"),
        ("scheduling.k8s.io/v1", "PriorityClass", "wasm-critical"),
        ("projectcalico.org/v3", "NetworkPolicy", "wasm-to-db"),
    ]
    for document in documents:
        if document["kind"] != "Application":  # OAM's CRD is KubeVela's; wasmlet's loader validates it
            validate(document)
