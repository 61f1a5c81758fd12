"""NodeInfo: one node and what its active tasks hold on it, kept by add/remove.

The aggregate (reserved nano-CPUs and memory, used host-mode ports, tasks
per service, total active tasks) is what the dynamic filters and the spread
read; ``add``/``remove`` keep it current as a plan assigns tasks, so the next
task of the same batch sees the last one. ``build_nodeinfos`` makes them all
from a snapshot in O(nodes + tasks).

Leaves to others: deciding which tasks occupy a node (``Task.occupies``),
judging nodes (``filters``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from controllers.scheduler.request import (
    NANO,
    HostPort,
    ServiceKey,
    TaskKey,
    Usage,
    memory_bytes,
    task_key,
)
from kubeless.api.tasks import Task

Resource = dict[str, Any]


def _capacity(node: Resource) -> tuple[int, int]:
    """(nano-CPUs, memory bytes) the node's heartbeat reports; 0 when unknown or unreadable."""
    capacity = (node.get("status") or {}).get("capacity") or {}
    try:
        cpus = round(float(capacity.get("cpus") or 0) * NANO)
    except (TypeError, ValueError):
        cpus = 0
    try:
        memory = memory_bytes(capacity.get("memory") or 0)
    except (TypeError, ValueError):
        memory = 0
    return cpus, memory


@dataclass(slots=True, eq=False)
class NodeInfo:
    node: Resource
    id: str = ""
    nano_cpus: int = 0                  # capacity
    memory: int = 0                     # capacity, bytes
    reserved_nano_cpus: int = 0
    reserved_memory: int = 0
    host_ports: dict[HostPort, int] = field(default_factory=dict)
    service_tasks: dict[ServiceKey, int] = field(default_factory=dict)
    total_tasks: int = 0

    @classmethod
    def of(cls, node: Resource) -> NodeInfo:
        cpus, memory = _capacity(node)
        return cls(node, (node.get("metadata") or {}).get("name", ""), cpus, memory)

    @property
    def ready(self) -> bool:
        """Heartbeat alive and the runtime (Docker Engine) not known to be down."""
        status = self.node.get("status") or {}
        return status.get("state") == "ready" and status.get("runtimeState") != "down"

    @property
    def availability(self) -> str:
        return str((self.node.get("spec") or {}).get("availability", "active"))

    def tasks_of(self, service: ServiceKey) -> int:
        return self.service_tasks.get(service, 0)

    def add(self, usage: Usage) -> None:
        self.reserved_nano_cpus += usage.nano_cpus
        self.reserved_memory += usage.memory
        for port in usage.host_ports:
            self.host_ports[port] = self.host_ports.get(port, 0) + 1
        self.service_tasks[usage.service] = self.service_tasks.get(usage.service, 0) + 1
        self.total_tasks += 1

    def remove(self, usage: Usage) -> None:
        self.reserved_nano_cpus -= usage.nano_cpus
        self.reserved_memory -= usage.memory
        for port in usage.host_ports:
            _decrement(self.host_ports, port)
        _decrement(self.service_tasks, usage.service)
        self.total_tasks -= 1

    def add_task(self, task: Resource) -> None:
        self.add(Usage.lenient(task))

    def remove_task(self, task: Resource) -> None:
        self.remove(Usage.lenient(task))


def _decrement(counts: dict[Any, int], key: Any) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


def build_nodeinfos(nodes: Iterable[Resource], tasks: Iterable[Task],
                    exclude: Collection[TaskKey] = ()) -> dict[str, NodeInfo]:
    """NodeInfos by node id, with every occupying task (but those in ``exclude``) added."""
    infos = {info.id: info for info in map(NodeInfo.of, nodes)}
    for task in tasks:
        if not task.occupies:
            continue
        info = infos.get(task.spec["nodeName"])
        if info is not None and (not exclude or task_key(task.stored) not in exclude):
            info.add(Usage.lenient(task.stored))
    return infos
