"""Filters one by one (enabled, check, explain) and the pipeline's explanation."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.scheduler.filters import (
    DEFAULT_PIPELINE,
    AvailabilityFilter,
    ConstraintFilter,
    CPUFilter,
    Filter,
    HostPortFilter,
    MaxReplicasFilter,
    MemoryFilter,
    ReadyFilter,
)
from controllers.scheduler.nodeinfo import NodeInfo
from controllers.scheduler.request import TaskRequest
from lab.synthetic import make_node, make_task


def info_with(node: dict[str, Any], *running: dict[str, Any]) -> NodeInfo:
    info = NodeInfo.of(node)
    for task in running:
        info.add_task(task)
    return info


def request(**kwargs: Any) -> TaskRequest:
    return TaskRequest.of(make_task("new", **kwargs))


CASES = [
    # (id, filter, task kwargs, node, running tasks on it, enabled, passes)
    ("ready", ReadyFilter(), {}, make_node("n"), [], True, True),
    ("down", ReadyFilter(), {}, make_node("n", state="down"), [], True, False),
    ("unknown", ReadyFilter(), {}, make_node("n", state="unknown"), [], True, False),
    ("active", AvailabilityFilter(), {}, make_node("n"), [], True, True),
    ("pause", AvailabilityFilter(), {}, make_node("n", availability="pause"), [], True, False),
    ("drain", AvailabilityFilter(), {}, make_node("n", availability="drain"), [], True, False),
    ("no-constraints", ConstraintFilter(), {}, make_node("n"), [], False, True),
    ("constraint-met", ConstraintFilter(), {"constraints": ["node.labels.zone==eu"]},
     make_node("n", labels={"zone": "eu"}), [], True, True),
    ("constraint-unmet", ConstraintFilter(), {"constraints": ["node.labels.zone==eu"]},
     make_node("n"), [], True, False),
    ("no-memory-reservation", MemoryFilter(), {}, make_node("n", memory=0), [], False, True),
    ("memory-fits-exactly", MemoryFilter(), {"memory": "512Mi"}, make_node("n", memory="1Gi"),
     [make_task("r", node="n", state="running", memory="512Mi")], True, True),
    ("memory-short", MemoryFilter(), {"memory": "513Mi"}, make_node("n", memory="1Gi"),
     [make_task("r", node="n", state="running", memory="512Mi")], True, False),
    ("memory-ignores-stopped", MemoryFilter(), {"memory": "1Gi"}, make_node("n", memory="1Gi"),
     [], True, True),
    ("cpu-fits-exactly", CPUFilter(), {"cpus": 0.1}, make_node("n", cpus=1),
     [make_task(f"r{i}", node="n", state="running", cpus=0.1) for i in range(9)], True, True),
    ("cpu-short", CPUFilter(), {"cpus": 0.5}, make_node("n", cpus=1),
     [make_task("r", node="n", state="running", cpus=0.75)], True, False),
    ("no-max-replicas", MaxReplicasFilter(), {}, make_node("n"), [], False, True),
    ("below-max", MaxReplicasFilter(), {"max_replicas": 2}, make_node("n"),
     [make_task("r", node="n", state="running")], True, True),
    ("at-max", MaxReplicasFilter(), {"max_replicas": 2}, make_node("n"),
     [make_task(f"r{i}", node="n", state="running") for i in range(2)], True, False),
    ("max-counts-own-service-only", MaxReplicasFilter(), {"max_replicas": 1}, make_node("n"),
     [make_task("r", service="db", node="n", state="running")], True, True),
    ("no-host-ports", HostPortFilter(), {}, make_node("n"), [], False, True),
    ("host-port-free", HostPortFilter(), {"host_ports": [80]}, make_node("n"),
     [make_task("r", service="db", node="n", state="running", host_ports=[81])], True, True),
    ("host-port-used", HostPortFilter(), {"host_ports": [80]}, make_node("n"),
     [make_task("r", service="db", node="n", state="running", host_ports=[80])], True, False),
    ("host-port-other-protocol", HostPortFilter(), {"host_ports": [53], "protocol": "udp"},
     make_node("n"), [make_task("r", node="n", state="running", host_ports=[53])], True, True),
]


@pytest.mark.parametrize(("flt", "task", "node", "running", "enabled", "passes"),
                         [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_filter(flt: Filter, task: dict[str, Any], node: dict[str, Any],
                running: list[dict[str, Any]], enabled: bool, passes: bool) -> None:
    req = request(**task)
    assert flt.enabled(req) is enabled
    assert flt.check(req, info_with(node, *running)) is passes


def test_ingress_ports_take_no_host_port() -> None:
    task = make_task("new", host_ports=[80])
    task["spec"]["ports"][0]["mode"] = "ingress"
    assert not HostPortFilter().enabled(TaskRequest.of(task))


@pytest.mark.parametrize(
    ("flt", "one", "three"),
    [
        (ReadyFilter(), "not ready on 1 node", "not ready on 3 nodes"),
        (AvailabilityFilter(), "paused or drained on 1 node", "paused or drained on 3 nodes"),
        (ConstraintFilter(), "constraints not satisfied on 1 node",
         "constraints not satisfied on 3 nodes"),
        (MemoryFilter(), "insufficient memory on 1 node", "insufficient memory on 3 nodes"),
        (CPUFilter(), "insufficient CPU on 1 node", "insufficient CPU on 3 nodes"),
        (MaxReplicasFilter(), "max replicas per node reached on 1 node",
         "max replicas per node reached on 3 nodes"),
        (HostPortFilter(), "host-mode port already in use on 1 node",
         "host-mode port already in use on 3 nodes"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Filter) else None,
)
def test_explain(flt: Filter, one: str, three: str) -> None:
    assert (flt.explain(1), flt.explain(3)) == (one, three)


def test_pipeline_counts_each_node_under_its_first_failure() -> None:
    req = request(constraints=["node.labels.zone==eu"], memory="2Gi")
    infos = [NodeInfo.of(n) for n in (
        make_node("a", memory="1Gi"),                          # no label and short: constraint
        make_node("b"),                                        # no label
        make_node("c", labels={"zone": "eu"}, memory="1Gi"),   # short of memory
        make_node("d", labels={"zone": "eu"}, cpus=0, memory="1Gi"),
    )]
    assert DEFAULT_PIPELINE.explain(req, infos) == (
        "no suitable node (constraints not satisfied on 2 nodes, insufficient memory on 2 nodes)")


def test_pipeline_orders_reasons_by_filter_and_memory_before_cpu() -> None:
    req = request(cpus=8, memory="16Gi")
    infos = [NodeInfo.of(n) for n in (
        make_node("a", cpus=1, memory="1Gi"),
        make_node("b", cpus=1, memory="32Gi"),
        make_node("c", state="down"),
        make_node("d", availability="drain", state="down"),
    )]
    assert DEFAULT_PIPELINE.explain(req, infos) == (
        "no suitable node (not ready on 2 nodes, insufficient memory on 1 node, "
        "insufficient CPU on 1 node)")


def test_pipeline_with_no_nodes() -> None:
    assert DEFAULT_PIPELINE.explain(request(), []) == "no suitable node (no nodes in the cluster)"
