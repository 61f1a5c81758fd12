"""Builders of Node and Task dicts shaped as the scheduler receives them, for tests and bench.

A node carries its heartbeat merged as ``status``; a task is the stored dict
(wrap it with ``kubeless.api.tasks.Task.of`` for the scheduler). Only the
fields the scheduler reads are filled in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Resource = dict[str, Any]


def make_node(node_id: str, *, state: str = "ready", availability: str = "active",
              role: str = "worker", labels: dict[str, str] | None = None,
              cpus: float = 4, memory: int | str = 8 << 30, hostname: str | None = None,
              os: str = "linux", arch: str = "x86_64") -> Resource:
    return {"apiVersion": "kubeless.io/v1", "kind": "Node",
            "metadata": {"name": node_id, "labels": dict(labels or {})},
            "spec": {"role": role, "availability": availability},
            "status": {"state": state, "hostname": hostname or f"host-{node_id}",
                       "address": "10.0.0.1", "capacity": {"cpus": cpus, "memory": memory},
                       "platform": {"os": os, "arch": arch}}}


def make_task(name: str, *, service: str = "web", namespace: str = "default",
              slot: int | None = 1, node: str | None = None, state: str = "pending",
              desired: str = "running", cpus: float | None = None,
              memory: int | str | None = None, constraints: Sequence[str] = (),
              preferences: Sequence[str] = (), max_replicas: int = 0,
              host_ports: Sequence[int] = (), protocol: str = "tcp",
              spec_version: int = 1) -> Resource:
    reservations: dict[str, Any] = {}
    if cpus is not None:
        reservations["cpus"] = cpus
    if memory is not None:
        reservations["memory"] = memory
    template: dict[str, Any] = {"image": f"{service}:1"}
    if reservations:
        template["resources"] = {"reservations": reservations}
    spec: dict[str, Any] = {
        "serviceName": service, "specVersion": spec_version, "template": template,
        "desiredState": desired,
        "placement": {"constraints": list(constraints),
                      "preferences": [{"spread": p} for p in preferences],
                      "maxReplicasPerNode": max_replicas},
        "ports": [{"target": 80, "published": p, "protocol": protocol, "mode": "host"}
                  for p in host_ports]}
    if slot is not None:
        spec["slot"] = slot
    if node is not None:
        spec["nodeName"] = node
    return {"apiVersion": "kubeless.io/v1", "kind": "Task",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"kubeless.io/service": service}},
            "spec": spec, "status": {"state": state}}
