"""The pod spec, run: what the rendered manifests say, started as processes on loopback.

No Kubernetes runs here, so the test plays the kubelet's part for what it can: it takes the
rendered DaemonSet's init container and container (args, envFrom the ConfigMap, env with the
downward API's node name, ``$(VAR)`` expansion) and the rendered ``nats.conf``, and starts them,
changing only what must be local (each change listed in ``LOCAL``):

- the NATS StatefulSet's three servers from the rendered nats.conf: ports and routes on
  127.0.0.1, the JetStream store under tmp_path, POD_NAME as the StatefulSet gives it;
- the init container's script with the Secret's mount and the state folder under tmp_path;
- two DaemonSet hosts (nodes wasm-node-01 and ip-10-0-1-2.eu-west-1.compute.internal, a node
  name as EKS gives it: dots) with the container's args and environment: the listeners on
  127.0.0.1 free ports, the folders under tmp_path, the lattice URLs pointing at the local servers;
- the seed's Application (registry host made local, as tests/registry does), rendered by
  ``wasmlet k8s render`` into a ConfigMap and a Job; the Job's container is run as it says.

Then the hosts must have joined one lattice and serve the seed's app, from either host, and
answer every probe of the pod spec.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests.conftest import EXAMPLES, free_port
from tests.kubernetes.conftest import SEED, find, render
from tests.lattice.conftest import NATS_SERVER, NatsServer, wait_for
from tests.registry.conftest import Registry

from wasmlet.registry import push_module

WASMLET = [sys.executable, "-m", "wasmlet"]
ECHO = EXAMPLES / "echo" / "echo.wasm"
NODES = ("wasm-node-01", "ip-10-0-1-2.eu-west-1.compute.internal")  # the seed's Node; one named as EKS names nodes
LOCAL = {  # what the test changes in the pod spec, and why
    "--listen 0.0.0.0:3000": "a free port on 127.0.0.1 (house rule: loopback only)",
    "WASMLET_ADMIN_LISTEN": "a free port on 127.0.0.1",
    "WASMLET_STATE_DIR, WASMLET_CACHE_DIR, WASMLET_RUNTIME_DIR, HOME": "folders under tmp_path (emptyDirs)",
    "WASMLET_LATTICE": "the three local NATS servers instead of the StatefulSet's pod names",
    "NODE_NAME": "the downward API's spec.nodeName: the node the pod would run on",
}


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion of args and env values (``$$`` escapes; unknown names stay)."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m[0] == "$$" else env.get(m[1], m[0]), value)


class RenderedNats(NatsServer):
    """One server of the StatefulSet, run from the rendered ``nats.conf`` with local ports and store."""

    def __init__(self, index: int, conf: str, tmp_path: Path, cluster_ports: list[int]) -> None:
        self.pod = f"wasmlet-nats-{index}"
        super().__init__(self.pod, tmp_path / self.pod, tmp_path / f"{self.pod}.log")
        local = conf
        for pattern, replacement in ((r"^port: 4222$", f"listen: 127.0.0.1:{self.port}"),
                                     (r"^http_port: 8222$", f"http: 127.0.0.1:{self.monitor}"),
                                     (r"store_dir: /data/jetstream", f"store_dir: {self.store}"),
                                     (r"^  port: 6222$", f"  listen: 127.0.0.1:{cluster_ports[index]}")):
            local, count = re.subn(pattern, replacement, local, flags=re.M)
            assert count == 1, f"nats.conf changed shape: {pattern!r} found {count} times"
        local, count = re.subn(r"nats://wasmlet-nats-(\d)\.[^:\s]+:6222",
                               lambda m: f"nats://127.0.0.1:{cluster_ports[int(m[1])]}", local)
        assert count == 3
        self.conf = tmp_path / f"{self.pod}.conf"
        self.conf.write_text(local)

    def launch(self) -> None:
        assert NATS_SERVER
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([NATS_SERVER, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, "POD_NAME": self.pod}, start_new_session=True)


@pytest.fixture
def nats_statefulset(tmp_path: Path) -> Iterator[list[RenderedNats]]:
    conf = find(render("lattice"), "ConfigMap", "wasmlet-nats-config")["data"]["nats.conf"]
    assert "server_name: $POD_NAME" in conf
    ports = [free_port() for _ in range(3)]
    servers = [RenderedNats(i, conf, tmp_path, ports) for i in range(3)]
    for server in servers:  # podManagementPolicy: Parallel
        server.launch()
    try:
        for server in servers:
            server.wait_healthy(60)
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "registry").start()
    yield reg
    reg.stop()


class PodHost:
    """The DaemonSet's container as a process, for one node."""

    def __init__(self, overlay: str, node: str, tmp_path: Path, lattice: str | None = None) -> None:
        objects = render(overlay)
        pod = find(objects, "DaemonSet", "wasmlet")["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert "command" not in container  # the image's ENTRYPOINT ["wasmlet"] takes the args
        self.container = container
        self.node = node
        self.root = tmp_path / node
        self.port, self.admin_port = free_port(), free_port()
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            env.update(find(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = _expand(item["value"], env)
            else:
                assert item["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}, item
                env[item["name"]] = node
        local = {"WASMLET_STATE_DIR": self.root / "state", "WASMLET_CACHE_DIR": self.root / "cache",
                 "WASMLET_RUNTIME_DIR": self.root / "tmp" / "wasmlet", "HOME": self.root / "tmp"}
        for name, path in local.items():
            assert env[name].startswith(("/var/lib/wasmlet", "/var/cache/wasmlet", "/tmp")), (name, env[name])
            env[name] = str(path)
        (self.root / "tmp").mkdir(parents=True)
        assert env["WASMLET_ADMIN_LISTEN"] == "0.0.0.0:9180"
        env["WASMLET_ADMIN_LISTEN"] = f"127.0.0.1:{self.admin_port}"
        if lattice is not None:
            assert env["WASMLET_LATTICE"].count("nats://") == 3
            env["WASMLET_LATTICE"] = lattice
        else:
            assert "WASMLET_LATTICE" not in env
        args = [_expand(a, env) for a in container["args"]]
        listen = args.index("--listen") + 1
        assert args[listen] == "0.0.0.0:3000"
        args[listen] = f"127.0.0.1:{self.port}"
        self.args, self.env = args, env
        self.state = Path(env["WASMLET_STATE_DIR"])
        self.init = pod["initContainers"][0]
        self.log = self.root / "host.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def run_init(self, secret_value: str | None) -> subprocess.CompletedProcess[str]:
        """The init container's script, with the Secret's mount and the state emptyDir made local.

        ``None``: the Secret as rendered, without its key (the volume is then empty)."""
        secrets = self.root / "secret"
        secrets.mkdir(exist_ok=True)
        if secret_value is not None:
            (secrets / "admin-token").write_text(secret_value)
            (secrets / "admin-token").chmod(0o440)  # defaultMode
        self.state.mkdir(exist_ok=True)
        command = [c.replace("/run/secrets/wasmlet", str(secrets)).replace("/var/lib/wasmlet", str(self.state))
                   for c in self.init["command"]]
        mounts = {m["mountPath"] for m in self.init["volumeMounts"]}
        assert mounts == {"/run/secrets/wasmlet", "/var/lib/wasmlet"}
        return subprocess.run(command, capture_output=True, text=True, timeout=30)

    def start(self) -> PodHost:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("WASMLET_", "XDG_"))}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen([*WASMLET, *self.args], stdout=log, stderr=subprocess.STDOUT,
                                            env={**base, **self.env}, start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 90) -> None:
        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.node} exited:\n{self.log.read_text(errors='replace')}")
            # Workers forked from the zygote (issue 13) serve before the admin listener is up: "client
            # commands" is printed once it is.
            return httpx.get(self.url + "/.well-known/wasmlet/ready", timeout=2).status_code == 200 \
                and "client commands" in self.log.read_text(errors="replace")

        wait_for(ready, timeout, f"host {self.node} ready")

    def probes(self) -> dict[str, int]:
        """Every probe of the container, asked as the kubelet would (named port -> local port)."""
        ports = {"http": self.port, "admin": self.admin_port}
        out = {}
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = self.container[kind]["httpGet"]
            out[kind] = httpx.get(f"http://127.0.0.1:{ports[get['port']]}{get['path']}", timeout=5).status_code
        return out

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)


def _render_seed_app(tmp_path: Path, registry: Registry) -> tuple[dict[str, Any], dict[str, Any]]:
    """``wasmlet k8s render`` of the seed's stream, its module's registry made local: the ConfigMap and Job."""
    text = SEED.read_text(encoding="utf-8")
    assert text.count("oci://registry.acme.com/wasm/resize:v1.2.0") == 1
    push_module(ECHO.read_bytes(), f"{registry.host}/wasm/resize:v1.2.0")
    seed = tmp_path / "seed-stream.yaml"
    seed.write_text(text.replace("registry.acme.com", registry.host), encoding="utf-8")
    result = subprocess.run([*WASMLET, "k8s", "render", str(seed)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    objects = list(yaml.safe_load_all(result.stdout))
    kinds = [o["kind"] for o in objects]
    assert kinds == ["ConfigMap", "Job", "NetworkPolicy", "NetworkPolicy"], kinds
    return objects[0], objects[1]


def _run_job(config: dict[str, Any], job: dict[str, Any], admin_url: str, token: str, tmp_path: Path
             ) -> subprocess.CompletedProcess[str]:
    """The deploy Job's container, as it says: its args, its env (the Secret's token), the ConfigMap mounted."""
    (container,) = job["spec"]["template"]["spec"]["containers"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "app")
    folder = tmp_path / "job-app"
    folder.mkdir(parents=True)
    for key, value in config["data"].items():
        (folder / key).write_text(value)
    args = [a.replace(mount["mountPath"], str(folder)) for a in container["args"]]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WASMLET_", "XDG_"))}
    for item in container["env"]:
        if item["name"] == "WASMLET_ADMIN":
            env["WASMLET_ADMIN"] = admin_url  # the wasmlet-admin Service: any host
        elif item["name"] == "WASMLET_ADMIN_TOKEN":
            assert item["valueFrom"]["secretKeyRef"] == {"name": "wasmlet-admin-token", "key": "admin-token"}
            env["WASMLET_ADMIN_TOKEN"] = token
        elif item["name"] == "HOME":
            env["HOME"] = str(tmp_path / "job-home")
        else:
            env[item["name"]] = item["value"]
    return subprocess.run([*WASMLET, *args], capture_output=True, text=True, timeout=120, env=env)


def test_the_init_container_refuses_a_missing_token_and_installs_the_token(tmp_path: Path) -> None:
    host = PodHost("single-node", NODES[0], tmp_path)
    assert "data" not in find(render("single-node"), "Secret", "wasmlet-admin-token")  # as rendered: no value
    for value in (None, ""):
        refused = host.run_init(value)
        assert refused.returncode == 1 and "has no admin-token value yet" in refused.stderr
        assert not (host.state / "admin-token").exists()
    installed = host.run_init("s3cret-token-0123456789")
    assert installed.returncode == 0, installed.stderr
    token = host.state / "admin-token"
    assert token.read_text() == "s3cret-token-0123456789\n" and token.stat().st_mode & 0o777 == 0o600


def test_the_single_node_pod_serves_the_seed_app(tmp_path: Path, registry: Registry) -> None:
    host = PodHost("single-node", NODES[0], tmp_path)
    assert host.run_init("single-node-token-0123456789").returncode == 0
    try:
        host.start().wait_ready()
        config, job = _render_seed_app(tmp_path, registry)
        deployed = _run_job(config, job, host.admin_url, "single-node-token-0123456789", tmp_path)
        assert deployed.returncode == 0, deployed.stderr
        assert "image-processor/resizer: version 1" in deployed.stdout
        response = httpx.get(host.url + "/", timeout=10)
        assert response.status_code == 200 and "env: QUALITY=85" in response.text, response.text
        assert host.probes() == {"startupProbe": 200, "livenessProbe": 200, "readinessProbe": 200}
        wrong = _run_job(config, job, host.admin_url, "not-the-token", tmp_path / "again")
        assert wrong.returncode == 1 and "token" in wrong.stderr
    finally:
        host.stop()


def test_the_daemonset_hosts_join_the_statefulset_s_nats_and_serve_the_seed_app(
        tmp_path: Path, nats_statefulset: list[RenderedNats], registry: Registry) -> None:
    urls = ",".join(s.url for s in nats_statefulset)
    hosts = [PodHost("lattice", node, tmp_path, lattice=urls) for node in NODES]
    token = "lattice-token-0123456789abcdef"
    try:
        for host in hosts:
            assert host.run_init(token).returncode == 0
            host.start()
        for host in hosts:
            host.wait_ready()
        for host in hosts:
            assert f"--host-name={host.node}" in host.args  # $(NODE_NAME), expanded as the kubelet does

        listed = subprocess.run([*WASMLET, "lattice", "hosts", "-o", "json", "--lattice", urls],
                                capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        rows = {row["name"]: row for row in json.loads(listed.stdout)}
        assert set(rows) == set(NODES)
        for row in rows.values():
            assert row["labels"].get("node-type") == "wasm" and not row["taints"]
        applied = subprocess.run([*WASMLET, "lattice", "apply", str(SEED), "--lattice", urls],
                                 capture_output=True, text=True, timeout=60)
        assert applied.returncode == 0 and "wasm-critical" in applied.stdout, applied.stderr

        config, job = _render_seed_app(tmp_path, registry)
        deployed = _run_job(config, job, hosts[1].admin_url, token, tmp_path)  # the Service picks any host
        assert deployed.returncode == 0, deployed.stderr

        def served(host: PodHost) -> httpx.Response | None:
            response = httpx.get(host.url + "/", timeout=10)
            return response if response.status_code == 200 else None

        answers = {}
        for host in hosts:
            response = wait_for(lambda h=host: served(h), 30, f"the seed's app from {host.node}")
            assert isinstance(response, httpx.Response)
            assert "env: QUALITY=85" in response.text, response.text
            answers[host.node] = response.headers.get("x-wasmlet-served-by")
        # One replica (no scaler trait): one host runs it, the other forwards to it over NATS.
        assert sorted(v for v in answers.values() if v is not None) in ([NODES[0]], [NODES[1]]), answers
        for host in hosts:
            assert host.probes() == {"startupProbe": 200, "livenessProbe": 200, "readinessProbe": 200}
    finally:
        for host in hosts:
            host.stop()
