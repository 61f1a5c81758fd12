"""The docker runtime against the REAL Docker Engine, driven by an in-process agent on real etcd.

Assignments are written into etcd as the scheduler writes them; the agent's
reports are read back from ``agents/<node>/tasks/<id>``. Every container a
test makes carries its node's label and is removed by the fixture, even
when the test fails. Under CI=true a missing engine fails these tests.
"""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubeless import store
from kubeless_agent import AgentConfig, running_agent
from kubeless_agent.main import AgentProcess
from tests.support.etcd_server import EtcdCluster
from tests.support.workloads import (IMAGE, assign, docker_engine, reaches, remove_node_containers,
                                     report, task, unassign, unique_node, until)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine() -> Any:
    return docker_engine()


@pytest.fixture
def node(engine: Any) -> Iterator[str]:
    name = unique_node()
    yield name
    remove_node_containers(engine, name)


def agent_config(etcd_cluster: EtcdCluster, prefix: str, node: str) -> AgentConfig:
    return AgentConfig(endpoints=etcd_cluster.endpoints, prefix=prefix, node_name=node,
                       runtime="docker", heartbeat_ttl=3)


@pytest.fixture
async def agent(etcd_cluster: EtcdCluster, prefix: str, node: str) -> AsyncIterator[AgentProcess]:
    async with running_agent(agent_config(etcd_cluster, prefix, node)) as a:
        yield a


def fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        return str(r.read().decode())


def containers_of(engine: Any, node: str) -> dict[str, Any]:
    """task id -> container of that node (inspected; one removed meanwhile is left out)."""
    import docker.errors

    found = {}
    for c in engine.containers.list(all=True, sparse=True,
                                    filters={"label": f"kubeless.node.id={node}"}):
        try:
            c.reload()
        except docker.errors.NotFound:
            continue
        found[c.labels["kubeless.task.id"]] = c
    return found


HTTP = [{"target": 80, "protocol": "tcp", "mode": "ingress"}]


async def test_three_replicas_serve_http_on_their_published_ports(
        agent: AgentProcess, rstore: store.ResourceStore, node: str, engine: Any) -> None:
    tasks = [task("web", slot, node, ports=HTTP, env={"GREETING": "hi"}) for slot in (1, 2, 3)]
    for t in tasks:
        await assign(rstore, t)
    for slot, t in enumerate(tasks, 1):
        rep = await reaches(rstore, t, "running")
        (port,) = rep["ports"]
        assert port["target"] == 80 and port["mode"] == "ingress" and port["published"] > 0
        page = await asyncio.to_thread(fetch, port["published"])
        assert page.strip() == f"served by web.{slot} on {node}"
        c = engine.containers.get(rep["containerId"])
        assert c.name == f"web.{slot}.{t['metadata']['name']}"
        assert c.labels["kubeless.service.name"] == "web"
        assert c.labels["kubeless.service.namespace"] == "default"
        assert c.attrs["HostConfig"]["RestartPolicy"]["Name"] == "no"
        assert "GREETING=hi" in c.attrs["Config"]["Env"]
        assert f"KUBELESS_TASK_ID={t['metadata']['name']}" in c.attrs["Config"]["Env"]
    hb = await rstore.etcd.get(rstore.keys.heartbeat(node))
    assert hb[0] is not None and b'"runtimeState":"up"' in hb[0].value.replace(b" ", b"")


async def test_a_killed_container_fails_its_task_with_the_exit_code(
        agent: AgentProcess, rstore: store.ResourceStore, node: str, engine: Any) -> None:
    t = task("web", 1, node, ports=HTTP)
    await assign(rstore, t)
    rep = await reaches(rstore, t, "running")
    await asyncio.to_thread(engine.containers.get(rep["containerId"]).kill)
    failed = await reaches(rstore, t, "failed")
    assert failed["exitCode"] == 137 and "exited with code 137" in failed["error"]


async def test_healthchecks(agent: AgentProcess, rstore: store.ResourceStore, node: str) -> None:
    check = {"interval": "1s", "timeout": "1s", "retries": 1, "startPeriod": "0s"}
    sick = task("sick", 1, node, healthcheck={"test": ["CMD", "false"], **check})
    well = task("well", 1, node, healthcheck={"test": ["CMD-SHELL", "wget -q -O /dev/null "
                                                                    "http://127.0.0.1/"], **check})
    await assign(rstore, sick)
    await assign(rstore, well)
    assert (await reaches(rstore, sick, "failed"))["error"] == "container unhealthy"
    await reaches(rstore, well, "running")


async def test_a_read_only_bind_mount(agent: AgentProcess, rstore: store.ResourceStore, node: str,
                                      tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("from the host\n")
    mount = [{"type": "bind", "source": str(tmp_path), "target": "/mnt/in", "readOnly": True}]
    t = task("ro", 1, node, mounts=mount, command=["sh", "-c"],
             args=["cat /mnt/in/in.txt; echo changed > /mnt/in/in.txt"])
    await assign(rstore, t)
    failed = await reaches(rstore, t, "failed")
    assert failed["exitCode"] != 0
    assert "from the host" in failed["error"] and "Read-only file system" in failed["error"]
    assert (tmp_path / "in.txt").read_text() == "from the host\n"


async def test_bad_inputs_are_rejected_with_a_clear_error(
        agent: AgentProcess, rstore: store.ResourceStore, node: str, tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("0.0.0.0", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        missing_image = task("a", 1, node, image="kubeless-no-such-image:1")
        port_taken = task("b", 1, node, ports=[{"target": 80, "published": port,
                                                "protocol": "tcp", "mode": "host"}])
        no_source = task("c", 1, node, mounts=[{"type": "bind", "source": str(tmp_path / "nope"),
                                                "target": "/data"}])
        for t in (missing_image, port_taken, no_source):
            await assign(rstore, t)
        err = (await reaches(rstore, missing_image, "rejected"))["error"]
        assert "image kubeless-no-such-image:1 not found and cannot be pulled" in err
        err = (await reaches(rstore, port_taken, "rejected"))["error"]
        assert f"published port {port}/tcp is already in use on this node" in err
        err = (await reaches(rstore, no_source, "rejected"))["error"]
        assert f"bind mount source '{tmp_path / 'nope'}' does not exist" in err
        assert not (tmp_path / "nope").exists()  # docker did not make it
    finally:
        taken.close()


async def test_commands_that_exit_at_once(agent: AgentProcess, rstore: store.ResourceStore,
                                          node: str) -> None:
    ok = task("ok", 1, node, command=["true"])
    bad = task("bad", 1, node, command=["sh", "-c", "echo something broke >&2; exit 3"])
    await assign(rstore, ok)
    await assign(rstore, bad)
    assert (await reaches(rstore, ok, "complete"))["exitCode"] == 0
    failed = await reaches(rstore, bad, "failed")
    assert failed["exitCode"] == 3
    assert failed["error"] == "task exited with code 3: something broke"


async def test_stop_honours_the_grace_period(agent: AgentProcess, rstore: store.ResourceStore,
                                             node: str, engine: Any) -> None:
    polite = task("polite", 1, node, command=["sh", "-c", "trap 'exit 0' TERM; "
                                                           "while true; do sleep 0.1; done"])
    stubborn = task("stubborn", 1, node, command=["sh", "-c", "trap '' TERM; "
                                                               "while true; do sleep 0.1; done"],
                    stopGracePeriod="1s")
    for t in (polite, stubborn):
        await assign(rstore, t)
        await reaches(rstore, t, "running")
    began = time.monotonic()
    for t in (polite, stubborn):
        t["spec"]["desiredState"] = "shutdown"
        await assign(rstore, t)
    for t in (polite, stubborn):
        await reaches(rstore, t, "shutdown")
    assert time.monotonic() - began < 8
    codes = {tid: c.attrs["State"]["ExitCode"] for tid, c in containers_of(engine, node).items()}
    assert codes == {polite["metadata"]["name"]: 0, stubborn["metadata"]["name"]: 137}
    # the assignment deleted: the container is removed
    await unassign(rstore, polite)
    await until(lambda: polite["metadata"]["name"] not in containers_of(engine, node),
                what="container removed")


async def test_agent_restart_adopts_containers_and_restarts_nothing(
        etcd_cluster: EtcdCluster, prefix: str, rstore: store.ResourceStore, node: str,
        engine: Any) -> None:
    keep = task("web", 1, node, ports=HTTP)
    drop = task("web", 2, node, ports=HTTP)
    ends = task("batch", 1, node, command=["sh", "-c", "sleep 2; exit 4"])
    foreign = engine.containers.run(IMAGE, detach=True, labels={"kubeless.node.id": "other"},
                                    name=f"foreign-{node}")
    try:
        async with running_agent(agent_config(etcd_cluster, prefix, node)):
            for t in (keep, drop, ends):
                await assign(rstore, t)
            for t in (keep, drop, ends):
                await reaches(rstore, t, "running")
        before = {tid: (c.id, c.attrs["State"]["StartedAt"])
                  for tid, c in containers_of(engine, node).items()}
        assert all(c.status == "running" for c in containers_of(engine, node).values())
        await unassign(rstore, drop)  # while no agent runs
        await asyncio.sleep(2.5)  # ``ends`` exits while no agent watches
        async with running_agent(agent_config(etcd_cluster, prefix, node)):
            failed = await reaches(rstore, ends, "failed")
            assert failed["exitCode"] == 4
            await until(lambda: drop["metadata"]["name"] not in containers_of(engine, node),
                        what="the unassigned task's container removed")
            await reaches(rstore, keep, "running")
            c = containers_of(engine, node)[keep["metadata"]["name"]]
            assert (c.id, c.attrs["State"]["StartedAt"]) == before[keep["metadata"]["name"]]
            assert c.attrs["RestartCount"] == 0 and c.status == "running"
            rep = await report(rstore, keep)
            assert rep is not None
            page = await asyncio.to_thread(fetch, rep["ports"][0]["published"])
            assert page.startswith("served by web.1")
        foreign.reload()
        assert foreign.status == "running"  # never touched
    finally:
        foreign.remove(force=True)
