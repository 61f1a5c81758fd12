"""``LoadPublisher``: measures each local node's tasks every period and puts its load report.

Every ``period`` seconds (``--load-period``) it takes one sample per node: its
runtime's usage of the tasks its worker has running (``Runtime.usage``: CPU seconds
in total, memory now), the host's /proc figures, and the mesh's connections per
endpoint task. Two successive samples make a report (``kubeless.api.load``): cores
and connections per second are the rates between them (``rates``), a task appears
once it has two samples, and a node's first sample only starts the count. The
reports of every local node go in one transaction per 100 (hollow nodes: one small
write per period, never one per task), each bound to the heartbeat lease, so a
node whose agent is gone loses its report with its heartbeat. A failed write is
logged, counted and simply tried again with the next period's figures; it never
stops the agent.

Hollow nodes share the real host: each reports as its host the sum of its own tasks
over the capacity it advertises, and none sets the per-task or host metrics (a
thousand nodes' tasks would be a cardinality the process metrics avoid).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubeless.api.load import HostLoad, TaskLoad, report_value
from kubeless.api.tasks import Task as TaskView
from kubeless.store import Etcd, Keyspace, Put, StoreError
from kubeless.store.codec import encode_json

from kubeless_agent import metrics
from kubeless_agent.load.procfs import HostReading, busy_cores, read_host
from kubeless_agent.load.rates import Sample, rates
from kubeless_agent.runtime import Task, Usage

log = logging.getLogger(__name__)
BATCH = 100  # reports per transaction (etcd's default limit is 128 operations)
NO_HOST = HostLoad(0.0, 0, 0.0, 0)


class MeasuresUsage(Protocol):
    async def usage(self, task_ids: Sequence[str]) -> dict[str, Usage]: ...


class CountsConnections(Protocol):
    async def connections_by_task(self) -> dict[str, float]: ...


@dataclass
class NodeLoad:
    """One local node: where its figures come from, and its last sample."""

    node_id: str
    runtime: MeasuresUsage
    running: Callable[[], Mapping[str, Task]]  # the worker's running tasks
    capacity: tuple[float, int] | None = None  # hollow: (cpus, memory) it advertises
    cpu: Sample | None = None  # the last sample of its tasks' CPU seconds
    shown: set[tuple[str, str, str]] = field(default_factory=set)  # task metric labels set


class LoadPublisher:
    def __init__(self, etcd: Etcd, keys: Keyspace, nodes: Sequence[NodeLoad],
                 lease: Callable[[], int], period: float, *,
                 mesh: CountsConnections | None = None,
                 host: Callable[[], HostReading] | None = read_host, set_metrics: bool = True,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.etcd = etcd
        self.keys = keys
        self.nodes = list(nodes)
        self.lease = lease
        self.period = period
        self.mesh = mesh
        self.read_host = host
        self.set_metrics = set_metrics
        self.clock = clock
        self.wall = wall
        self._host: HostReading | None = None  # the last reading
        self._no_host_said = False
        self._connections: Sample | None = None
        self._failing = False
        self.published = 0  # reports put (tests wait on it)

    async def run(self) -> None:
        """Sample and publish every period; returns only when cancelled."""
        while True:
            await self.tick()
            await asyncio.sleep(self.period)

    async def tick(self) -> None:
        """One sample of everything; the reports of the nodes that had one before."""
        reports = await self.measure()
        if reports:
            await self._put(reports)

    async def measure(self) -> dict[str, dict[str, Any]]:
        """node -> its report, for every node with a previous sample."""
        timestamp = self.wall()
        host = await self._host_load()
        connections = await self._connection_rates()
        found = {}
        for i, node in enumerate(self.nodes):
            tasks = await self._task_loads(node)
            if tasks is None:
                continue
            node_host = host if node.capacity is None else _sum_of(tasks, node.capacity)
            found[node.node_id] = report_value(node.node_id, timestamp, self.period, node_host,
                                               tasks, connections if i == 0 else {})
            self._show(node, tasks, node_host)
        return found

    # -- the figures -----------------------------------------------------------------

    async def _task_loads(self, node: NodeLoad) -> dict[str, TaskLoad] | None:
        """Each running task's cores since the last sample and memory; None at the first."""
        running = node.running()
        try:
            used = await node.runtime.usage(sorted(running))
        except Exception as err:  # a runtime that cannot say: nothing measured this time
            log.warning("load: measuring the tasks of %s: %s", node.node_id, err)
            used = {}
        sample = Sample(self.clock(), {tid: cpu for tid, (cpu, _) in used.items()})
        before, node.cpu = node.cpu, sample
        if before is None:
            return None
        loads = {}
        for tid, cores in rates(before, sample).items():
            view = TaskView.of(running[tid]) if tid in running else None
            if view is not None:
                loads[tid] = TaskLoad(view.namespace, view.service_name, cores, used[tid][1])
        return loads

    async def _host_load(self) -> HostLoad:
        """The host's figures since its last reading (CPU 0 at the first; all 0 without
        /proc, said once)."""
        if self.read_host is None:
            return NO_HOST
        try:
            reading = await asyncio.to_thread(self.read_host)
        except (OSError, ValueError) as err:
            if self._host is not None or not self._no_host_said:
                log.warning("load: reading the host's /proc: %s", err)
            self._host, self._no_host_said = None, True
            return NO_HOST
        before, self._host = self._host, reading
        cores = busy_cores(before.cpu, reading.cpu, reading.cpus) if before else None
        return HostLoad(cores or 0.0, reading.memory_used, reading.cpus, reading.memory_total)

    async def _connection_rates(self) -> dict[str, float]:
        """New connections per second this node's mesh sent to each endpoint task (> 0)."""
        if self.mesh is None:
            return {}
        try:
            counts = await self.mesh.connections_by_task()
        except Exception as err:  # the table could not be listed: none this time
            log.warning("load: reading the mesh's connection counts: %s", err)
            counts = {}
        sample = Sample(self.clock(), counts)
        before, self._connections = self._connections, sample
        return {tid: r for tid, r in rates(before, sample).items() if r > 0}

    # -- writing ------------------------------------------------------------------------

    async def _put(self, reports: dict[str, dict[str, Any]]) -> None:
        lease = self.lease()
        if not lease:
            return  # no heartbeat lease yet: the next period's
        puts = [Put(self.keys.load(node), encode_json(value), lease)
                for node, value in sorted(reports.items())]
        try:
            for start in range(0, len(puts), BATCH):
                await self.etcd.txn([], puts[start:start + BATCH])
                self.published += len(puts[start:start + BATCH])
        except StoreError as err:
            metrics.LOAD_REPORT_FAILURES.inc()
            if not self._failing:
                log.warning("load: writing the load reports: %s; trying again every period",
                            err)
            self._failing = True
            return
        if self._failing:
            log.info("load: load reports written again")
        self._failing = False

    def _show(self, node: NodeLoad, tasks: Mapping[str, TaskLoad], host: HostLoad) -> None:
        if not self.set_metrics:
            return
        shown = set()
        for tid, t in tasks.items():
            labels = (t.namespace, t.service, tid)
            metrics.TASK_CPU.labels(*labels).set(t.cpu)
            metrics.TASK_MEMORY.labels(*labels).set(t.memory)
            shown.add(labels)
        for labels in node.shown - shown:  # the task went (or could not be measured)
            metrics.TASK_CPU.remove(*labels)
            metrics.TASK_MEMORY.remove(*labels)
        node.shown = shown
        metrics.HOST_CPU.set(host.cpu)
        metrics.HOST_CPUS.set(host.cpus)
        metrics.HOST_MEMORY.set(host.memory)
        metrics.HOST_MEMORY_TOTAL.set(host.memory_total)


def _sum_of(tasks: Mapping[str, TaskLoad], capacity: tuple[float, int]) -> HostLoad:
    """A hollow node's host: its own tasks over the capacity it advertises."""
    return HostLoad(sum(t.cpu for t in tasks.values()), sum(t.memory for t in tasks.values()),
                    capacity[0], capacity[1])
