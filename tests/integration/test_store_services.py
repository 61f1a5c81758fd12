"""The one Service write path against a real etcd (kubeless.store.services).

What every Service writer relies on: a write compares what it read; one that
changes published ports is numbered, checked and guarded over every Service,
and planned again (not blindly retried) when another writer got in between;
a write that publishes nothing new is one commit whose stale read is a
Conflict at once; a controller's fence and a cached read are honoured.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kubeless import store
from kubeless.api import PortsRefused, validate
from kubeless.api import rollout_annotations as ann
from kubeless.api.service_writes import paused
from kubeless.store import Compare, Put
from kubeless.store import services as writes
from kubeless.store.services import Attempt

pytestmark = pytest.mark.integration
Resource = dict[str, Any]


def service(name: str, *ports: Resource, image: str = "web:1") -> Resource:
    return validate({"apiVersion": "kubeless.io/v1", "kind": "Service",
                     "metadata": {"name": name},
                     "spec": {"template": {"image": image}, "ports": list(ports)}})


def replicas(count: int) -> Any:
    return lambda doc: validate({**doc, "spec": {**doc["spec"], "replicas": count}})


async def stored(rstore: store.ResourceStore, name: str) -> Resource:
    got = await rstore.get("Service", name, "default")
    assert got is not None
    return got


async def test_create_numbers_ports_and_refuses_a_clash(rstore: store.ResourceStore) -> None:
    created = await writes.create_service(rstore, service("web", {"target": 80}))
    assert created["spec"]["ports"][0]["published"] == 30000
    await writes.create_service(rstore, service("api", {"target": 80, "published": 8080}))
    with pytest.raises(PortsRefused) as refused:
        await writes.create_service(rstore, service("other", {"target": 81, "published": 8080}))
    assert refused.value.problems == [
        "service default/other: published port 8080/tcp (ingress) is already held by "
        "service default/api (ingress)"]
    assert await rstore.get("Service", "other", "default") is None
    with pytest.raises(store.AlreadyExists):  # with ports (checked) and without
        await writes.create_service(rstore, service("web", {"target": 80}))
    await writes.create_service(rstore, service("plain"))
    with pytest.raises(store.AlreadyExists):
        await writes.create_service(rstore, service("plain"))


async def test_update_merges_and_bumps_the_generation_once(rstore: store.ResourceStore) -> None:
    await writes.create_service(rstore, service("web"))
    assert await writes.update_service(rstore, "web", "default", replicas(3)) is True
    after = await stored(rstore, "web")
    assert after["spec"]["replicas"] == 3 and after["metadata"]["generation"] == 2
    assert ann.previous_spec(after) == (1, service("web")["spec"])
    # the same change again: nothing written, resourceVersion unchanged
    assert await writes.update_service(rstore, "web", "default", replicas(3)) is False
    assert (await stored(rstore, "web"))["metadata"]["resourceVersion"] == \
        after["metadata"]["resourceVersion"]
    with pytest.raises(store.NotFound, match='service "nope" not found in namespace default'):
        await writes.update_service(rstore, "nope", "default", replicas(1))


async def test_a_guarded_write_plans_again_when_another_service_changed(
        rstore: store.ResourceStore) -> None:
    await writes.create_service(rstore, service("other"))
    attempts: list[int] = []

    async def plan(attempt: Attempt) -> None:
        attempts.append(attempt.number)
        docs = await attempt.numbered([service("web", {"target": 80})])
        if attempt.number == 0:  # another writer slips in after our read
            await writes.update_service(rstore, "other", "default", replicas(2))
        attempt.txn.create(docs[0])

    written = await writes.write_services(rstore, plan, what="testing")
    assert attempts == [0, 1]
    assert written.revision > 0
    assert (await stored(rstore, "web"))["spec"]["ports"][0]["published"] == 30000


async def test_a_write_that_keeps_losing_gives_up(rstore: store.ResourceStore,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writes, "BACKOFF", 0.0)
    await writes.create_service(rstore, service("other"))
    count = iter(range(2, 100))

    async def plan(attempt: Attempt) -> None:
        docs = await attempt.numbered([service("web", {"target": 80})])
        await writes.update_service(rstore, "other", "default", replicas(next(count)))
        attempt.txn.create(docs[0])

    with pytest.raises(store.KeptChanging, match="services kept changing while testing"):
        await writes.write_services(rstore, plan, what="testing")
    assert await rstore.get("Service", "web", "default") is None


async def test_an_unguarded_stale_write_is_a_conflict_at_once(
        rstore: store.ResourceStore) -> None:
    await writes.create_service(rstore, service("web"))
    attempts: list[int] = []

    async def plan(attempt: Attempt) -> None:
        attempts.append(attempt.number)
        live = await attempt.live("web", "default")
        await writes.update_service(rstore, "web", "default", replicas(5))  # meanwhile
        attempt.txn.update({**live, "spec": {**live["spec"], "replicas": 2}})

    with pytest.raises(store.Conflict, match="it was changed since it was read"):
        await writes.write_services(rstore, plan, what="testing")
    assert attempts == [0]
    assert (await stored(rstore, "web"))["spec"]["replicas"] == 5


async def test_concurrent_clashing_creates_one_wins(etcd_cluster: Any, prefix: str) -> None:
    stores = [etcd_cluster.connect(prefix) for _ in range(3)]
    try:
        docs = [service(n, {"target": 80, "published": 8080}) for n in ("a", "b", "c")]
        results = await asyncio.gather(*(writes.create_service(s, d)
                                         for s, d in zip(stores, docs)), return_exceptions=True)
        refused = [r for r in results if isinstance(r, PortsRefused)]
        assert len(refused) == 2, results
        assert len((await stores[0].list("Service")).items) == 1
    finally:
        for s in stores:
            await s.etcd.close()


async def rolled_out(rstore: store.ResourceStore) -> Resource:
    """web at generation 2 (web:2) with web:1 as its previous spec."""
    await writes.create_service(rstore, service("web"))
    await writes.update_service(rstore, "web", "default",
                                lambda doc: validate({**doc, "spec": {
                                    **doc["spec"], "template": {"image": "web:2"}}}))
    return await stored(rstore, "web")


async def test_roll_back_a_cached_read_with_a_fence(rstore: store.ResourceStore) -> None:
    live = await rolled_out(rstore)
    leader = rstore.keys.root + "test-leader"
    res = await rstore.etcd.txn([], [Put(leader, b"me")])
    fence = Compare(leader, "create", "==", res.revision)
    written = await writes.roll_back_service(rstore, live, "auto", keep_current=False,
                                             fence=fence)
    after = await stored(rstore, "web")
    assert int(after["metadata"]["resourceVersion"]) == written.revision
    assert after["spec"]["template"]["image"] == "web:1"
    assert after["metadata"]["generation"] == 3 and ann.rollback_reason(after) == "auto"
    assert ann.previous_spec(after) is None
    # the cached read is stale now: a Conflict, nothing written
    with pytest.raises(store.Conflict):
        await writes.roll_back_service(rstore, live, "again", fence=fence)
    # a fence that no longer holds (leadership lost): a Conflict, nothing written
    lost = Compare(leader, "create", "==", res.revision + 1000)
    with pytest.raises(store.Conflict, match="leadership was lost"):
        await writes.replace_service(rstore, "web", "default", paused, what="pausing",
                                     read=after, fence=lost)
    assert (await stored(rstore, "web"))["metadata"]["resourceVersion"] == \
        after["metadata"]["resourceVersion"]


async def test_replace_reads_afresh_and_leaves_the_status(rstore: store.ResourceStore) -> None:
    live = await rolled_out(rstore)
    await rstore.write_status(live, {"replicas": 1})
    written = await writes.replace_service(rstore, "web", "default", paused, what="pausing")
    assert "status" not in written.value
    after = await stored(rstore, "web")
    assert ann.is_paused(after) and after["metadata"]["generation"] == 2
    assert after["status"] == {"replicas": 1}


async def test_a_rollback_to_ports_another_service_took_is_refused(
        rstore: store.ResourceStore) -> None:
    await writes.create_service(rstore, service("web", {"target": 80, "published": 8080}))
    await writes.update_service(rstore, "web", "default",
                                lambda doc: validate({**doc, "spec": {**doc["spec"],
                                                                      "ports": []}}))
    await writes.create_service(rstore, service("api", {"target": 80, "published": 8080}))
    live = await stored(rstore, "web")
    with pytest.raises(PortsRefused, match="8080/tcp .* already held by service default/api"):
        await writes.roll_back_service(rstore, live, "manual")
    assert (await stored(rstore, "web"))["metadata"]["resourceVersion"] == \
        live["metadata"]["resourceVersion"]
