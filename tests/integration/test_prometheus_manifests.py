"""manifests/prometheus/ and manifests/grafana/ as Prometheus and Grafana would read them.

``promtool check config`` on prometheus.yml (and through it rules.yml),
``promtool test rules`` on rules_test.yml, and every metric that the rules and
the Grafana dashboard query is one the code declares (a Counter, Gauge or
Histogram, or a collector's metric family, in controllers/ or kubeless_agent/),
with the suffixes Prometheus gives it (``_total``, ``_bucket``...). Under
CI=true a missing promtool fails, never skips.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "manifests" / "prometheus"
DASHBOARD = ROOT / "manifests" / "grafana" / "kubeless.json"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
needs_promtool = pytest.mark.skipif(
    not os.path.exists(PROMTOOL) and os.environ.get("CI") != "true",
    reason="promtool not installed (make deps installs Debian's prometheus; under CI=true "
           "this fails)")

DECLARED = re.compile(r'\b(Counter|Gauge|Histogram|CounterMetricFamily|GaugeMetricFamily)'
                      r'\(\s*"(kubeless_\w+)"')
REFERENCED = re.compile(r"(?<![\w:])(kubeless_\w+)")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60,
                          cwd=PROMETHEUS)


@needs_promtool
def test_promtool_checks_the_config_and_its_rules() -> None:
    res = promtool("check", "config", "prometheus.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "rules.yml" in res.stdout


@needs_promtool
def test_promtool_tests_the_rules() -> None:
    res = promtool("test", "rules", "rules_test.yml")
    assert res.returncode == 0, res.stdout + res.stderr


def exposed_names() -> set[str]:
    """Every series name the code's metrics are scraped under."""
    names: set[str] = set()
    for package in ("controllers", "kubeless_agent", "kubeless"):
        for path in (ROOT / package).rglob("*.py"):
            for kind, name in DECLARED.findall(path.read_text()):
                base = name.removesuffix("_total")
                if kind.startswith("Counter"):
                    names |= {f"{base}_total"}
                elif kind == "Histogram":
                    names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
                else:
                    names.add(name)
    return names


def expressions(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in ("expr",) and isinstance(inner, str):
                yield inner
            else:
                yield from expressions(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from expressions(inner)


def referenced() -> dict[str, set[str]]:
    """file -> the kubeless_ metric names its PromQL expressions use."""
    docs = {"rules.yml": yaml.safe_load((PROMETHEUS / "rules.yml").read_text()),
            "kubeless.json": json.loads(DASHBOARD.read_text())}
    return {name: {m for e in expressions(doc) for m in REFERENCED.findall(e)}
            for name, doc in docs.items()}


def test_rules_and_dashboard_query_metrics_that_exist() -> None:
    exposed = exposed_names()
    assert "kubeless_service_desired_tasks" in exposed and \
        "kubeless_scheduler_placements_total" in exposed, sorted(exposed)
    for name, used in referenced().items():
        assert used, f"{name} queries no kubeless metric"
        missing = sorted(used - exposed)
        assert not missing, f"{name} queries metrics no code declares: {missing}"


def test_the_dashboard_has_the_four_rows_and_a_prometheus_input() -> None:
    dash = json.loads(DASHBOARD.read_text())
    rows = [p["title"] for p in dash["panels"] if p["type"] == "row"]
    assert rows == ["Cluster", "Services", "Scheduler", "Mesh"]
    assert [i["pluginId"] for i in dash["__inputs"]] == ["prometheus"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
