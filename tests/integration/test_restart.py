"""An agent restarted on purpose keeps every task; ``kubeless node leave`` gives them up.

A real agent process (``python -m kubeless_agent``) on the docker runtime
(the real Docker Engine, image kubeless-demo:latest) or the process runtime,
under real controllers (replication, scheduler, health) on a real etcd:

- SIGTERM with tasks running (and one task shut down earlier, whose stopped
  container exited 137), then the agent started again within the heartbeat
  TTL: the new agent takes the node over at once, every container or
  process id is the same, no key under ``tasks/`` or the agent's task
  reports is written again, no task is created, and the heartbeat never
  disappears (the node never went down);
- ``kubeless node leave`` with the agent running: the agent exits, the node
  goes down, its tasks are replaced on another node, its containers are
  gone (and, on docker, where the agent takes the kernel mesh path, its
  nftables table, which a stopped agent had kept), the state dir forgets
  the node, and an agent started again for it is refused; with the agent
  stopped, the CLI does the same itself.

The agent presents its ``node:<id>`` identity, the hollow controllers
(lab.hollow) a ``manager:`` one and the CLI the admin one, on the session's TLS etcd.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controllers.framework import Controller
from controllers.rollout.controller import RolloutController
from controllers.view import ClusterView
from kubeless import store
from kubeless.cluster import NodeState, StateDir
from kubeless_agent.leave import remove_all, remove_mesh_table
from kubeless_agent.runtime import make_runtime
from lab.hollow import HollowCluster, service
from lab.waiting import hold, until
from tests.support.agents import agent_flags
from tests.support.etcd_server import EtcdCluster
from tests.support.workloads import IMAGE, docker_engine, remove_node_containers, unique_node
from tests.support.environment import clean_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TTL = 10  # the agent's heartbeat TTL: room for a Python start on a loaded machine
ENV = {**clean_env(),
       "PYTHONPATH": str(ROOT)}


class Cluster(HollowCluster):
    """Replication, scheduler, health and rollout (an update leaves shut-down history)."""

    def make_controllers(self, ctl_store: store.ResourceStore,
                         view: ClusterView) -> list[Controller]:
        return [*super().make_controllers(ctl_store, view), RolloutController(ctl_store, view)]


class RealNode:
    """One real agent process for one node, started and stopped by the test."""

    def __init__(self, etcd: EtcdCluster, prefix: str, runtime: str, tmp: Path) -> None:
        self.etcd, self.prefix, self.runtime = etcd, prefix, runtime
        self.id = unique_node("rs")
        self.state = StateDir(tmp / "state")
        self.process_dir = self.state.path / "process"  # where leave's CLI looks too
        self.log = tmp / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.state.save_node(NodeState(
            cluster_id="test", node_id=self.id, role="worker", endpoints=etcd.endpoints,
            prefix=prefix, runtime=runtime, advertise_addr="127.0.0.1"))
        self.flags: list[str] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        if self.flags is None:  # joined as the join endpoint joins it: its etcd user, its Node
            self.flags = agent_flags(self.etcd, self.prefix, self.id, runtime=self.runtime)
        # docker: the kernel mesh (no published port here, so a table without DNAT rules),
        # for what a restart and a leave do to the node's table
        mesh = ["--mesh-mode", "kernel"] if self.runtime == "docker" else ["--no-mesh"]
        args = [sys.executable, "-m", "kubeless_agent",
                *self.flags, "--prefix", self.prefix, "--runtime", self.runtime,
                "--node-name", self.id,
                "--heartbeat-ttl", str(TTL), *mesh, "--dns-addr", "none",
                "--drain-period", "0s", "--log-level", "INFO"]
        if self.runtime == "process":
            args += ["--process-dir", str(self.process_dir)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=log,
                                         stderr=subprocess.STDOUT)
        return self.proc

    def sigterm(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def kubeless(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kubeless_cli.main",
                               *self.etcd.client_flags(), "--prefix", self.prefix, *args],
                              capture_output=True, text=True, env=ENV, timeout=120, cwd=ROOT)

    def mesh_table(self) -> bool:
        """Whether this host's ruleset holds the node's kernel mesh table."""
        table = "kubeless_" + self.id.replace("-", "_")
        return subprocess.run(["nft", "list", "table", "inet", table],
                              capture_output=True).returncode == 0

    async def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.runtime == "docker":
            remove_node_containers(docker_engine(), self.id)
            await remove_mesh_table(self.id)  # a failed test's; a stopped agent keeps it
        else:
            runtime = make_runtime("process", self.id, state_dir=str(self.process_dir))
            await remove_all(runtime, {})
            await runtime.close()


@pytest.fixture(params=["docker", "process"])
async def real(request: pytest.FixtureRequest, etcd_cluster: EtcdCluster, prefix: str,
               tmp_path: Path) -> AsyncIterator[tuple[RealNode, HollowCluster]]:
    if request.param == "docker":
        docker_engine()
    node = RealNode(etcd_cluster, prefix, request.param, tmp_path)
    try:
        async with Cluster(etcd_cluster.endpoints, prefix, tls=etcd_cluster.client_tls) as cluster:
            node.start()
            await cluster.wait_nodes_ready([node.id], timeout=60)
            yield node, cluster
    finally:
        await node.cleanup()


def web(node: RealNode, replicas: int, version: str = "1") -> dict[str, Any]:
    """A service whose stopped tasks exit non-zero (docker: busybox httpd as pid 1 ignores
    SIGTERM, so 137; process: sleep dies of SIGTERM): the history an agent restart once
    rewrote as failed."""
    svc = service("web", replicas, image=IMAGE, history=5)  # keep the shut-down task
    template = svc["spec"]["template"]
    template["stopGracePeriod"] = "1s"
    template["env"] = {"VERSION": version}
    svc["spec"]["update"] = {"parallelism": replicas, "monitor": "200ms"}
    if node.runtime == "process":
        template["command"] = ["sleep", "600"]
    return svc


async def revisions(rs: store.ResourceStore, node_id: str) -> dict[str, int]:
    """Every task key and every task report of the node, with its mod revision."""
    tasks, _ = await rs.etcd.list_prefix(rs.keys.root + "tasks/")
    reports, _ = await rs.etcd.list_prefix(rs.keys.agent(node_id) + "tasks/")
    return {kv.key: kv.mod_revision for kv in tasks + reports}


async def container_ids(rs: store.ResourceStore, node_id: str) -> dict[str, str]:
    reports, _ = await rs.etcd.list_prefix(rs.keys.agent(node_id) + "tasks/")
    return {kv.key: json.loads(kv.value).get("containerId") for kv in reports}


async def reports(rs: store.ResourceStore, node_id: str) -> dict[str, dict[str, Any]]:
    kvs, _ = await rs.etcd.list_prefix(rs.keys.agent(node_id) + "tasks/")
    return {kv.key.rsplit("/", 1)[-1]: json.loads(kv.value) for kv in kvs}


async def live_heartbeat(rs: store.ResourceStore, node_id: str) -> dict[str, Any] | None:
    kv, _ = await rs.etcd.get(rs.keys.heartbeat(node_id))
    beat = None if kv is None else json.loads(kv.value)
    return beat if beat is not None and not beat.get("stoppedAt") else None


class AbsenceWatch:
    """Samples a key in the background; remembers whether it was ever missing."""

    def __init__(self, rs: store.ResourceStore, key: str) -> None:
        self.rs, self.key, self.missing = rs, key, 0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            kv, _ = await self.rs.etcd.get(self.key)
            self.missing += kv is None
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def test_sigterm_and_restart_within_the_ttl_keeps_every_task(
        real: tuple[RealNode, HollowCluster]) -> None:
    node, cluster = real
    rs = cluster.store
    await cluster.apply(web(node, 3))
    await cluster.wait_running("web", 3, timeout=90)
    await cluster.apply(web(node, 3, "2"))  # the old tasks shut down: their containers stay

    async def updated() -> bool:
        states = [r["state"] for r in (await reports(rs, node.id)).values()]
        return states.count("shutdown") == 3 and states.count("running") == 3
    await until(updated, 90, "3 tasks updated, the 3 old ones shut down")
    before, ids = await revisions(rs, node.id), await container_ids(rs, node.id)
    assert len(ids) == 6 and all(ids.values())
    first = await live_heartbeat(rs, node.id)
    assert first is not None

    watch = AbsenceWatch(rs, rs.keys.heartbeat(node.id))
    try:
        assert node.sigterm() == 0, node.log.read_text()
        node.start()

        async def taken_over() -> bool:
            beat = await live_heartbeat(rs, node.id)
            return beat is not None and beat["startedAt"] != first["startedAt"]
        await until(taken_over, TTL, "the restarted agent holds the heartbeat")

        changed: list[Any] = []

        async def unchanged() -> bool:
            now, now_ids = await revisions(rs, node.id), await container_ids(rs, node.id)
            changed[:] = [(k, before.get(k), now.get(k)) for k in before.keys() | now.keys()
                          if before.get(k) != now.get(k)] + \
                [(k, ids.get(k), now_ids.get(k)) for k in ids if ids[k] != now_ids.get(k)]
            return not changed
        try:
            await hold(3.0, unchanged, "no task or report rewritten, no container replaced")
        except AssertionError as err:
            values = {k: await rs.etcd.get(k) for k, _, _ in changed[:4]}
            raise AssertionError(f"{err}: {changed} {values}") from None
    finally:
        await watch.stop()
    assert not watch.missing, "the heartbeat disappeared: the node went down"
    assert "took over from lease" in node.log.read_text()
    if node.runtime == "docker":
        held = {c.id for c in docker_engine().containers.list(
            all=True, filters={"label": f"kubeless.node.id={node.id}"})}
        assert held == set(ids.values())


async def test_node_leave_with_the_agent_running(real: tuple[RealNode, HollowCluster]) -> None:
    node, cluster = real
    rs = cluster.store
    await cluster.apply(web(node, 2))
    await cluster.wait_running("web", 2, timeout=90)
    await cluster.add_group("spare", 1)  # where the tasks go once the node left

    assert node.mesh_table() == (node.runtime == "docker")
    res = await asyncio.to_thread(node.kubeless, "node", "leave", "--state-dir",
                                  str(node.state))
    assert res.returncode == 0, res.stderr
    assert f"Node {node.id} left the cluster (2 task(s) removed" in res.stdout
    assert node.proc is not None and await asyncio.to_thread(node.proc.wait, 30) == 0
    await left_checks(node, cluster)


async def test_node_leave_with_the_agent_stopped(real: tuple[RealNode, HollowCluster]) -> None:
    node, cluster = real
    rs = cluster.store
    await cluster.apply(web(node, 2))
    await cluster.wait_running("web", 2, timeout=90)
    await cluster.add_group("spare", 1)
    assert node.sigterm() == 0  # its heartbeat lives on for a TTL: no agent to do the work
    assert node.mesh_table() == (node.runtime == "docker"), "a stopped agent keeps its table"

    res = await asyncio.to_thread(node.kubeless, "node", "leave", "--state-dir",
                                  str(node.state))
    assert res.returncode == 0, res.stderr
    assert (await rs.etcd.get(rs.keys.heartbeat(node.id)))[0] is None, "down at once"
    await left_checks(node, cluster)


async def left_checks(node: RealNode, cluster: HollowCluster) -> None:
    rs = cluster.store
    assert (await rs.etcd.get(rs.keys.heartbeat(node.id)))[0] is None
    ls = await asyncio.to_thread(node.kubeless, "node", "ls")
    assert any(node.id in row and "Down" in row for row in ls.stdout.splitlines()), ls.stdout
    await cluster.wait_running(
        "web", 2, timeout=60,
        check=lambda ts: all(t["spec"]["nodeName"] == "spare-0" for t in ts
                             if t["status"].get("state") == "running"))
    if node.runtime == "docker":
        assert not docker_engine().containers.list(
            all=True, filters={"label": f"kubeless.node.id={node.id}"})
    else:
        runtime = make_runtime("process", node.id, state_dir=str(node.process_dir))
        assert await runtime.list() == []
        await runtime.close()
    assert not node.state.has_node(), "the state dir forgets the node"
    assert not node.mesh_table(), "leaving removes the node's kernel mesh table"
    again = node.start()  # an agent for a node that left is refused
    assert await asyncio.to_thread(again.wait, 30) == 1
    assert "left the cluster" in node.log.read_text()


def test_node_leave_errors(etcd_cluster: EtcdCluster, prefix: str, tmp_path: Path) -> None:
    node = RealNode(etcd_cluster, prefix, "process", tmp_path)

    def one_line(res: subprocess.CompletedProcess[str], needle: str) -> None:
        assert res.returncode != 0 and res.stderr.count("\n") == 1, res.stderr
        assert needle in res.stderr and "Traceback" not in res.stderr, res.stderr

    one_line(node.kubeless("node", "leave", "--state-dir", str(tmp_path / "none")),
             "holds no node")
    one_line(node.kubeless("node", "leave", "--state-dir", str(node.state)), "not found")
    gone = subprocess.run(
        [sys.executable, "-m", "kubeless_cli.main", "--endpoints", "http://127.0.0.1:9",
         "--timeout", "1", "node", "leave", "--state-dir", str(node.state)],
        capture_output=True, text=True, env=ENV, timeout=60, cwd=ROOT)
    one_line(gone, "error:")
    assert node.state.has_node(), "nothing changed"


async def test_a_manager_needs_force(etcd_cluster: EtcdCluster, prefix: str,
                                     tmp_path: Path, rstore: store.ResourceStore) -> None:
    from kubeless_agent.identity import NodeIdentity

    node = RealNode(etcd_cluster, prefix, "process", tmp_path)
    ident = NodeIdentity.detect(node.id, address="127.0.0.1", runtime="process")
    resource = ident.node_resource()
    resource["spec"]["role"] = "manager"
    await rstore.create(resource)
    res = await asyncio.to_thread(node.kubeless, "node", "leave", "--state-dir", str(node.state))
    assert res.returncode == 1 and "is a manager" in res.stderr and "--force" in res.stderr
    assert (await rstore.etcd.get(rstore.keys.leave(node.id)))[0] is None, "nothing written"
    res = await asyncio.to_thread(node.kubeless, "node", "leave", "--force", "--state-dir",
                                  str(node.state))
    assert res.returncode == 0, res.stderr
    assert not node.state.has_node()
    rm = await asyncio.to_thread(node.kubeless, "node", "rm", node.id)
    assert rm.returncode == 0, rm.stderr
    assert (await rstore.etcd.get(rstore.keys.leave(node.id)))[0] is None, "rm forgets it"

