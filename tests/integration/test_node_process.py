"""``NodeProcess``: one stop path for the agent and the controllers of a node.

In this event loop, against the session's TLS etcd (the state dir holds the
node's ``tls/`` and ``manager-tls/`` identities from its CA, as init and join
write them), with the fake runtime: a stop releases the agent's heartbeat
(marked stopped, never revoked) and resigns the controllers; a part that
crashes stops the whole node the same way and is reported as one line.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kubeless import store
from kubeless.cluster import NodeState, StateDir
from kubeless_agent.heartbeat import stopped_at
from kubeless_cli import node_process
from kubeless_cli.context import CliError
from kubeless_cli.node_process import NodeProcess
from lab.waiting import until
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration


def node_state(etcd_cluster: EtcdCluster, prefix: str, name: str, role: str,
               state: StateDir) -> NodeState:
    """A node of ``role``; its identities in ``state`` (a manager's both) when TLS."""
    if etcd_cluster.tls:
        etcd_cluster.identity(f"node:{name}", directory=state.tls_dir)
        etcd_cluster.admit(f"node:{name}", prefix)
        if role == "manager":
            etcd_cluster.identity(f"manager:{name}", directory=state.manager_tls_dir)
            etcd_cluster.admit(f"manager:{name}")
    return NodeState(cluster_id="c1", node_id=name, role=role, endpoints=etcd_cluster.endpoints,
                     prefix=prefix, runtime="fake", advertise_addr="127.0.0.1",
                     agent_options={"dns_addr": "none"})


async def heartbeat(rstore: store.ResourceStore, node: str) -> bytes | None:
    kv, _ = await rstore.etcd.get(rstore.keys.heartbeat(node))
    return None if kv is None else kv.value


async def live(rstore: store.ResourceStore, node: str) -> bool:
    value = await heartbeat(rstore, node)
    return value is not None and stopped_at(value) is None


async def leaders(rstore: store.ResourceStore) -> int:
    kvs, _ = await rstore.etcd.list_prefix(rstore.keys.root + "leaders/")
    return len(kvs)


async def test_a_stop_releases_the_heartbeat_and_resigns_the_controllers(
        etcd_cluster: EtcdCluster, prefix: str, rstore: store.ResourceStore,
        tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    node = node_state(etcd_cluster, prefix, "np-m1", "manager", state)
    stop = asyncio.Event()
    run = asyncio.create_task(NodeProcess(node, state, manager=True).run(stop))
    await until(lambda: live(rstore, "np-m1"), 30, "the agent's heartbeat")
    await until(lambda: leaders(rstore), 30, "the controllers lead")
    stop.set()
    await asyncio.wait_for(run, 30)  # no error: a graceful stop
    value = await heartbeat(rstore, "np-m1")
    assert value is not None and stopped_at(value), "released (marked stopped), not revoked"
    assert await leaders(rstore) == 0, "the controllers resigned"


async def test_a_crashed_part_stops_the_node_as_one_line(
        etcd_cluster: EtcdCluster, prefix: str, rstore: store.ResourceStore, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    crash = asyncio.Event()

    async def controllers(node: NodeState, state: StateDir, *more: object, **options: object
                          ) -> None:
        await crash.wait()
        raise RuntimeError("boom")

    monkeypatch.setattr(node_process, "run_controllers", controllers)
    state = StateDir(tmp_path)
    node = node_state(etcd_cluster, prefix, "np-m2", "manager", state)
    run = asyncio.create_task(NodeProcess(node, state, manager=True).run())
    await until(lambda: live(rstore, "np-m2"), 30, "the agent's heartbeat")
    crash.set()
    with pytest.raises(CliError, match="^the controllers stopped: boom$"):
        await asyncio.wait_for(run, 30)
    value = await heartbeat(rstore, "np-m2")
    assert value is not None and stopped_at(value), "the agent stopped gracefully too"
