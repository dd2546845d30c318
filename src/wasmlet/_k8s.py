"""``wasmlet k8s``: Kubernetes objects for an app, for GitOps (docs/kubernetes.md).

Thin: read the manifest files, hand the text to ``wasmlet.plan.render_app_resources``
(pure), print a YAML stream. Nothing here talks to a cluster.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import yaml

from . import __version__
from ._errors import ConfigError, WasmletError

__all__ = ["k8s"]


def _fail(exc: WasmletError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


def _peers(items: tuple[str, ...]) -> dict[str, tuple[tuple[str, str], ...]]:
    from .plan import parse_labels

    peers: dict[str, tuple[tuple[str, str], ...]] = {}
    for item in items:
        name, sep, labels = item.partition("=")
        if not sep or not name or not labels:
            raise ConfigError(f"--peer {item!r}: expected NAME=LABEL=VALUE[,LABEL=VALUE...], such as db=tier=database")
        try:
            peers[name.strip().lower()] = parse_labels(labels)
        except ValueError as exc:
            raise ConfigError(f"--peer {item!r}: {exc}") from exc
    return peers


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the manifest in a ConfigMap) as literal blocks, readable in a Git diff."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _string)


@click.group()
def k8s() -> None:
    """Kubernetes objects for apps (docs/kubernetes.md); the hosts themselves: deploy/kubernetes/."""


@k8s.command()
@click.argument("manifests", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--peer", "peers", multiple=True, metavar="NAME=LABEL=VALUE[,...]",
              help="The pods behind a host name of the allow-lists, as their labels (db=tier=database); "
              "repeatable. A policy cannot name a DNS name.")
@click.option("--unmapped", type=click.Choice(["refuse", "any-address"]), default="refuse", show_default=True,
              help="A host name no --peer maps: refuse, or allow its ports to any address (wider; noted).")
@click.option("--allow-all-egress", is_flag=True,
              help="Emit a policy allowing all egress for a pattern that allows every address and port (*://*:*).")
@click.option("--explicit-deny", is_flag=True,
              help="End each Calico policy with an explicit Deny, as the seed's wasm-to-db (only for one app "
              "per pod: Calico stops at the first Deny, so another app's policy would never match).")
@click.option("--pod-label", "pod_label", default="application=wasm", show_default=True,
              help="The labels of the wasmlet host pods the policies select.")
@click.option("--namespace", default=None, help="metadata.namespace of every object (default: none, as kubectl -n).")
@click.option("--policy-name", default=None, help="The policies' name instead of APP-egress (one Application).")
@click.option("--policies-only", is_flag=True, help="Only the NetworkPolicies, not the ConfigMap and deploy Job.")
@click.option("--image", default=f"localhost/wasmlet:{__version__}", show_default=True,
              help="The wasmlet image the deploy Job runs.")
@click.option("--admin", "admin_url", default="http://wasmlet-admin.wasmlet.svc:9180", show_default=True,
              help="The admin API the deploy Job deploys through.")
def render(manifests: tuple[Path, ...], peers: tuple[str, ...], unmapped: str, allow_all_egress: bool,
           explicit_deny: bool, pod_label: str, namespace: str | None, policy_name: str | None,
           policies_only: bool, image: str, admin_url: str) -> None:
    """Print, as one YAML stream, what each Application of MANIFEST... needs on Kubernetes.

    A ConfigMap with the Application and a Job that deploys it through the admin API, and a
    Kubernetes and a Calico NetworkPolicy from its allowedOutboundHosts.
    """
    from .plan import MAX_MANIFEST_BYTES, RenderOptions, decode_manifest, parse_labels, render_app_resources

    objects: list[dict[str, Any]] = []
    try:
        try:
            labels = parse_labels(pod_label)
        except ValueError as exc:
            raise ConfigError(f"--pod-label: {exc}") from exc
        options = RenderOptions(image=image, peers=_peers(peers), pod_labels=labels, namespace=namespace,
                                unmapped="any-address" if unmapped == "any-address" else "refuse",
                                allow_all=allow_all_egress, explicit_deny=explicit_deny, policy_name=policy_name,
                                admin_url=admin_url, policies_only=policies_only)
        if policy_name and len(manifests) > 1:
            raise ConfigError("--policy-name names one policy: give one manifest")
        for path in manifests:
            try:
                with path.open("rb") as file:
                    data = file.read(MAX_MANIFEST_BYTES + 1)
            except OSError as exc:
                raise ConfigError(f"{path}: cannot read the manifest: {exc.strerror or exc}") from exc
            objects += render_app_resources(decode_manifest(data, str(path)), str(path), options)
    except WasmletError as exc:
        _fail(exc)
    click.echo(yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, allow_unicode=True), nl=False)
