"""What a worker and ``wasmlet serve`` import at start (issue 13): no HTTP client, no Kubernetes renderer.

Each check runs in a fresh interpreter, so what other tests imported does not count.
The timings themselves are in ``bench/worker_start.py`` (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Loaded on first use only: the HTTP client (and rich/pygments behind httpx), the OCI client, the
# Kubernetes renderer and placement, the admin API, cryptography, the manifest's schema (a worker
# reads specs, not manifests), the supervisor, the component stacks and wasmtime's component API
# (with the first component), and OpenTelemetry (when tracing is on, or a request first brings a
# trace context).
NOT_AT_START = ("httpx", "httpcore", "rich", "pygments", "fastapi", "opentelemetry", "wasmlet.registry._oci",
                "wasmlet.registry._client", "wasmlet.plan._k8s_render", "wasmlet.plan._netpolicy",
                "wasmlet.plan._kube", "wasmlet.plan._placement", "wasmlet.plan._loader", "cryptography",
                "wasmlet.plan._manifest", "wasmlet.plan._traits", "wasmlet.server._supervisor",
                "wasmlet.guest._component", "wasmlet.guest._proxy", "wasmlet.guest._spin", "wasmtime.component")


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nimport json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


@pytest.mark.parametrize("module", ["wasmlet.server._worker", "wasmlet.server", "wasmlet.plan"])
def test_a_worker_starts_without_the_http_client_or_the_kubernetes_renderer(module: str) -> None:
    loaded = _loaded_after(f"import {module}")
    assert sorted(m for m in NOT_AT_START if m in loaded) == []


def test_serve_deploying_from_files_does_not_load_the_oci_client() -> None:
    loaded = _loaded_after("import wasmlet._serve")
    assert sorted(m for m in ("httpx", "httpcore", "wasmlet.registry._oci", "wasmlet.registry._client",
                              "wasmlet.plan._k8s_render") if m in loaded) == []


def test_serve_loads_neither_cryptography_nor_the_worker_side_before_it_deploys() -> None:
    """The supervisor's imports are on the way to the first response, beside the zygote's: cryptography
    loads when a signature is first checked, the ASGI app, OpenTelemetry and asyncio (the connection
    board's acceptor) only in workers, and in the supervisor once it serves (its admin API); so does
    prometheus_client (with ssl), once the first workers are asked for (the deploy's cache lookups are
    held until then), and the app log's handler."""
    loaded = _loaded_after("import wasmlet._launch, wasmlet.cli, wasmlet._serve, wasmlet.server._supervisor, "
                           "wasmlet.control._prepare, wasmlet.control._plane")
    assert sorted(m for m in ("cryptography", "bcrypt", "opentelemetry", "asyncio", "wasmlet.server._asgi",
                              "wasmlet.server._balance", "wasmlet.telemetry._request", "wasmlet.guest._proxy",
                              "wasmlet.guest._spin", "wasmlet.guest._component", "wasmtime.component",
                              "prometheus_client", "ssl", "logging.handlers") if m in loaded) == []
    assert {"wasmlet.control._prepare", "wasmlet.server._board"} <= loaded  # what the check would miss if empty


@pytest.mark.parametrize("package", ["wasmlet.plan", "wasmlet.registry", "wasmlet.server", "wasmlet.guest",
                                     "wasmlet.telemetry"])
def test_every_lazy_name_resolves(package: str) -> None:
    code = (f"import importlib\np = importlib.import_module({package!r})\n"
            "missing = [n for n in p.__all__ if getattr(p, n, None) is None]\nassert not missing, missing\n"
            "assert sorted(dir(p)) == sorted(p.__all__)")
    _loaded_after(code)


@pytest.mark.parametrize("package", ["wasmlet.plan", "wasmlet.registry", "wasmlet.server", "wasmlet.guest",
                                     "wasmlet.telemetry"])
def test_an_unknown_name_is_still_an_attribute_error(package: str) -> None:
    import importlib

    with pytest.raises(AttributeError, match="no_such_name"):
        importlib.import_module(package).no_such_name  # noqa: B018


def test_preloading_loads_the_http_client_for_apps_that_may_call_out() -> None:
    loaded = _loaded_after("from wasmlet.guest import preload_http_client\npreload_http_client()")
    assert {"httpx", "httpcore", "wasmlet.guest._deadline_io"} <= loaded


_STOP_WORKERS = """
import sys, tempfile
from pathlib import Path
from wasmlet._multiproc import prepare_metrics_dir
prepare_metrics_dir()
sys.path.insert(0, {tests!r})
from conftest import deploy_plan, write_manifest
from wasmlet._serve import _stop_workers
from wasmlet.server import ServeSettings, Supervisor
work = Path(tempfile.mkdtemp(prefix="wasmlet-test-stop-"))
manifest = write_manifest(work / "app.yaml", [{{"name": "hello", "properties": {{"moduleURL": {hello!r}}}}}])
supervisor = Supervisor(deploy_plan([manifest], cache_dir=work / "cache"), ServeSettings(port=0, workers=2, admin=None),
                        "warning")
supervisor.startup()
processes = [w.process for w in supervisor.workers]
assert len(processes) == 2 and all(p.poll() is None for p in processes)
_stop_workers(supervisor)
import json
print(json.dumps({{"codes": [p.poll() for p in processes], "socket_closed": supervisor.sock is None}}))
"""


def test_workers_started_before_a_failing_admin_listener_are_stopped() -> None:
    # ``serve`` builds the admin API after spawning the workers (so they start while FastAPI
    # loads); if that fails, ``_stop_workers`` must not leave them running.
    root = Path(__file__).resolve().parents[1]
    code = _STOP_WORKERS.format(tests=str(root / "tests"), hello=str(root / "examples" / "hello" / "hello.wasm"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(result["codes"]) == 2 and None not in result["codes"], result  # both exited
    assert result["socket_closed"]
