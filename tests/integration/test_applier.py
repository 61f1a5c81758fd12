"""The applier against a real etcd: fenced, batched transactions of controller ops."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from controllers.framework import Applier, LeaderElector, NotLeader
from controllers.ops import AssignTask, CreateTask, DeleteTask, UpdateTask, WriteServiceStatus
from kubeless import store
from kubeless.api.tasks import new_task_id
from kubeless.store import Compare

pytestmark = pytest.mark.integration


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.02)


def task(slot: int, *, node: str | None = None, state: str = "pending",
         service: str = "web") -> dict[str, Any]:
    spec: dict[str, Any] = {"serviceName": service, "serviceUid": "u1", "slot": slot,
                            "specVersion": 1, "template": {"image": "web:1"},
                            "desiredState": "running"}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "kubeless.io/v1", "kind": "Task",
            "metadata": {"name": new_task_id(), "namespace": "default",
                         "labels": {"kubeless.io/service": service}},
            "spec": spec, "status": {"state": state}}


@pytest.fixture
async def elector(rstore: store.ResourceStore) -> AsyncIterator[LeaderElector]:
    e = LeaderElector(rstore.etcd, rstore.keys, "test", "me", ttl=2)
    runner = asyncio.create_task(e.run())
    await asyncio.wait_for(e.elected.wait(), 5)
    yield e
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)


@pytest.fixture
def applier(rstore: store.ResourceStore, elector: LeaderElector) -> Applier:
    return Applier(rstore, elector)


async def read(rstore: store.ResourceStore, key: str) -> store.KeyValue | None:
    return (await rstore.etcd.get(key))[0]


async def stored_task(rstore: store.ResourceStore, t: dict[str, Any]) -> dict[str, Any]:
    kv = await read(rstore, rstore.key_of(t))
    assert kv is not None
    return rstore.decode("Task", kv)


async def test_create_then_assign_writes_task_and_assignment_together(
        rstore: store.ResourceStore, applier: Applier) -> None:
    t = task(1)
    result = (await applier.apply([CreateTask(t)])).check()
    assert result.ok and result.revision > 0
    created = await stored_task(rstore, t)
    assert await read(rstore, rstore.keys.assignment("n1", t["metadata"]["name"])) is None

    created["spec"]["nodeName"] = "n1"
    created["status"]["state"] = "assigned"
    result = (await applier.apply([AssignTask(created, "n1")])).check()
    task_kv = await read(rstore, rstore.key_of(created))
    assignment = await read(rstore, rstore.keys.assignment("n1", created["metadata"]["name"]))
    assert task_kv is not None and assignment is not None
    assert assignment.value == task_kv.value  # the same bytes as the task key
    assert assignment.mod_revision == task_kv.mod_revision == result.revision
    assert "resourceVersion" not in json.loads(assignment.value)["metadata"]


async def test_create_of_an_assigned_task_and_delete_handle_the_assignment(
        rstore: store.ResourceStore, applier: Applier) -> None:
    t = task(1, node="n2", state="assigned")
    (await applier.apply([CreateTask(t)])).check()
    akey = rstore.keys.assignment("n2", t["metadata"]["name"])
    assert await read(rstore, akey) is not None
    current = await stored_task(rstore, t)
    current["spec"]["desiredState"] = "shutdown"
    (await applier.apply([UpdateTask(current)])).check()
    akv = await read(rstore, akey)
    assert akv is not None and json.loads(akv.value)["spec"]["desiredState"] == "shutdown"
    (await applier.apply([DeleteTask(await stored_task(rstore, t))])).check()
    assert await read(rstore, rstore.key_of(t)) is None
    assert await read(rstore, akey) is None


async def test_pending_global_task_gets_no_assignment_yet(
        rstore: store.ResourceStore, applier: Applier) -> None:
    t = task(1, node="n3", state="pending")
    (await applier.apply([CreateTask(t)])).check()
    assert await read(rstore, rstore.keys.assignment("n3", t["metadata"]["name"])) is None


async def test_stale_resource_version_conflicts_that_batch_only(
        rstore: store.ResourceStore, elector: LeaderElector) -> None:
    applier = Applier(rstore, elector, max_ops=2)  # one task + assignment per batch
    a, b = task(1, node="n1", state="assigned"), task(2, node="n1", state="assigned")
    (await applier.apply([CreateTask(a), CreateTask(b)])).check()
    a_read, b_read = await stored_task(rstore, a), await stored_task(rstore, b)
    other = dict(a_read, spec=dict(a_read["spec"], desiredState="shutdown"))
    await rstore.update(other)  # someone wrote a after we read it

    a_read["status"] = {"state": "failed"}
    b_read["status"] = {"state": "failed"}
    result = await applier.apply([UpdateTask(a_read), UpdateTask(b_read)])
    assert not result.ok
    bad = [x for x in result.batches if not x.ok]
    assert len(bad) == 1 and bad[0].ops == (UpdateTask(a_read),)
    assert result.conflicts == [rstore.key_of(a)]
    assert result.failed_ops == [UpdateTask(a_read)]
    assert (await stored_task(rstore, b))["status"]["state"] == "failed"
    assert (await stored_task(rstore, a))["spec"]["desiredState"] == "shutdown"
    assert (await stored_task(rstore, a))["status"]["state"] == "assigned"
    akv = await read(rstore, rstore.keys.assignment("n1", a["metadata"]["name"]))
    assert akv is not None and json.loads(akv.value)["status"]["state"] == "assigned"
    with pytest.raises(store.Conflict):
        result.check()


async def test_250_ops_split_into_batches_that_all_land(
        rstore: store.ResourceStore, applier: Applier) -> None:
    tasks = [task(i + 1, node=f"n{i % 5}", state="assigned") for i in range(125)]
    tasks += [task(i + 1, service="api") for i in range(125)]
    ops = [CreateTask(t) for t in tasks]
    batches = applier.batches(ops)
    assert all(len(txn.ops) <= 100 for _, txn in batches)
    assert sum(len(group) for group, _ in batches) == 250
    result = (await applier.apply(ops)).check()
    assert len(result.batches) == len(batches) >= 4
    listed = await rstore.list("Task")
    assert len(listed.items) == 250
    assignments, _ = await rstore.etcd.list_prefix(rstore.keys.root + "agents/")
    assert len(assignments) == 125


async def test_service_status_compares_its_revision_and_needs_the_service(
        rstore: store.ResourceStore, applier: Applier) -> None:
    op = WriteServiceStatus("default", "web", {"replicas": 1})
    result = await applier.apply([op])  # no such service
    assert not result.ok and result.conflicts == [rstore.keys.spec("Service", "web", "default")]
    await rstore.create({"kind": "Service", "metadata": {"name": "web", "namespace": "default"},
                         "spec": {"template": {"image": "web:1"}}})
    first = (await applier.apply([op])).check()
    status_key = rstore.keys.status("Service", "web", "default")
    assert status_key is not None

    class Versioned(WriteServiceStatus):
        status_revision: int

    stale = Versioned("default", "web", {"replicas": 2})
    object.__setattr__(stale, "status_revision", first.revision - 1)
    assert not (await applier.apply([stale])).ok
    fresh = Versioned("default", "web", {"replicas": 3})
    object.__setattr__(fresh, "status_revision", first.revision)
    (await applier.apply([fresh])).check()
    got = await rstore.get("Service", "web", "default")
    assert got is not None and got["status"] == {"replicas": 3}


class StaleFence:
    """A leader that has not noticed yet that it was deposed."""

    def __init__(self, compare: Compare) -> None:
        self.compare = compare

    def fence(self) -> Compare:
        return self.compare


async def test_deposed_leader_gets_not_leader_and_writes_nothing(
        rstore: store.ResourceStore, elector: LeaderElector) -> None:
    stale = StaleFence(elector.fence())
    await rstore.etcd.txn([], [store.Delete(elector.key)])  # leadership moves on
    await until(lambda: elector.terms >= 2)
    t = task(1, node="n1", state="assigned")
    with pytest.raises(NotLeader):
        await Applier(rstore, stale).apply([CreateTask(t), CreateTask(task(2))])
    assert await read(rstore, rstore.key_of(t)) is None
    assert await read(rstore, rstore.keys.assignment("n1", t["metadata"]["name"])) is None
    assert (await rstore.list("Task")).items == []
    # ... while the current term's fence works.
    (await Applier(rstore, elector).apply([CreateTask(t)])).check()


async def test_not_leading_raises_before_writing(rstore: store.ResourceStore) -> None:
    idle = LeaderElector(rstore.etcd, rstore.keys, "idle", "me")
    with pytest.raises(NotLeader):
        await Applier(rstore, idle).apply([CreateTask(task(1))])
