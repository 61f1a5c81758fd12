"""Filters: small predicates on (task request, node), and the pipeline that runs them.

Each filter says whether it applies to a task (``enabled``), whether a node
passes (``check``), and how to tell a user about ``n`` nodes it rejected
(``explain``: "insufficient memory on 3 nodes"). A filter is ``static`` when
its verdict depends only on the node, never on the tasks placed on it, so a
plan may compute it once per batch. The pipeline runs the enabled filters
in order and, when no node passes, counts each node under the first filter
that rejected it: ``no suitable node (constraints not satisfied on 2 nodes,
insufficient memory on 1 node)``.

Leaves to others: reading requests (``request``), keeping node sums
(``nodeinfo``), choosing among passing nodes (``plan``).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import ClassVar

from kubeless.api.constraints import matches_all

from controllers.scheduler.nodeinfo import NodeInfo
from controllers.scheduler.request import TaskRequest

NO_SUITABLE_NODE = "no suitable node"


def on_nodes(what: str, n: int) -> str:
    """``"insufficient memory on 1 node"``, ``"... on 3 nodes"``."""
    return f"{what} on {n} node{'' if n == 1 else 's'}"


class Filter:
    """Base: enabled for every task; subclasses set ``reason`` and ``check``."""

    reason: ClassVar[str] = "rejected"
    static: ClassVar[bool] = False

    def enabled(self, task: TaskRequest) -> bool:
        return True

    def check(self, task: TaskRequest, info: NodeInfo) -> bool:
        raise NotImplementedError

    def explain(self, n: int) -> str:
        return on_nodes(self.reason, n)

    def static_key(self, task: TaskRequest) -> Hashable:
        """For static filters: the part of the task the verdict depends on."""
        return ()

    def __repr__(self) -> str:
        return type(self).__name__ + "()"


class ReadyFilter(Filter):
    """The node's heartbeat says ready (a down or silent node, or one whose container
    engine is down, takes no task)."""

    reason = "not ready"
    static = True

    def check(self, task: TaskRequest, info: NodeInfo) -> bool:
        return info.ready


class AvailabilityFilter(Filter):
    """Only active nodes take new tasks; pause and drain take none."""

    reason = "paused or drained"
    static = True

    def check(self, task: TaskRequest, info: NodeInfo) -> bool:
        return info.availability == "active"


class ConstraintFilter(Filter):
    reason = "constraints not satisfied"
    static = True

    def enabled(self, task: TaskRequest) -> bool:
        return bool(task.constraints)

    def check(self, task: TaskRequest, info: NodeInfo) -> bool:
        return matches_all(task.constraints, info.node)

    def static_key(self, task: TaskRequest) -> Hashable:
        return task.constraints


class ResourceFilter(Filter):
    """Reservations of the node's active tasks plus this task's fit its capacity.

    One subclass per resource, so the explanation names the resource that ran
    out; a node short of both counts under memory, the first.
    """


class MemoryFilter(ResourceFilter):
    """Memory reservations (bytes) against ``status.capacity.memory``."""

    reason = "insufficient memory"

    def enabled(self, task: TaskRequest) -> bool:
        return task.usage.memory > 0

    def check(self, task: TaskRequest, info: NodeInfo) -> bool:
        return info.reserved_memory + task.usage.memory <= info.memory


class CPUFilter(ResourceFilter):
    """CPU reservations (nano-CPUs) against ``status.capacity.cpus``."""

    reason = "insufficient CPU"

    def enabled(self, task: TaskRequest) -> bool:
        return task.usage.nano_cpus > 0

    def check(self, task: TaskRequest, info: NodeInfo) -> bool:
        return info.reserved_nano_cpus + task.usage.nano_cpus <= info.nano_cpus


RESOURCE_FILTERS: tuple[ResourceFilter, ...] = (MemoryFilter(), CPUFilter())


class MaxReplicasFilter(Filter):
    """Fewer than ``maxReplicasPerNode`` active tasks of the service on the node."""

    reason = "max replicas per node reached"

    def enabled(self, task: TaskRequest) -> bool:
        return task.max_replicas > 0

    def check(self, task: TaskRequest, info: NodeInfo) -> bool:
        return not task.max_replicas or info.tasks_of(task.service) < task.max_replicas


class HostPortFilter(Filter):
    """None of the task's host-mode published ports is already used on the node."""

    reason = "host-mode port already in use"

    def enabled(self, task: TaskRequest) -> bool:
        return bool(task.usage.host_ports)

    def check(self, task: TaskRequest, info: NodeInfo) -> bool:
        used = info.host_ports
        return not any(port in used for port in task.usage.host_ports)


class Pipeline:
    """Filters in order; static ones should come first (a plan relies on it for speed only)."""

    def __init__(self, filters: Sequence[Filter]) -> None:
        self.filters = tuple(filters)

    def enabled(self, task: TaskRequest) -> tuple[Filter, ...]:
        return tuple(f for f in self.filters if f.enabled(task))

    def first_failure(self, task: TaskRequest, info: NodeInfo) -> Filter | None:
        """The first enabled filter that rejects the node, or None when it passes all."""
        for f in self.filters:
            if f.enabled(task) and not f.check(task, info):
                return f
        return None

    def passes(self, task: TaskRequest, info: NodeInfo) -> bool:
        return self.first_failure(task, info) is None

    def failures(self, task: TaskRequest, infos: Iterable[NodeInfo]) -> dict[Filter, int]:
        """How many nodes each filter rejected first (nodes that pass are not counted)."""
        enabled = self.enabled(task)
        counts: dict[Filter, int] = {}
        for info in infos:
            for f in enabled:
                if not f.check(task, info):
                    counts[f] = counts.get(f, 0) + 1
                    break
        return counts

    def format(self, failures: Mapping[Filter, int]) -> str:
        """``no suitable node (a on 2 nodes, b on 1 node)``, in pipeline order."""
        parts = [f.explain(failures[f]) for f in self.filters if failures.get(f)]
        parts += [f.explain(n) for f, n in failures.items() if n and f not in self.filters]
        return f"{NO_SUITABLE_NODE} ({', '.join(parts)})" if parts else NO_SUITABLE_NODE

    def explain(self, task: TaskRequest, infos: Iterable[NodeInfo]) -> str:
        """Why no node takes the task (meaningful when none passes)."""
        infos = list(infos)
        if not infos:
            return f"{NO_SUITABLE_NODE} (no nodes in the cluster)"
        return self.format(self.failures(task, infos))


DEFAULT_PIPELINE = Pipeline((ReadyFilter(), AvailabilityFilter(), ConstraintFilter(),
                             *RESOURCE_FILTERS, MaxReplicasFilter(), HostPortFilter()))
