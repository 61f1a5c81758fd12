"""``kubeless logs`` and ``kubeless service logs`` through the node's agent, docker and process.

An in-process agent (real etcd; real Docker Engine for ``docker``) runs
tasks that print numbered lines; the real ``kubeless`` command finds the
node's address and logs port in its heartbeat and reads them, with
``--tail`` and ``--follow``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubeless import store
from kubeless_agent import running_agent
from kubeless_agent.main import AgentProcess
from tests.support.agents import agent_on
from tests.support.etcd_server import EtcdCluster
from tests.support.workloads import (assign, docker_engine, reaches, remove_node_containers,
                                     task, unique_node)

pytestmark = pytest.mark.integration

COUNT = 'i=1; while [ $i -le {n} ]; do echo "line $i"; i=$((i+1)); sleep {pause}; done'


@pytest.fixture(params=["docker", "process"])
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def node(runtime: str) -> Iterator[str]:
    name = unique_node("lg")
    engine = docker_engine() if runtime == "docker" else None
    yield name
    if engine is not None:
        remove_node_containers(engine, name)


@pytest.fixture
async def agent(etcd_cluster: EtcdCluster, prefix: str, node: str, runtime: str,
                tmp_path: Path) -> AsyncIterator[AgentProcess]:
    cfg = agent_on(etcd_cluster, prefix, node, runtime=runtime, heartbeat_ttl=3,
                   runtime_options=(("state_dir", str(tmp_path / "proc")),)
                   if runtime == "process" else ())
    async with running_agent(cfg) as a:
        yield a


async def kubeless(etcd_cluster: EtcdCluster, prefix: str, *args: str,
                   timeout: float = 30) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubeless_cli.main", *etcd_cluster.client_flags(),
        "--prefix", prefix, *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return int(proc.returncode or 0), out.decode(), err.decode()


def printing(node: str, n: int, pause: float, slot: int = 1, **kw: Any) -> dict[str, Any]:
    return task("printer", slot, node, command=["sh", "-c", COUNT.format(n=n, pause=pause)],
                **kw)


async def test_tail(agent: AgentProcess, etcd_cluster: EtcdCluster, prefix: str,
                    rstore: store.ResourceStore, node: str) -> None:
    t = printing(node, 5, 0)
    await assign(rstore, t)
    await reaches(rstore, t, "complete")
    tid = t["metadata"]["name"]
    code, out, err = await kubeless(etcd_cluster, prefix, "logs", tid, "--tail", "2")
    assert code == 0, err
    assert out.splitlines() == [f"printer.1.{tid}@{node} | line 4",
                                f"printer.1.{tid}@{node} | line 5"]
    code, out, _ = await kubeless(etcd_cluster, prefix, "logs", tid[:10], "--no-prefix")
    assert out.splitlines() == [f"line {i}" for i in range(1, 6)]
    code, out, err = await kubeless(etcd_cluster, prefix, "logs", "nosuchtask")
    assert code == 1 and "no such task: nosuchtask" in err


async def test_follow_until_the_task_ends(agent: AgentProcess, etcd_cluster: EtcdCluster,
                                          prefix: str, rstore: store.ResourceStore,
                                          node: str) -> None:
    t = printing(node, 8, 0.3)
    await assign(rstore, t)
    await reaches(rstore, t, "running")
    code, out, err = await kubeless(etcd_cluster, prefix, "logs", t["metadata"]["name"],
                                    "--follow", "--no-prefix")
    assert code == 0, err
    assert out.splitlines() == [f"line {i}" for i in range(1, 9)]  # none lost, in order
    await reaches(rstore, t, "complete")


async def test_service_logs(agent: AgentProcess, etcd_cluster: EtcdCluster, prefix: str,
                            rstore: store.ResourceStore, node: str) -> None:
    tasks = [printing(node, 3, 0.2, slot) for slot in (1, 2)]
    for t in tasks:
        await assign(rstore, t)
    for t in tasks:
        await reaches(rstore, t, "running")
    code, out, err = await kubeless(etcd_cluster, prefix, "service", "logs", "printer",
                                    "--follow", "--tail", "5")
    assert code == 0, err
    for slot, t in enumerate(tasks, 1):
        mine = [line for line in out.splitlines()
                if line.startswith(f"printer.{slot}.{t['metadata']['name']}@{node} | ")]
        assert [line.partition(" | ")[2] for line in mine] == ["line 1", "line 2", "line 3"]
    code, out, err = await kubeless(etcd_cluster, prefix, "service", "logs", "nope")
    assert code == 1 and 'service "nope" not found' in err
