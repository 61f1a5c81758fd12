"""The control plane end to end on hollow nodes: replication, scheduler and health together.

Each test runs the three controllers (2 s leases) and one or more groups of
hollow nodes (fake runtime, 2 s heartbeat leases) against the session's
TLS etcd (the controllers as ``manager:``, each group as ``node:<group>``)
under its own prefix, and waits for conditions with deadlines.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kubeless.store import Put
from kubeless.store.codec import encode_yaml
from lab.hollow import HollowCluster, desired, per_node, running, service, state
from lab.waiting import hold, until
from tests.support.hollow_cli import acli
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration


@pytest.fixture
async def cluster(etcd_cluster: EtcdCluster, prefix: str) -> AsyncIterator[HollowCluster]:
    async with HollowCluster(etcd_cluster.endpoints, prefix, tls=etcd_cluster.client_tls) as c:
        yield c




# -- replicated services ------------------------------------------------------------

async def test_scale_up_and_down(cluster: HollowCluster) -> None:
    await cluster.add_group("a", 3)
    await cluster.add_group("b", 2)
    await cluster.apply(service("web", 3))
    watch = cluster.watch("web")
    tasks = await cluster.wait_running("web", 3)
    assert sorted(t["spec"]["slot"] for t in running(tasks)) == [1, 2, 3]
    assert max(per_node(running(tasks)).values()) == 1  # spread over 5 nodes

    await cluster.scale("web", 10)
    tasks = await cluster.wait_running("web", 10)
    assert sorted(t["spec"]["slot"] for t in running(tasks)) == list(range(1, 11))
    assert sorted(per_node(running(tasks)).values()) == [2, 2, 2, 2, 2]

    await cluster.scale("web", 2)
    tasks = await cluster.wait_running("web", 2)
    counts = per_node(running(tasks))
    assert max(counts.values()) == 1, counts  # the survivors sit on two different nodes
    await watch.stop()
    assert watch.violations == [], watch.violations[:5]
    assert watch.samples >= 3
    status = await until(lambda: _status_is(cluster, "web", 2, 2), 10, "status 2/2")
    assert status["observedGeneration"] >= 3


async def _status_is(c: HollowCluster, name: str, want: int, run: int) -> Any:
    status = await c.status(name)
    ok = status.get("replicas") == want and status.get("runningReplicas") == run
    return status if ok else None


async def test_scale_down_takes_from_the_busiest_node_first(cluster: HollowCluster) -> None:
    await cluster.add_group("a", 2)
    await cluster.apply(service("web", 4))
    await cluster.wait_running("web", 4)
    await cluster.add_group("b", 2)  # fresh nodes; the tasks stay where they are
    await cluster.scale("web", 6)
    tasks = await cluster.wait_running("web", 6)
    counts = per_node(running(tasks))
    assert counts == {"a-0": 2, "a-1": 2, "b-0": 1, "b-1": 1}, counts
    await cluster.scale("web", 4)
    tasks = await cluster.wait_running("web", 4)
    assert sorted(per_node(running(tasks)).values()) == [1, 1, 1, 1]


async def test_constraints_preferences_and_max_replicas(cluster: HollowCluster) -> None:
    await cluster.add_group("eu", 2, labels={"zone": "eu"})
    await cluster.add_group("us", 4, labels={"zone": "us"})
    await cluster.add_group("bare", 1)
    await cluster.apply(service("spread", 6, placement={
        "preferences": [{"spread": "node.labels.zone"}]}))
    await cluster.apply(service("pinned", 4, placement={
        "constraints": ["node.labels.zone==eu"]}))
    await cluster.apply(service("capped", 3, placement={"maxReplicasPerNode": 1,
                                                        "constraints": ["node.labels.zone==eu"]}))
    tasks = await cluster.wait_running("spread", 6)
    by_zone = per_node(running(tasks))
    zones = {"eu": 0, "us": 0, "bare": 0}
    for node, n in by_zone.items():
        zones[node.split("-")[0]] += n
    assert zones == {"eu": 2, "us": 2, "bare": 2}, zones  # unlabelled nodes form a group

    tasks = await cluster.wait_running("pinned", 4)
    assert set(per_node(running(tasks))) == {"eu-0", "eu-1"}

    await cluster.wait_running("capped", 2, exact_active=False)
    tasks = await cluster.tasks("capped")
    waiting = [t for t in tasks if state(t) == "pending"]
    assert len(waiting) == 1
    assert "max replicas per node reached on 2 nodes" in waiting[0]["status"]["message"]
    assert "constraints not satisfied on 5 nodes" in waiting[0]["status"]["message"]


async def test_reservations_against_capacity(cluster: HollowCluster) -> None:
    await cluster.add_group("small", 2, cpus=1, memory=1 << 30)
    await cluster.apply(service("fat", 5, reservations={"cpus": 0.5, "memory": "256Mi"}))
    await cluster.wait_running("fat", 4, exact_active=False)
    tasks = await cluster.tasks("fat")
    assert sorted(per_node(running(tasks)).values()) == [2, 2]
    pending = [t for t in tasks if state(t) == "pending"]
    assert len(pending) == 1
    assert "insufficient CPU on 2 nodes" in pending[0]["status"]["message"]
    await cluster.add_group("big", 1, cpus=4, memory=4 << 30)
    tasks = await cluster.wait_running("fat", 5)
    assert per_node(running(tasks))["big-0"] == 1


# -- unschedulable -----------------------------------------------------------------

async def test_unschedulable_until_a_node_matches(cluster: HollowCluster) -> None:
    await cluster.add_group("w", 2)
    await cluster.apply(service("gpu", 2, placement={"constraints": ["node.labels.gpu==yes"]}))

    async def explained() -> bool:
        tasks = await cluster.tasks("gpu")
        return len(tasks) == 2 and all(
            state(t) == "pending" and (t["status"].get("message") or "").startswith(
                "no suitable node (constraints not satisfied on 2 nodes)") for t in tasks)
    await until(explained, 10, "pending with an explanation")
    ps = await acli(cluster, "service", "ps", "gpu", "--no-trunc")
    assert ps.returncode == 0, ps.stderr
    rows = ps.stdout.splitlines()[1:]
    assert len(rows) == 2 and all("Pending" in r for r in rows), ps.stdout
    assert all("no suitable node (constraints not satisfied on 2 nodes)" in r for r in rows), \
        ps.stdout

    res = await acli(cluster, "node", "update", "--label-add", "gpu=yes", "w-1")
    assert res.returncode == 0, res.stderr
    tasks = await cluster.wait_running("gpu", 2, timeout=10)
    assert set(per_node(running(tasks))) == {"w-1"}
    assert all(not t["status"].get("error") for t in running(tasks))

    # A new node that matches takes new tasks as soon as it joins.
    await cluster.apply(service("ssd", 1, placement={"constraints": ["node.labels.disk==ssd"]}))
    await until(lambda: _pending(cluster, "ssd", 1), 10, "ssd pending")
    await cluster.add_group("fast", 1, labels={"disk": "ssd"})
    tasks = await cluster.wait_running("ssd", 1, timeout=10)
    assert set(per_node(running(tasks))) == {"fast-0"}


async def _pending(c: HollowCluster, name: str, n: int) -> bool:
    tasks = await c.tasks(name)
    return sum(1 for t in tasks if state(t) == "pending" and t["status"].get("message")) == n


# -- drain, pause ---------------------------------------------------------------------

async def test_drain_moves_tasks_away(cluster: HollowCluster) -> None:
    await cluster.add_group("a", 3)
    await cluster.apply(service("web", 6))
    tasks = await cluster.wait_running("web", 6)
    assert per_node(running(tasks))["a-0"] == 2
    res = await acli(cluster, "node", "update", "--availability", "drain", "a-0")
    assert res.returncode == 0, res.stderr
    tasks = await cluster.wait_running(
        "web", 6, check=lambda ts: "a-0" not in per_node(running(ts)))
    assert sorted(per_node(running(tasks)).values()) == [3, 3]
    on_drained = [t for t in tasks if t["spec"].get("nodeName") == "a-0"]
    assert on_drained and all(desired(t) == "shutdown" and state(t) == "shutdown"
                              for t in on_drained)


# -- global services ---------------------------------------------------------------------

async def test_global_service_follows_nodes(cluster: HollowCluster) -> None:
    await cluster.add_group("a", 2, labels={"zone": "eu"})
    await cluster.apply(service("agent", mode="global"))
    tasks = await cluster.wait_running("agent", 2)
    assert sorted(per_node(running(tasks))) == ["a-0", "a-1"]

    await cluster.add_group("b", 2, labels={"zone": "us"})
    tasks = await cluster.wait_running("agent", 4)
    assert sorted(per_node(running(tasks))) == ["a-0", "a-1", "b-0", "b-1"]

    await cluster.update_node("b-1", availability="drain")
    tasks = await cluster.wait_running("agent", 3)
    assert "b-1" not in per_node(running(tasks))

    await cluster.update_node("a-1", availability="pause")
    await cluster.update_node("b-1", availability="active")
    tasks = await cluster.wait_running("agent", 4)
    assert sorted(per_node(running(tasks))) == ["a-0", "a-1", "b-0", "b-1"]
    paused_task = next(t for t in running(tasks) if t["spec"]["nodeName"] == "a-1")

    svc = await cluster.store.get("Service", "agent", "default")
    assert svc is not None
    await cluster.apply({**svc, "spec": {**svc["spec"], "placement": {
        "constraints": ["node.labels.zone==eu"]}}})
    tasks = await cluster.wait_running("agent", 2)
    assert sorted(per_node(running(tasks))) == ["a-0", "a-1"]
    # the paused node kept the very task it had
    assert any(t["metadata"]["name"] == paused_task["metadata"]["name"] for t in running(tasks))
    status = await until(lambda: _status_is_at_least(cluster, "agent", 2), 10, "status")
    assert status["replicas"] == 2


async def _status_is_at_least(c: HollowCluster, name: str, n: int) -> Any:
    status = await c.status(name)
    return status if status.get("runningReplicas") == n else None


# -- node failure --------------------------------------------------------------------------

async def test_killed_node_group_is_replaced_and_stale_tasks_stop(
        cluster: HollowCluster) -> None:
    await cluster.add_group("stay", 2)
    await cluster.add_group("doomed", 2, subprocess_agent=True)
    await cluster.apply(service("web", 8))
    tasks = await cluster.wait_running("web", 8)
    lost = {t["metadata"]["name"] for t in running(tasks)
            if t["spec"]["nodeName"].startswith("doomed-")}
    assert len(lost) == 4
    watch = cluster.watch("web")
    killed_at = time.monotonic()
    await cluster.kill_group("doomed")
    tasks = await cluster.wait_running(
        "web", 8, timeout=15,
        check=lambda ts: set(per_node(running(ts))) == {"stay-0", "stay-1"})
    took = time.monotonic() - killed_at
    assert took < cluster.heartbeat_ttl + 4, took
    old = {t["metadata"]["name"]: t for t in tasks if t["metadata"]["name"] in lost}
    assert all(state(t) == "orphaned" for t in old.values()), [state(t) for t in old.values()]

    # The nodes come back (a new agent process, same names): stale tasks shut down.
    await cluster.add_group("doomed", 2, subprocess_agent=True)

    async def stale_stopped() -> bool:
        tasks = await cluster.tasks("web")
        mine = [t for t in tasks if t["metadata"]["name"] in lost]
        if any(desired(t) == "running" for t in mine):
            return False
        reports = await _reports(cluster)
        return all(reports.get(tid) in (None, "shutdown") for tid in lost)
    await until(stale_stopped, 10, "stale tasks shut down")
    await watch.stop()
    assert watch.violations == []
    # the service stays at 8, and now may use the returned nodes for new tasks only
    await cluster.wait_running("web", 8)


async def _reports(c: HollowCluster) -> dict[str, str]:
    from kubeless.store.tasks import reports
    return {tid: r.get("state") for tid, r in (await reports(c.store)).items()}


# -- restart policy -------------------------------------------------------------------------

async def test_restart_policy_any_with_max_attempts(cluster: HollowCluster) -> None:
    await cluster.add_group("n", 2)
    await cluster.apply(service("crash", 2, env={"KUBELESS_FAKE_FAIL": "1"}, history=10,
                                restart={"condition": "any", "delay": "0s", "maxAttempts": 3,
                                         "window": "0s"}))

    async def settled() -> list[dict[str, Any]] | None:
        tasks = await cluster.tasks("crash")
        per_slot = {s: [t for t in tasks if t["spec"]["slot"] == s] for s in (1, 2)}
        if all(len(ts) == 4 and all(state(t) == "failed" for t in ts)
               for ts in per_slot.values()):
            return tasks
        return None
    await until(settled, 15, "4 failed tasks per slot (1 + 3 restarts)")
    async def eight() -> bool:
        return len(await cluster.tasks("crash")) == 8
    await hold(1.0, eight, "no restart beyond maxAttempts")
    tasks = await cluster.tasks("crash")
    for slot in (1, 2):
        mine = [t for t in tasks if t["spec"]["slot"] == slot]
        assert sum(1 for t in mine if desired(t) == "running") == 1  # the slot's record


async def test_restart_condition_none_and_on_failure(cluster: HollowCluster) -> None:
    await cluster.add_group("n", 2)
    await cluster.apply(service("once", 2, env={"KUBELESS_FAKE_FAIL": "1"},
                                restart={"condition": "none", "delay": "0s"}))
    await cluster.apply(service("job", 2, env={"KUBELESS_FAKE_EXIT": "0"},
                                restart={"condition": "on-failure", "delay": "0s"}))
    await cluster.apply(service("retry", 1, env={"KUBELESS_FAKE_FAIL": "1"},
                                restart={"condition": "on-failure", "delay": "0s",
                                         "maxAttempts": 2}))

    async def ended(name: str, want: str, n: int) -> bool:
        tasks = await cluster.tasks(name)
        return len(tasks) == n and all(state(t) == want for t in tasks)
    await until(lambda: ended("once", "failed", 2), 10, "once failed")
    await until(lambda: ended("job", "complete", 2), 10, "job complete")
    await until(lambda: ended("retry", "failed", 3), 10, "retry failed 3 times")
    async def no_more() -> bool:
        return [len(await cluster.tasks(n)) for n in ("once", "job", "retry")] == [2, 2, 3]
    await hold(1.0, no_more, "no task replaced against its restart policy")
    status = await cluster.status("job")
    assert status.get("runningReplicas") == 0


async def test_history_is_trimmed(cluster: HollowCluster) -> None:
    await cluster.add_group("n", 1)
    await cluster.apply(service("flap", 1, env={"KUBELESS_FAKE_FAIL": "1"}, history=2,
                                restart={"condition": "any", "delay": "0s", "maxAttempts": 6}))

    async def restarts_done() -> bool:
        tasks = await cluster.tasks("flap")
        ann = [t["metadata"].get("annotations", {}).get("kubeless.io/restarts", "")
               for t in tasks]
        return any(len(a.split(",")) == 6 for a in ann if a) and \
            all(state(t) == "failed" for t in tasks)
    await until(restarts_done, 20, "6 restarts")
    tasks = await until(lambda: _count_is(cluster, "flap", 2), 10, "history trimmed to 2")
    assert sum(1 for t in tasks if desired(t) == "running") == 1


async def _count_is(c: HollowCluster, name: str, n: int) -> Any:
    tasks = await c.tasks(name)
    return tasks if len(tasks) == n else None


# -- deletion and bad input -----------------------------------------------------------------

async def test_deleted_service_tasks_removed(cluster: HollowCluster) -> None:
    await cluster.add_group("n", 2)
    await cluster.apply(service("gone", 4))
    await cluster.apply(service("stays", 2))
    await cluster.wait_running("gone", 4)
    await cluster.wait_running("stays", 2)
    await cluster.store.delete("Service", "gone", "default")

    async def nothing_left() -> bool:
        tasks = await cluster.tasks("gone")
        assignments = [k for k in await cluster.keys("agents/") if "/assignments/" in k]
        return not tasks and len(assignments) == 2
    await until(nothing_left, 10, "tasks and assignments of gone removed")
    reports = await _reports(cluster)
    assert len(reports) == 2  # only the other service's
    assert len(running(await cluster.tasks("stays"))) == 2


async def test_invalid_service_gets_a_condition(cluster: HollowCluster) -> None:
    await cluster.add_group("n", 1)
    bad = {"apiVersion": "kubeless.io/v1", "kind": "Service",
           "metadata": {"name": "bad", "namespace": "default", "generation": 1},
           "spec": {"replicas": -3, "template": {}}}
    key = cluster.store.keys.spec("Service", "bad", "default")
    await cluster.store.etcd.txn([], [Put(key, encode_yaml(bad))])
    garbage = cluster.store.keys.spec("Service", "junk", "default")
    await cluster.store.etcd.txn([], [Put(garbage, b"{not: [yaml")])
    await cluster.apply(service("good", 2))
    await cluster.wait_running("good", 2)

    async def condition() -> Any:
        status = await cluster.status("bad")
        conds = status.get("conditions") or []
        return conds if conds and conds[0]["status"] == "False" else None
    conds = await until(condition, 10, "Valid=False condition")
    assert conds[0]["type"] == "Valid" and "replicas" in conds[0]["detail"]
    assert await cluster.tasks("bad") == []
    cluster.check_controllers()
    await cluster.scale("good", 3)
    await cluster.wait_running("good", 3)
