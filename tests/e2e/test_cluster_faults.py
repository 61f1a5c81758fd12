"""Fault tolerance end to end: a real 5-host cluster (lab/cluster), faults on purpose.

Each scenario runs a replicated demo service on the shared cluster while a
background ``Checker`` samples every task: no slot may ever have two tasks
the control plane considers running, and no cluster process may die unless
a fault killed it. After the fault the service must converge back to its
replicas with no stray container on any engine. Times that matter (how long
until tasks run elsewhere, until a new leader leads) are printed (-s shows
them) and held to generous deadlines; nothing sleeps and hopes: a bounded
observation window is used only to show that something does NOT happen.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kubeless import store
from lab.cluster import waits
from lab.cluster.checker import Checker
from lab.cluster.harness import Cluster
from lab.waiting import hold

SLACK = 10.0  # "TTL plus a few seconds": restart delay 1s, scheduling, container start


@pytest.fixture
async def checker(cluster: Cluster) -> AsyncIterator[Checker]:
    c = Checker(cluster).start()
    try:
        yield c
    finally:
        await c.stop()


async def deploy(rs: store.ResourceStore, checker: Checker, name: str, replicas: int,
                 **kw: Any) -> list[dict[str, Any]]:
    await waits.apply(rs, waits.service(name, replicas, **kw))
    await checker.converge({name: replicas}, 60)
    return await waits.wait_converged(rs, name, replicas)


def report(what: str, seconds: float) -> None:
    print(f"\n  {what}: {seconds:.1f}s", flush=True)


async def remove(rs: store.ResourceStore, checker: Checker, name: str) -> None:
    await waits.delete(rs, name)
    await checker.converge({}, 60)


# -- workers -----------------------------------------------------------------------------

async def test_worker_killed(cluster: Cluster, rs: store.ResourceStore, checker: Checker) -> None:
    up = await deploy(rs, checker, "killed", 5)
    lost = [t["metadata"]["name"] for t in up if t["spec"]["nodeName"] == "w1"]
    assert lost, "spread put no task on w1"
    t0 = time.monotonic()
    cluster.kill("w1", ["agent"])
    cluster.kill_containers("w1")  # the host is gone, its containers with it

    await waits.until(lambda: waits.converged_off(rs, "killed", 5, {"w1"}),
                      cluster.heartbeat_ttl + SLACK, "w1's tasks running elsewhere")
    report("worker killed -> its tasks run elsewhere", time.monotonic() - t0)
    cluster.start_part("w1", "agent")
    await waits.until(lambda: _ready(rs, "w1"), 30, "w1 ready again")
    await checker.converge({"killed": 5}, 30)
    checker.assert_clean()
    await remove(rs, checker, "killed")


async def _ready(rs: store.ResourceStore, node: str) -> bool:
    return node in await waits.ready_nodes(rs)


async def test_worker_cut_off(cluster: Cluster, rs: store.ResourceStore,
                              checker: Checker) -> None:
    up = await deploy(rs, checker, "cut", 5)
    before = waits.where(up)
    assert "w2" in before.values(), "spread put no task on w2"

    # 2 s off the network, under the heartbeat TTL: nothing is rescheduled.
    cluster.cut("w2")
    await asyncio.sleep(2.0)  # the fault's length, not a wait for a condition
    cluster.heal("w2")

    async def unchanged() -> bool:
        try:
            ts = await waits.tasks(rs, "cut")
            ready = await waits.ready_nodes(rs)
        except store.StoreError:
            return True  # the reader's own blip is no evidence either way
        return waits.where(ts) == before and "w2" in ready
    await hold(cluster.heartbeat_ttl + 1.0, unchanged, "the same tasks on the same nodes, w2 ready")

    # Longer than the TTL: w2's task is replaced; when w2 heals its old container stops.
    old = [tid for tid, node in before.items() if node == "w2"]
    t0 = time.monotonic()
    cluster.cut("w2")

    await waits.until(lambda: waits.converged_off(rs, "cut", 5, set(old)),
                      cluster.heartbeat_ttl + SLACK, "w2's task replaced elsewhere")
    report("worker cut off -> its tasks run elsewhere", time.monotonic() - t0)
    engine = await asyncio.to_thread(waits.containers, cluster)
    assert {c["task"] for c in engine["w2"]} >= set(old), "the cut-off host kept running them"
    t1 = time.monotonic()
    cluster.heal("w2")
    await checker.converge({"cut": 5}, 30)
    report("healed -> its old containers stopped", time.monotonic() - t1)
    engine = await asyncio.to_thread(waits.containers, cluster)
    assert not set(old) & {c["task"] for c in engine["w2"]}
    checker.assert_clean()
    await remove(rs, checker, "cut")


# -- managers ------------------------------------------------------------------------------

async def test_leader_host_killed(cluster: Cluster, rs: store.ResourceStore,
                                  checker: Checker) -> None:
    await deploy(rs, checker, "lead", 3)
    leader = (await waits.leaders(rs))["replication"]
    assert leader in {m.name for m in cluster.managers}
    t0 = time.monotonic()
    cluster.kill(leader)  # agent, controllers and etcd member
    cluster.kill_containers(leader)
    others = {m.name for m in cluster.managers} - {leader}

    async def taken_over() -> bool:
        led = await waits.leaders(rs)
        return all(led.get(c) in others for c in waits.CONTROLLERS)
    await waits.until(taken_over, cluster.lease_ttl + SLACK, f"controllers led by one of {others}")
    report("leader's host killed -> another manager leads", time.monotonic() - t0)
    await waits.scale(rs, "lead", 5)

    await waits.until(lambda: waits.converged_off(rs, "lead", 5, {leader}),
                      cluster.heartbeat_ttl + 30,
                      "the new leaders scale up and replace the dead host's tasks")
    cluster.restore()
    cluster.wait_etcd(60)
    await checker.converge({"lead": 5}, 60)
    checker.assert_clean()
    await remove(rs, checker, "lead")


async def test_etcd_members_killed(cluster: Cluster, rs: store.ResourceStore,
                                   checker: Checker) -> None:
    await deploy(rs, checker, "quorum", 3)
    leader = await waits.until(lambda: waits.etcd_leader(cluster), 30, "an etcd leader")
    m2, m1 = [h for h in cluster.managers if h is not leader][:2]

    # The leader of three: the first read and write after the kill go through
    # (the client rides the election); the time to a new leader is reported
    # (1-2.5 s on a loaded 2-core machine), held to a generous deadline.
    t0 = time.monotonic()
    cluster.kill(leader, ["etcd"])

    async def new_leader() -> float:
        await waits.until(lambda: waits.etcd_leader(cluster, [m1, m2]), 10, "a new etcd leader",
                          interval=0.02)
        return time.monotonic() - t0
    elected, _ = await asyncio.gather(new_leader(), waits.scale(rs, "quorum", 4))
    report("etcd leader killed -> a new leader", elected)
    await checker.converge({"quorum": 4}, 60)
    m3 = leader

    # Two of three: no new scheduling, running containers keep running.
    engine = await asyncio.to_thread(waits.containers, cluster)
    running = {h: {c["id"] for c in cs} for h, cs in engine.items()}
    cluster.kill(m2, ["etcd"])
    with pytest.raises(store.StoreError):
        await waits.scale(rs, "quorum", 6)

    async def frozen() -> bool:
        now = await asyncio.to_thread(waits.containers, cluster)
        return {h: {c["id"] for c in cs} for h, cs in now.items()} == running
    await hold(3.0, frozen, "the same containers running on every engine")

    # Quorum back: everything resumes.
    t0 = time.monotonic()
    cluster.start_part(m2, "etcd")
    cluster.wait_etcd(30, [m1, m2])
    await waits.until(lambda: waits.scale(rs, "quorum", 6), 30, "a write goes through")
    await checker.converge({"quorum": 6}, 60)
    report("quorum back -> scaled and converged", time.monotonic() - t0)
    cluster.start_part(m3, "etcd")
    cluster.wait_etcd(30)
    checker.assert_clean()
    await remove(rs, checker, "quorum")


# -- agents ---------------------------------------------------------------------------------

async def heartbeat_started(rs: store.ResourceStore, node: str) -> str | None:
    kv, _ = await rs.etcd.get(rs.keys.heartbeat(node))
    return None if kv is None else str(json.loads(kv.value).get("startedAt"))


async def test_agent_restarted_keeps_containers(cluster: Cluster, rs: store.ResourceStore,
                                                checker: Checker) -> None:
    await deploy(rs, checker, "keep", 5)
    before = await asyncio.to_thread(waits.containers, cluster)
    old = await heartbeat_started(rs, "w1")
    t0 = time.monotonic()
    cluster.kill("w1", ["agent"])
    cluster.start_part("w1", "agent")

    async def new_agent_live() -> bool:
        return await heartbeat_started(rs, "w1") not in (None, old)
    await waits.until(new_agent_live, cluster.heartbeat_ttl + SLACK, "the new agent's heartbeat")
    report("agent restarted -> its heartbeat is back", time.monotonic() - t0)
    await checker.converge({"keep": 5}, 30)
    after = await asyncio.to_thread(waits.containers, cluster)
    assert after == before, "a container was restarted, replaced or stopped"
    checker.assert_clean()
    await remove(rs, checker, "keep")


# -- rolling updates --------------------------------------------------------------------------

@pytest.mark.parametrize("action", ["continue", "pause"])
async def test_rolling_update_while_a_worker_dies(cluster: Cluster, rs: store.ResourceStore,
                                                  checker: Checker, action: str) -> None:
    """failureAction continue: the update completes; pause: it completes, or pauses on the
    lost tasks and completes once resumed. Never fewer than replicas - parallelism run,
    beyond the tasks the dead worker took with it."""
    replicas, parallelism = 6, 2
    up = await deploy(rs, checker, "roll", replicas,
                      update={"parallelism": parallelism, "failureAction": action,
                              "monitor": "1s", "delay": "2s"})
    lost = sum(1 for t in up if t["spec"]["nodeName"] == "w2")
    checker.floor("roll", replicas - parallelism - lost)
    await waits.change(rs, "roll", lambda s: s["spec"]["template"]["env"].update(VERSION="2"))
    await waits.until(lambda: _update_state(rs, "updating"), 15, "the rolling update started")
    cluster.kill("w2", ["agent"])
    cluster.kill_containers("w2")
    ended = await waits.until(lambda: _update_state(rs, "completed", "paused"), 90,
                              "the rolling update completed or paused")
    if ended == "paused":
        assert action == "pause", "an update set to continue paused"
        await waits.until(lambda: _node_down(rs, "w2"), cluster.heartbeat_ttl + SLACK, "w2 down")
        await waits.change(rs, "roll", lambda s: s["metadata"].setdefault("annotations", {})
                           .update({"kubeless.io/rollout-resumed": str(time.time())}))
        await waits.until(lambda: _update_state(rs, "completed"), 90, "the resumed update")
    print(f"\n  failureAction {action}: {ended}; lowest running during the update: "
          f"{checker.lowest.get('roll')} (floor {replicas - parallelism - lost})")
    await waits.until(lambda: waits.converged(rs, "roll", replicas), 60, "roll converged")
    ts = waits.running(await waits.tasks(rs, "roll"))
    assert {t["spec"]["template"]["env"]["VERSION"] for t in ts} == {"2"}
    checker.floor("roll", None)
    cluster.start_part("w2", "agent")
    await waits.until(lambda: _ready(rs, "w2"), 30, "w2 ready again")
    await checker.converge({"roll": replicas}, 60)
    checker.assert_clean()
    await remove(rs, checker, "roll")


async def _node_down(rs: store.ResourceStore, node: str) -> bool:
    return node not in await waits.ready_nodes(rs)


async def _update_state(rs: store.ResourceStore, *states: str) -> str | None:
    st = (await waits.status(rs, "roll")).get("updateStatus") or {}
    return st.get("state") if st.get("state") in states else None


async def test_stop_first_update_never_overlaps(cluster: Cluster, rs: store.ResourceStore,
                                                checker: Checker) -> None:
    await deploy(rs, checker, "order", 2, update={"parallelism": 1, "order": "stop-first"})

    def slower_stop(s: dict[str, Any]) -> None:
        s["spec"]["template"]["env"]["VERSION"] = "2"
        s["spec"]["template"]["stopGracePeriod"] = "3s"  # httpd ignores SIGTERM: 3 s to stop
    await waits.change(rs, "order", slower_stop)
    await checker.converge({"order": 2}, 60)

    async def completed() -> bool:
        st = (await waits.status(rs, "order")).get("updateStatus") or {}
        return st.get("state") == "completed"
    await waits.until(completed, 60, "the update completed")
    await remove(rs, checker, "order")
    checker.assert_clean()
    assert not checker.overlaps, "old and new task of one slot ran at once:\n" + "\n".join(
        checker.overlaps[:5])
