"""Service, Task and Node dicts for the decision tests of replication, health and rollout.

One service ``web`` (uid ``UID``, a zone==eu constraint, port 8080), its tasks
as ``kubeless.api.tasks.Task`` (with their effective status) as ``ClusterView``
gives them to the decisions, nodes in a zone, ``NOW`` as the decisions' clock, and ``ids`` for
the names a decision gives new tasks.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator

from kubeless.api.tasks import Task

Resource = dict[str, Any]
NOW = 1_000_000.0
UID = "uid-web"


def service(replicas: int = 3, *, mode: str = "replicated", restart: dict[str, Any] | None = None,
            generation: int = 1, history: int = 5, uid: str = UID) -> Resource:
    policy = {"condition": "any", "delay": "0s", "maxAttempts": 0, "window": "0s", **(restart or {})}
    return {"apiVersion": "kubeless.io/v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "uid": uid,
                         "generation": generation, "labels": {"app": "web"}},
            "spec": {"mode": mode, "replicas": replicas, "taskHistoryLimit": history,
                     "template": {"image": "web:1", "restartPolicy": policy},
                     "placement": {"constraints": ["node.labels.zone==eu"]},
                     "ports": [{"target": 80, "published": 8080}]}}


def task(name: str, *, slot: int | None = None, node: str | None = None, state: str = "running",
         desired: str = "running", ts: float = NOW - 100, version: int = 1, uid: str = UID,
         annotations: dict[str, str] | None = None) -> Task:
    spec: Resource = {"serviceName": "web", "serviceUid": uid, "specVersion": version,
                      "template": {"image": "web:1"}, "desiredState": desired}
    if slot is not None:
        spec["slot"] = slot
    if node is not None:
        spec["nodeName"] = node
    meta: Resource = {"name": name, "namespace": "default", "resourceVersion": "7"}
    if annotations:
        meta["annotations"] = annotations
    return with_effective({"apiVersion": "kubeless.io/v1", "kind": "Task", "metadata": meta,
                           "spec": spec, "status": {"state": state, "timestamp": ts}}, None)


def node(name: str, *, state: str = "ready", availability: str = "active",
         zone: str = "eu") -> Resource:
    return {"apiVersion": "kubeless.io/v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"zone": zone}},
            "spec": {"role": "worker", "availability": availability}, "status": {"state": state}}


def in_eu(n: Resource) -> bool:
    return bool(n["metadata"]["labels"].get("zone") == "eu")


def with_effective(t: Resource, report: Resource | None) -> Task:
    return Task.of(t, report)


def ids(prefix: str = "new") -> Callable[[], str]:
    counter: Iterator[int] = itertools.count(1)
    return lambda: f"{prefix}{next(counter)}"
