"""The node agent against a real etcd: registration, heartbeat, assignments, hollow nodes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from kubeless import store
from kubeless.store import Delete, Put
from kubeless.store.codec import encode_json
from kubeless_agent import AgentConfig, running_agent
from kubeless_agent.identity import NodeIdentity
from kubeless_agent.main import AgentProcess
from kubeless_agent.runtime import Task
from kubeless_agent.runtime.fake import FakeRuntime
from lab.waiting import hold
from tests.support.agents import agent_flags, agent_on
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


async def until(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = cond()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(0.02)


async def get_json(etcd: store.Etcd, key: str) -> Any:
    kv, _ = await etcd.get(key)
    return None if kv is None else json.loads(kv.value)


def config(etcd_cluster: EtcdCluster, prefix: str, node_name: str = "n1",
           **kw: Any) -> AgentConfig:
    kw.setdefault("heartbeat_ttl", 2)
    return agent_on(etcd_cluster, prefix, node_name, **kw)


def assignment(tid: str, node: str, desired: str = "running", image: str = "web:1",
               env: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "kubeless.io/v1", "kind": "Task",
            "metadata": {"name": tid, "namespace": "default"},
            "spec": {"serviceName": "web", "slot": 1, "nodeName": node, "desiredState": desired,
                     "template": {"image": image, "env": env or {}, "stopGracePeriod": "1s"}},
            "status": {"state": "assigned"}}


async def assign(rs: store.ResourceStore, task: Task) -> None:
    key = rs.keys.assignment(task["spec"]["nodeName"], task["metadata"]["name"])
    await rs.etcd.txn([], [Put(key, encode_json(task))])


async def report_state(rs: store.ResourceStore, node: str, tid: str) -> str | None:
    report = await get_json(rs.etcd, rs.keys.observed(node, tid))
    return None if report is None else report["state"]


@pytest.fixture
async def plain_rstore(plain_etcd: EtcdCluster, prefix: str
                       ) -> AsyncIterator[store.ResourceStore]:
    s = plain_etcd.connect(prefix)
    yield s
    await s.etcd.close()


async def test_registers_node_and_heartbeat(plain_etcd: EtcdCluster, prefix: str,
                                            plain_rstore: store.ResourceStore) -> None:
    """Where its credentials let it (an etcd without auth, asked for by name; under auth
    the Node is left to whoever admitted the node: test_agent_keyspace), the agent
    registers its Node."""
    rstore = plain_rstore
    cfg = config(plain_etcd, prefix, labels=(("zone", "eu"),), advertise_addr="10.1.2.3")
    async with running_agent(cfg) as agent:
        node = await rstore.get("Node", "n1")
        assert node is not None and node["metadata"]["labels"] == {"zone": "eu"}
        assert node["spec"] == {"role": "worker", "availability": "active"}
        kv, _ = await rstore.etcd.get(rstore.keys.heartbeat("n1"))
        assert kv is not None and kv.lease == agent.lease_id != 0
        hb = json.loads(kv.value)
        assert hb["address"] == "10.1.2.3" and hb["runtime"] == "fake"
        assert hb["capacity"]["cpus"] >= 1 and hb["capacity"]["memory"] > 0
        assert set(hb["platform"]) == {"os", "arch"} and hb["startedAt"]
    # a graceful stop leaves the heartbeat to its TTL, marked stopped (a restart takes it over)
    kv, _ = await rstore.etcd.get(rstore.keys.heartbeat("n1"))
    assert kv is not None and json.loads(kv.value)["stoppedAt"]


@pytest.mark.parametrize("runtime", ["fake", "process"])
async def test_the_heartbeat_carries_the_engine_version(
        etcd_cluster: EtcdCluster, prefix: str, rstore: store.ResourceStore, runtime: str,
        tmp_path: Path) -> None:
    from importlib.metadata import version

    options = (("state_dir", str(tmp_path)),) if runtime == "process" else ()
    wanted = {"fake": "fake", "process": f"process {version('kubeless')}"}[runtime]
    async with running_agent(config(etcd_cluster, prefix, runtime=runtime,
                                    runtime_options=options)):
        async def engine_version() -> str | None:
            hb = await get_json(rstore.etcd, rstore.keys.heartbeat("n1"))
            return None if hb is None else hb.get("engineVersion")
        await until(lambda: _equal(engine_version(), wanted), 10, "engineVersion in the heartbeat")


async def _equal(value: Any, want: Any) -> bool:
    return bool(await value == want)


async def test_existing_node_is_left_to_its_users(etcd_cluster: EtcdCluster, prefix: str,
                                                  rstore: store.ResourceStore) -> None:
    await rstore.create({"kind": "Node", "metadata": {"name": "n1", "labels": {"a": "b"}},
                         "spec": {"role": "worker", "availability": "drain"}})
    async with running_agent(config(etcd_cluster, prefix, labels=(("zone", "eu"),))):
        node = await rstore.get("Node", "n1")
        assert node is not None
        assert node["spec"]["availability"] == "drain" and node["metadata"]["labels"] == {"a": "b"}


async def test_heartbeat_comes_back_after_the_lease_is_revoked(
        etcd_cluster: EtcdCluster, prefix: str, rstore: store.ResourceStore) -> None:
    async with running_agent(config(etcd_cluster, prefix)) as agent:
        first = agent.lease_id
        await rstore.etcd.lease_revoke(first)
        key = rstore.keys.heartbeat("n1")

        async def back() -> bool:
            kv, _ = await rstore.etcd.get(key)
            return kv is not None and kv.lease not in (0, first)
        await until(back, 5, "heartbeat on a new lease")
        assert agent.lease_losses == 1
        # deleted by someone else while the lease lives: put again
        await rstore.etcd.txn([], [Delete(key)])
        await until(lambda: _exists(rstore, key), 5, "heartbeat put again")


async def _exists(rs: store.ResourceStore, key: str) -> bool:
    return (await rs.etcd.get(key))[0] is not None


async def test_assignment_lifecycle(etcd_cluster: EtcdCluster, prefix: str,
                                    rstore: store.ResourceStore) -> None:
    async with running_agent(config(etcd_cluster, prefix)) as agent:
        await assign(rstore, assignment("t1", "n1"))
        await until(lambda: _is(rstore, "n1", "t1", "running"), what="report running")
        report = await get_json(rstore.etcd, rstore.keys.observed("n1", "t1"))
        assert report["nodeName"] == "n1" and report["containerId"] == "fake-t1"
        assert set(report) == {"state", "message", "error", "timestamp", "containerId",
                               "exitCode", "ports", "nodeName"}
        await assign(rstore, assignment("t1", "n1", desired="shutdown"))
        await until(lambda: _is(rstore, "n1", "t1", "shutdown"), what="report shutdown")
        fake = agent.runtimes["n1"]
        assert isinstance(fake, FakeRuntime) and ("stop", "t1") in fake.calls
        await rstore.etcd.txn([], [Delete(rstore.keys.assignment("n1", "t1"))])
        await until(lambda: _is(rstore, "n1", "t1", None), what="report deleted")
        await until(lambda: ("remove", "t1") in fake.calls, what="task removed")
        assert "t1" not in agent.workers["n1"].records


async def test_deleting_a_running_assignment_stops_and_removes(
        etcd_cluster: EtcdCluster, prefix: str, rstore: store.ResourceStore) -> None:
    async with running_agent(config(etcd_cluster, prefix)) as agent:
        await assign(rstore, assignment("t2", "n1"))
        await until(lambda: _is(rstore, "n1", "t2", "running"))
        await rstore.etcd.txn([], [Delete(rstore.keys.assignment("n1", "t2"))])
        await until(lambda: _is(rstore, "n1", "t2", None), what="report deleted")
        fake = agent.runtimes["n1"]
        assert isinstance(fake, FakeRuntime)
        await until(lambda: ("remove", "t2") in fake.calls)
        assert fake.calls.index(("stop", "t2")) < fake.calls.index(("remove", "t2"))


async def _is(rs: store.ResourceStore, node: str, tid: str, state: str | None) -> bool:
    return await report_state(rs, node, tid) == state


async def test_failures_are_reported(etcd_cluster: EtcdCluster, prefix: str,
                                     rstore: store.ResourceStore) -> None:
    async with running_agent(config(etcd_cluster, prefix)) as agent:
        await assign(rstore, assignment("bad", "n1", image="web:fail"))
        await assign(rstore, assignment("done", "n1", env={"KUBELESS_FAKE_EXIT": "0"}))
        await assign(rstore, assignment("later", "n1"))
        await until(lambda: _is(rstore, "n1", "bad", "failed"), what="failed report")
        report = await get_json(rstore.etcd, rstore.keys.observed("n1", "bad"))
        assert report["exitCode"] == 1 and report["error"] == "fake failure"
        await until(lambda: _is(rstore, "n1", "done", "complete"), what="complete report")
        await until(lambda: _is(rstore, "n1", "later", "running"))
        fake = agent.runtimes["n1"]
        assert isinstance(fake, FakeRuntime)
        fake.fail("later")
        await until(lambda: _is(rstore, "n1", "later", "failed"), what="failed later")
        # a failed task told to shut down stays failed: states never go back
        await assign(rstore, assignment("later", "n1", desired="shutdown"))
        await asyncio.sleep(0)  # let the informer deliver; the state is checked next
        await until(lambda: agent.workers["n1"].records["later"].task is not None and
                    agent.workers["n1"].records["later"].desired == "shutdown")
        assert await report_state(rstore, "n1", "later") == "failed"


class BrokenRuntime(FakeRuntime):
    async def start(self, task: Task) -> None:
        raise RuntimeError("no such image")


async def test_a_failing_runtime_call_rejects_the_task(etcd_cluster: EtcdCluster, prefix: str,
                                                       rstore: store.ResourceStore) -> None:
    def factory(_: NodeIdentity) -> BrokenRuntime:
        return BrokenRuntime()
    async with running_agent(config(etcd_cluster, prefix), runtime_factory=factory):
        await assign(rstore, assignment("r1", "n1"))
        await until(lambda: _is(rstore, "n1", "r1", "rejected"), what="rejected report")
        report = await get_json(rstore.etcd, rstore.keys.observed("n1", "r1"))
        assert report["error"] == "no such image"


async def test_a_stored_later_state_is_never_undone(etcd_cluster: EtcdCluster, prefix: str,
                                                    rstore: store.ResourceStore) -> None:
    key = rstore.keys.observed("n1", "old")
    await rstore.etcd.txn([], [Put(key, encode_json({"state": "failed", "nodeName": "n1"}))])
    await assign(rstore, assignment("old", "n1"))
    async with running_agent(config(etcd_cluster, prefix)) as agent:
        await assign(rstore, assignment("new", "n1"))
        await until(lambda: _is(rstore, "n1", "new", "running"))
        assert await report_state(rstore, "n1", "old") == "failed"
        fake = agent.runtimes["n1"]
        assert isinstance(fake, FakeRuntime) and ("start", "old") not in fake.calls


async def test_many_reports_are_batched(etcd_cluster: EtcdCluster, prefix: str,
                                        rstore: store.ResourceStore) -> None:
    async with running_agent(config(etcd_cluster, prefix)) as agent:
        ops = [Put(rstore.keys.assignment("n1", f"b{i:03}"),
                   encode_json(assignment(f"b{i:03}", "n1"))) for i in range(300)]
        for start in range(0, 300, 100):
            await rstore.etcd.txn([], ops[start:start + 100])

        async def all_running() -> bool:
            kvs, _ = await rstore.etcd.list_prefix(rstore.keys.agent("n1") + "tasks/")
            return len(kvs) == 300 and all(json.loads(kv.value)["state"] == "running"
                                           for kv in kvs)
        await until(all_running, 15, "300 running reports")
        assert agent.reporter is not None and agent.reporter.transactions < 300


async def test_hollow_nodes_run_under_their_groups_role(etcd_cluster: EtcdCluster, prefix: str,
                                                        rstore: store.ResourceStore) -> None:
    """50 hollow nodes on one lease as ``node:hollow`` (the hollow group's etcd role),
    their Nodes registered by an admin first, as the join endpoint does (``agent_on``)."""
    cfg = config(etcd_cluster, prefix, node_name="hollow", hollow_nodes=50)
    async with running_agent(cfg) as agent:
        nodes = await rstore.list("Node")
        assert sorted(n["metadata"]["name"] for n in nodes.items) == \
            sorted(f"hollow-{i}" for i in range(50))
        heartbeats, _ = await rstore.etcd.list_prefix(rstore.keys.heartbeats_prefix())
        assert len(heartbeats) == 50
        assert {kv.lease for kv in heartbeats} == {agent.lease_id}
        assert json.loads(heartbeats[0].value)["hostname"].startswith("hollow-")
        await assign(rstore, assignment("h1", "hollow-17"))
        await until(lambda: _is(rstore, "hollow-17", "h1", "running"))
    kvs, _ = await rstore.etcd.list_prefix(rstore.keys.heartbeats_prefix())
    beats = [json.loads(kv.value) for kv in kvs]
    assert len(beats) == 50 and all(b.get("stoppedAt") for b in beats), "all marked stopped"


# -- the agent as a process -----------------------------------------------------------

def start_agent(etcd_cluster: EtcdCluster, prefix: str, node: str, ttl: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "kubeless_agent", *agent_flags(etcd_cluster, prefix, node),
         "--prefix", prefix, "--runtime", "fake", "--node-name", node,
         "--heartbeat-ttl", str(ttl), "--log-level", "WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def test_process_killed_or_terminated(etcd_cluster: EtcdCluster, prefix: str,
                                            rstore: store.ResourceStore) -> None:
    ttl = 2
    key = rstore.keys.heartbeat("proc1")
    proc = start_agent(etcd_cluster, prefix, "proc1", ttl)
    try:
        await until(lambda: _exists(rstore, key), 20, "heartbeat of the agent process")
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        killed = time.monotonic()
        await until(lambda: _gone(rstore, key), ttl + 1, "heartbeat gone after SIGKILL")
        assert time.monotonic() - killed <= ttl + 1

        proc = start_agent(etcd_cluster, prefix, "proc1", ttl)
        await until(lambda: _exists(rstore, key), 20, "heartbeat of the restarted agent")
        proc.send_signal(signal.SIGTERM)  # graceful: marked stopped, left to its TTL
        assert proc.wait(10) == 0, proc.stderr.read().decode() if proc.stderr else ""
        stopped = time.monotonic()
        beat = await get_json(rstore.etcd, key)
        assert beat is not None and beat.get("stoppedAt"), "SIGTERM does not revoke the lease"
        await until(lambda: _gone(rstore, key), ttl + 1, "heartbeat gone after its TTL")
        assert time.monotonic() - stopped <= ttl + 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def _gone(rs: store.ResourceStore, key: str) -> bool:
    return not await _exists(rs, key)


async def test_node_comes_back_after_etcd_was_away(own_etcd: EtcdCluster) -> None:
    cfg = config(own_etcd, "/away")
    rs = own_etcd.connect("/away", retry_for=1)
    try:
        async with running_agent(cfg) as agent:
            first = agent.lease_id
            member = own_etcd.members[0]
            own_etcd.stop_member(member)
            # deadlines, not waits: a loaded 2-core machine restarts etcd and re-grants slowly
            await until(lambda: agent.lease_losses >= 1, 20, "lease loss noticed")
            own_etcd.start_member(member)

            async def back() -> bool:
                kv, _ = (await rs.etcd.get(rs.keys.heartbeat("n1")))
                return kv is not None and kv.lease == agent.lease_id != first
            await until(back, 30, "heartbeat on a new lease after etcd returned")
            await assign(rs, assignment("after", "n1"))
            await until(lambda: _is(rs, "n1", "after", "running"), 20, "worker after etcd returned")
            assert REGISTRY.get_sample_value("kubeless_agent_heartbeat_lease_losses_total")
            assert REGISTRY.get_sample_value("kubeless_agent_task_reports_total")
    finally:
        await rs.etcd.close()


async def test_an_agent_started_before_etcd_answers_waits_for_it(own_etcd: EtcdCluster,
                                                                 prefix: str) -> None:
    """An agent that starts while etcd cannot answer (no quorum yet after an outage)
    waits for it and comes up, as a kubelet does; it never exits on it."""
    member = own_etcd.members[0]
    cfg = config(own_etcd, prefix, node_name="early", mesh=False, dns_addrs=(), logs_port=None)
    own_etcd.stop_member(member)  # its etcd user was made above, while etcd answered
    agent = AgentProcess(cfg)
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop))
    try:
        await hold(6.0, lambda: not run.done(), "the agent waiting for etcd")  # > one budget
        own_etcd.start_member(member)
        await until(lambda: agent.ready.is_set() or run.done(), 30, "the agent ready")
        assert agent.ready.is_set(), run.exception() if run.done() else "not ready"
    finally:
        stop.set()
        await asyncio.gather(run, return_exceptions=True)


async def test_join_port_is_advertised_where_nodes_find_join_endpoints(
        etcd_cluster: EtcdCluster, rstore: store.ResourceStore, prefix: str) -> None:
    """``--join-port`` (a manager's join endpoint run apart from its agent, as on the lab's
    hosts): the heartbeat says it, so other nodes renew their certificates there."""
    from kubeless.cluster.renewal import find_join_endpoints

    cfg = agent_on(etcd_cluster, prefix, "jp-1", advertise_addr="127.0.0.1", join_port=23777,
                   mesh=False, dns_addrs=())
    async with running_agent(cfg):
        assert await find_join_endpoints(rstore) == [("127.0.0.1", 23777)]
    from kubeless_agent.main import parse_args

    flags = [*etcd_cluster.client_flags("node:jp-1", prefix), "--runtime", "fake"]
    assert parse_args([*flags, "--join-port", "2377"]).join_port == 2377
    assert parse_args(flags).join_port is None  # nothing advertised unless asked
