"""NodeAggregates: what occupying tasks hold on each node, kept current task by task.

``build_nodeinfos`` sums every task of the cluster on each scheduling pass;
at 10,000 tasks that is most of a pass. This index keeps the same sums
incrementally instead: the caller reports each task whose value (or agent
report) changed with ``update``, and ``infos`` hands out fresh NodeInfos for
a pass, capacity from the nodes given and sums copied from the index, so the
plan can add to them freely. Tasks waiting for placement are left out, as
``build_nodeinfos`` leaves out the tasks it is asked to place.

Leaves to others: deciding which tasks occupy a node (``Task.occupies``),
noticing which tasks changed (the cluster view), planning (``plan``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kubeless.api.tasks import Task

from controllers.scheduler.nodeinfo import NodeInfo
from controllers.scheduler.request import Usage

Resource = dict[str, Any]


class NodeAggregates:
    def __init__(self) -> None:
        self._held: dict[str, tuple[str, Usage]] = {}  # task key -> (node id, usage)
        self._sums: dict[str, NodeInfo] = {}            # node id -> sums (no node, no capacity)

    def __len__(self) -> int:
        """How many tasks the sums count."""
        return len(self._held)

    def update(self, key: str, task: Task | None, waiting: bool = False) -> None:
        """The task under ``key`` is now ``task`` (None: gone); ``waiting``: it waits for
        the scheduler, so it holds nothing yet."""
        before = self._held.pop(key, None)
        if before is not None:
            sums = self._sums[before[0]]
            sums.remove(before[1])
            if sums.total_tasks <= 0:
                del self._sums[before[0]]
        if task is None or waiting or not task.occupies:
            return
        node = task.spec["nodeName"]
        usage = Usage.lenient(task.stored)
        self._held[key] = (node, usage)
        held = self._sums.get(node)
        if held is None:
            held = self._sums[node] = NodeInfo({}, node)
        held.add(usage)

    def infos(self, nodes: Iterable[Resource]) -> dict[str, NodeInfo]:
        """Fresh NodeInfos by node id for one pass, as ``build_nodeinfos`` would make them."""
        out: dict[str, NodeInfo] = {}
        for node in nodes:
            info = NodeInfo.of(node)
            sums = self._sums.get(info.id)
            if sums is not None:
                info.reserved_nano_cpus = sums.reserved_nano_cpus
                info.reserved_memory = sums.reserved_memory
                info.host_ports = dict(sums.host_ports)
                info.service_tasks = dict(sums.service_tasks)
                info.total_tasks = sums.total_tasks
            out[info.id] = info
        return out
