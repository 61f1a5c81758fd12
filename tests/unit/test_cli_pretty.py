"""service inspect --pretty and node inspect --pretty in docker's layout (kubeless_cli.pretty)."""

from __future__ import annotations

import re

from kubeless_cli.pretty import node_pretty, service_pretty


SERVICE = {
    "metadata": {"name": "web", "namespace": "default", "uid": "u-1", "labels": {"tier": "front"}},
    "spec": {"mode": "replicated", "replicas": 3,
             "placement": {"constraints": ["node.role==worker"]},
             "update": {"parallelism": 1, "failureAction": "pause", "order": "start-first"},
             "template": {"image": "nginx:1.25", "env": {"A": "1"},
                          "resources": {"limits": {"cpus": 0.5, "memory": "64Mi"}}},
             "ports": [{"target": 80, "published": 8080}]},
    "status": {"runningReplicas": 2},
}


def squeezed(text: str) -> list[str]:
    """The lines with the padding after each label's colon made one space (the column
    docker aligns values in is checked apart)."""
    return [re.sub(r":\s+", ": ", line) for line in text.splitlines()]


def test_values_start_in_one_column() -> None:
    valued = [m for m in (re.match(r"^( *[^:]+:\s+)\S", line)
                          for line in service_pretty(SERVICE).splitlines()) if m]
    assert len(valued) > 10 and len({len(m.group(1)) for m in valued}) == 1


def test_a_service_reads_as_dockers() -> None:
    lines = squeezed(service_pretty(SERVICE))
    assert lines[:5] == ["ID: u-1", "Name: web", "Namespace: default", "Labels:", " tier=front"]
    for wanted in ("Service Mode: Replicated", " Replicas: 3", "Placement:",
                   " Constraints: [node.role==worker]", "UpdateConfig:", " On failure: pause",
                   " Update order: start-first", "ContainerSpec:", " Image: nginx:1.25",
                   " Env: A=1", "Resources:", " Limits:", "  CPU: 0.5", "  Memory: 64Mi",
                   "Ports:", " PublishedPort: 8080", "  TargetPort: 80", "  PublishMode: ingress"):
        assert wanted in lines, (wanted, lines)
    assert "RollbackConfig:" not in lines  # only what is set, as docker


def test_a_global_service_has_no_replicas_line() -> None:
    spec = {**SERVICE["spec"], "mode": "global"}  # type: ignore[dict-item]
    text = service_pretty({**SERVICE, "spec": spec})
    assert "Service Mode: Global" in squeezed(text) and "Replicas" not in text


def test_a_node_reads_as_dockers() -> None:
    node = {"metadata": {"name": "m1", "creationTimestamp": "2026-12-02T10:00:00+00:00"},
            "spec": {"role": "manager", "availability": "active"},
            "status": {"state": "ready", "hostname": "host-1", "address": "10.0.0.1",
                       "platform": {"os": "linux", "arch": "x86_64"},
                       "capacity": {"cpus": 2, "memory": 2087654321},
                       "engineVersion": "26.1.5"}}
    assert squeezed(node_pretty(node, "Leader")) == [
        "ID: m1", "Hostname: host-1", "Joined at: 2026-12-02T10:00:00+00:00",
        "Status:", " State: Ready", " Availability: Active", " Address: 10.0.0.1",
        "Manager Status:", " Raft Status: Reachable", " Leader: Yes",
        "Platform:", " Operating System: linux", " Architecture: x86_64",
        "Resources:", " CPUs: 2", " Memory: 1.944GiB", "Engine Version: 26.1.5"]
    worker = {**node, "spec": {"role": "worker"}, "status": {"state": "down"}}
    text = node_pretty(worker, "")
    assert " State:" in text and "Down" in text and "Manager Status" not in text
