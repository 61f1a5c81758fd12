"""plan_placements: the scheduler's decision for one batch of pending tasks.

A pure function from a snapshot (nodes with their heartbeats as status,
every task as a ``Task`` with its effective state) to a Plan: which task goes to which
node and why (named scores), and which tasks no node can take and why.
Global tasks (``spec.nodeName`` already set) are checked on their node, not
placed, and go first since they have no other choice. Replicated tasks are
grouped by identical request (same service, reservations, placement,
ports), in order of first appearance; a group filters the nodes with the
static filters once (shared by groups with the same constraints), then
spreads its tasks one at a time (``spread``), each assignment updating the
node's aggregate so the next task sees it.

Leaves to others: building the task writes and committing them (the
scheduler's asyncio half), choosing which tasks to pass (pending ones
meant to run).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from controllers.scheduler import spread
from controllers.scheduler.filters import DEFAULT_PIPELINE, NO_SUITABLE_NODE, Filter, Pipeline
from controllers.scheduler.nodeinfo import NodeInfo, build_nodeinfos
from controllers.scheduler.request import ServiceKey, TaskRequest, task_key
from kubeless.api.tasks import Task

Resource = dict[str, Any]
Scores = spread.Scores


class Assignment(NamedTuple):
    task: Task
    node_id: str
    scores: Scores      # e.g. {"service_tasks": 1, "total_tasks": 5, "group": "zone=eu"}


class Unschedulable(NamedTuple):
    task: Task
    reason: str         # e.g. "no suitable node (insufficient memory on 3 nodes)"


@dataclass
class Plan:
    assignments: list[Assignment] = field(default_factory=list)
    unschedulable: list[Unschedulable] = field(default_factory=list)


def plan_placements(tasks_to_place: Sequence[Task], nodes: Sequence[Resource],
                    all_tasks: Sequence[Task], now: datetime | None = None,
                    pipeline: Pipeline = DEFAULT_PIPELINE, *,
                    infos: dict[str, NodeInfo] | None = None) -> Plan:
    """Decide a node for each task to place (``now`` is unused so far: no decision ages).

    ``infos``: the nodes' aggregates already built (``aggregates.NodeAggregates``,
    without the tasks to place), used instead of summing ``all_tasks`` over ``nodes``;
    the plan adds its assignments to them.
    """
    if infos is None:
        infos = build_nodeinfos(nodes, all_tasks,
                                exclude={task_key(t.stored) for t in tasks_to_place})
    plan = Plan()
    fixed: list[tuple[Task, TaskRequest]] = []
    groups: dict[TaskRequest, list[Task]] = {}
    for task in tasks_to_place:
        try:
            request = TaskRequest.of(task.stored)
        except ValueError as exc:
            plan.unschedulable.append(Unschedulable(task, f"invalid placement: {exc}"))
            continue
        if task.spec.get("nodeName"):
            fixed.append((task, request))
        else:
            groups.setdefault(request, []).append(task)
    order = spread.TotalOrder(infos.values())
    for task, request in fixed:
        _check_fixed(task, request, infos, pipeline, order, plan)
    batch = _Batch(infos, pipeline, order)
    for request, tasks in groups.items():
        _place_group(request, tasks, batch, plan)
    return plan


def _check_fixed(task: Task, request: TaskRequest, infos: dict[str, NodeInfo],
                 pipeline: Pipeline, order: spread.TotalOrder, plan: Plan) -> None:
    node_id = task.spec["nodeName"]
    info = infos.get(node_id)
    if info is None:
        plan.unschedulable.append(
            Unschedulable(task, f"{NO_SUITABLE_NODE} (node {node_id} not found)"))
        return
    failure = pipeline.first_failure(request, info)
    if failure is not None:
        plan.unschedulable.append(Unschedulable(task, pipeline.format({failure: 1})))
        return
    scores: Scores = {"service_tasks": info.tasks_of(request.service),
                      "total_tasks": info.total_tasks}
    info.add(request.usage)
    order.bump(info)
    plan.assignments.append(Assignment(task, node_id, scores))


# A group this many times smaller than its eligible nodes first tries TotalOrder.
_SMALL_GROUP_RATIO = 16
_SCAN_LIMIT = 64


@dataclass
class _Batch:
    """What groups of one batch share: the aggregates, the order by load, static verdicts."""

    infos: dict[str, NodeInfo]
    pipeline: Pipeline
    order: spread.TotalOrder
    eligible: dict[Hashable, list[NodeInfo]] = field(default_factory=dict)
    partitions: dict[Hashable, spread.Partition] = field(default_factory=dict)
    service_nodes: dict[ServiceKey, set[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for info in self.infos.values():
            for service in info.service_tasks:
                self.service_nodes.setdefault(service, set()).add(info.id)

    def assigned(self, service: ServiceKey, info: NodeInfo) -> None:
        self.service_nodes.setdefault(service, set()).add(info.id)

    def eligible_for(self, request: TaskRequest,
                     static: list[Filter]) -> tuple[list[NodeInfo], Hashable]:
        key = tuple((f, f.static_key(request)) for f in static)
        found = self.eligible.get(key)
        if found is None:
            found = [i for i in self.infos.values() if all(f.check(request, i) for f in static)]
            self.eligible[key] = found
        return found, key

    def partition_for(self, request: TaskRequest, eligible: list[NodeInfo],
                      eligible_key: Hashable) -> spread.Partition:
        key = (eligible_key, request.preferences)
        found = self.partitions.get(key)
        if found is None:
            found = self.partitions[key] = spread.Partition(eligible, request.preferences)
        return found

    def take_small(self, request: TaskRequest, partition: spread.Partition,
                   dynamic: list[Filter]) -> tuple[NodeInfo, Scores] | None:
        """The tree's choice when it is a node without this service's tasks, found cheaply."""
        counts: dict[tuple[str | None, ...], int] = {}
        for node_id in self.service_nodes.get(request.service, ()):
            path = partition.paths.get(node_id)
            if path is not None:
                held = self.infos[node_id].tasks_of(request.service)
                for depth in range(1, len(path) + 1):
                    counts[path[:depth]] = counts.get(path[:depth], 0) + held
        leaf, group = partition.least_loaded(counts)
        got = self.order.take_fresh(request, partition.members[leaf], dynamic, _SCAN_LIMIT)
        if got is not None and request.preferences:
            got[1]["group"] = group
        return got


def _place_group(request: TaskRequest, tasks: list[Task], batch: _Batch,
                 plan: Plan) -> None:
    enabled = batch.pipeline.enabled(request)
    static = [f for f in enabled if f.static]
    dynamic = [f for f in enabled if not f.static]
    eligible, eligible_key = batch.eligible_for(request, static)
    tree: spread.Group | None = None
    partition = None
    if eligible and len(tasks) * _SMALL_GROUP_RATIO <= len(eligible):
        partition = batch.partition_for(request, eligible, eligible_key)
    for index, task in enumerate(tasks):
        got = None
        if partition is not None and tree is None:
            got = batch.take_small(request, partition, dynamic)
        if got is None:
            if tree is None:
                tree = spread.build(request, eligible)
            got = spread.take(tree, request, dynamic)
            if got is not None:
                batch.order.bump(got[0])
        if got is None:
            reason = batch.pipeline.explain(request, batch.infos.values())
            plan.unschedulable.extend(Unschedulable(t, reason) for t in tasks[index:])
            return
        info, scores = got
        batch.assigned(request.service, info)
        plan.assignments.append(Assignment(task, info.id, scores))
