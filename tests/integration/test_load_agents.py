"""Load reports of in-process agents on real etcd, each under its confined identity.

The process runtime (``node:<id>``): a busy-looping task and an idle one run as local
processes; the report (every 0.5 s) shows the busy one busy (above 0.3 cores) and the
idle one near zero, with their RSS, bound to the heartbeat lease. The CPU of a task is its
whole session's: the busy loop runs in a child of the wrapper.

Hollow nodes (the fake runtime, a hollow group's identity): a task whose template says
``KUBELESS_FAKE_CPU`` reports that load, ``set_load`` changes it, and the node's host
is the sum of its tasks over the capacity it advertises; every node's report goes in
one transaction per period.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubeless import store
from kubeless.api.load import LoadReport, parse_report
from kubeless_agent import running_agent
from kubeless_agent.main import AgentProcess
from kubeless_agent.runtime.fake import FakeRuntime
from lab.waiting import until
from tests.support.agents import agent_on
from tests.support.etcd_server import EtcdCluster
from tests.support.workloads import assign, reaches, task, unique_node

pytestmark = pytest.mark.integration
BUSY_CORES = 0.3  # a busy loop on a loaded 2-core host (tests/integration/test_load_docker.py)


@pytest.fixture
def node() -> str:
    return unique_node("ld")


@pytest.fixture
async def agent(etcd_cluster: EtcdCluster, prefix: str, node: str,
                tmp_path: Path) -> AsyncIterator[AgentProcess]:
    config = agent_on(etcd_cluster, prefix, node, runtime="process", heartbeat_ttl=3,
                      load_period=0.5, mesh=False, dns_addrs=(), logs_port=None,
                      runtime_options=(("state_dir", str(tmp_path)),))
    async with running_agent(config) as a:
        yield a
        for worker in a.workers.values():  # leave no process behind
            for rec in list(worker.records.values()):
                if rec.task is not None:
                    await a.runtimes[node].remove(rec.task)


async def test_busy_and_idle_processes(agent: AgentProcess, rstore: store.ResourceStore,
                                       node: str) -> None:
    busy = task("busy", 1, node, command=["sh", "-c", "while :; do :; done"])
    idle = task("idle", 1, node, command=["sleep", "60"])
    for t in (busy, idle):
        await assign(rstore, t)
        await reaches(rstore, t, "running")

    async def measured() -> LoadReport | None:
        kv, _ = await rstore.etcd.get(rstore.keys.load(node))
        report = parse_report(json.loads(kv.value)) if kv is not None else None
        if report is None:
            return None
        b = report.tasks.get(busy["metadata"]["name"])
        i = report.tasks.get(idle["metadata"]["name"])
        return report if b and i and b.cpu > BUSY_CORES and i.cpu < 0.1 else None

    report = await until(measured, 60, "the busy process busy, the idle one near 0")
    assert report.tasks[busy["metadata"]["name"]].memory > 0
    assert report.tasks[idle["metadata"]["name"]].service == "idle"
    kv, _ = await rstore.etcd.get(rstore.keys.load(node))
    assert kv is not None and kv.lease == agent.lease_id != 0


async def test_hollow_nodes_report_the_load_their_tasks_are_given(
        etcd_cluster: EtcdCluster, prefix: str, rstore: store.ResourceStore) -> None:
    name = unique_node("hl")
    config = agent_on(etcd_cluster, prefix, name, hollow_nodes=3, load_period=0.5, cpus=4,
                      memory=8 << 30)
    async with running_agent(config) as agent:
        node = agent.node_ids[1]
        t = task("web", 1, node, env={"KUBELESS_FAKE_CPU": "0.7", "KUBELESS_FAKE_MEMORY": "64Mi"})
        tid = t["metadata"]["name"]
        await assign(rstore, t)
        await reaches(rstore, t, "running")

        async def load_is(cpu: float) -> LoadReport | None:
            kv, _ = await rstore.etcd.get(rstore.keys.load(node))
            report = parse_report(json.loads(kv.value)) if kv is not None else None
            found = report.tasks.get(tid) if report is not None else None
            return report if found and abs(found.cpu - cpu) < 0.05 else None

        report = await until(lambda: load_is(0.7), 30, "the fake task's 0.7 cores")
        assert report.tasks[tid].memory == 64 << 20
        assert (report.host.cpus, report.host.memory_total) == (4, 8 << 30)
        assert abs(report.host.cpu - 0.7) < 0.05 and report.host.memory == 64 << 20
        runtime = agent.runtimes[node]
        assert isinstance(runtime, FakeRuntime)
        runtime.set_load(tid, cpu=2.0)
        await until(lambda: load_is(2.0), 30, "the fake task's 2 cores after set_load")
        others, _ = await rstore.etcd.get_many([rstore.keys.load(n) for n in agent.node_ids])
        assert len(others) == 3  # every hollow node reports, its tasks or none
