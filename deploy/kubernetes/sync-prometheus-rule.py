#!/usr/bin/env python3
"""Write monitoring/prometheusrule.yaml from deploy/prometheus/wasmlet-rules.yml.

The PrometheusRule carries the shipped alert rules unchanged (its spec.groups is the rule
file's groups); tests/kubernetes/test_manifests.py checks that the two are equal.
Run after changing the rule file:  python3 deploy/kubernetes/sync-prometheus-rule.py
"""

from __future__ import annotations

from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE.parent / "prometheus" / "wasmlet-rules.yml"
TARGET = HERE / "monitoring" / "prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/prometheus/wasmlet-rules.yml by deploy/kubernetes/sync-prometheus-rule.py:
# edit the rule file, then run the script (tests/kubernetes/test_manifests.py checks they are equal).
"""


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL expressions) as literal blocks, as the rule file writes them."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _string)


def main() -> None:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "wasmlet", "namespace": "wasmlet",
                     "labels": {"app.kubernetes.io/name": "wasmlet", "app.kubernetes.io/part-of": "wasmlet"}},
        "spec": {"groups": groups},
    }
    text = yaml.dump(rule, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    TARGET.write_text(HEADER + text, encoding="utf-8")


if __name__ == "__main__":
    main()
