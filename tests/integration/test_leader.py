"""Leader election and fencing against a real etcd."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Hashable, Iterable
from typing import Any

import pytest

from controllers.framework import (Controller, ControllerRunner, InformerSpec, LeaderElector,
                                   NotLeader)
from kubeless import store
from kubeless.store import Keyspace, Put
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> float:
    """Wait for ``cond``; return how long it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not cond():
        if loop.time() - start > timeout:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.02)
    return loop.time() - start


class Replica:
    """One elector on its own connection, as in its own process."""

    def __init__(self, cluster: EtcdCluster, prefix: str, identity: str, ttl: int = 2) -> None:
        self.etcd = store.Etcd(store.parse_endpoints(cluster.endpoints), retry_for=2,
                               tls=cluster.client_tls(f"manager:{identity}"))
        self.elector = LeaderElector(self.etcd, Keyspace(prefix), "scheduler", identity, ttl)
        self.task = asyncio.create_task(self.elector.run(), name=f"elector {identity}")

    async def stop(self, *, graceful: bool = True) -> None:
        self.elector.revoke_on_exit = graceful
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    async def close(self) -> None:
        await self.stop()
        await self.etcd.close()


@pytest.fixture
async def pair(etcd_cluster: EtcdCluster, prefix: str) -> AsyncIterator[list[Replica]]:
    replicas = [Replica(etcd_cluster, prefix, "a"), Replica(etcd_cluster, prefix, "b")]
    yield replicas
    for r in replicas:
        await r.close()


def leaders(replicas: list[Replica]) -> list[Replica]:
    return [r for r in replicas if r.elector.is_leader]


async def test_exactly_one_of_two_leads(pair: list[Replica]) -> None:
    await until(lambda: len(leaders(pair)) == 1)
    leader = leaders(pair)[0]
    follower = next(r for r in pair if r is not leader)
    assert await follower.elector.current_leader() == leader.elector.identity
    with pytest.raises(NotLeader):
        follower.elector.fence()
    await asyncio.sleep(0.5)  # a stable state: nobody else steps in
    assert leaders(pair) == [leader]
    assert not follower.elector.elected.is_set()


async def test_crashed_leader_is_replaced_within_ttl(pair: list[Replica]) -> None:
    await until(lambda: len(leaders(pair)) == 1)
    old = leaders(pair)[0]
    other = next(r for r in pair if r is not old)
    await old.stop(graceful=False)  # keepalive stops, the lease is left to expire
    assert await old.elector.current_leader() == old.elector.identity  # not released
    took = await until(lambda: other.elector.is_leader, timeout=10)
    assert took <= old.elector.ttl + 1.5
    assert await other.elector.current_leader() == other.elector.identity


async def test_graceful_stop_hands_over_at_once(pair: list[Replica]) -> None:
    await until(lambda: len(leaders(pair)) == 1)
    old = leaders(pair)[0]
    other = next(r for r in pair if r is not old)
    await old.stop()
    took = await until(lambda: other.elector.is_leader, timeout=5)
    assert took < 1.0


async def test_deposed_leader_cannot_write(etcd_cluster: EtcdCluster, prefix: str,
                                           rstore: store.ResourceStore) -> None:
    a = Replica(etcd_cluster, prefix, "a")
    try:
        await until(lambda: a.elector.is_leader)
        stale_fence = a.elector.fence()
        # Someone deletes the key (an operator, or the lease expired during a pause):
        await rstore.etcd.txn([], [store.Delete(a.elector.key)])
        await until(lambda: a.elector.terms >= 2 or not a.elector.is_leader)
        await until(lambda: a.elector.is_leader)  # it campaigns again, on a new key
        assert a.elector.fence() != stale_fence
        # A write carrying the fence of the lost term fails and writes nothing.
        target = prefix + "/v1/probe"
        res = await rstore.etcd.txn([stale_fence], [Put(target, b"x")])
        assert not res.succeeded
        assert (await rstore.etcd.get(target))[0] is None
    finally:
        await a.close()


async def test_leader_notices_a_taken_over_key_and_recampaigns(pair: list[Replica],
                                                               rstore: store.ResourceStore) -> None:
    await until(lambda: len(leaders(pair)) == 1)
    old = leaders(pair)[0]
    terms = old.elector.terms
    lost = asyncio.create_task(old.elector.wait_lost())
    await rstore.etcd.txn([], [store.Delete(old.elector.key)])
    await asyncio.wait_for(lost, 5)
    # Somebody leads again, exactly one, and the old term's fence is dead.
    await until(lambda: len(leaders(pair)) == 1 and
                (leaders(pair)[0] is not old or old.elector.terms > terms))


async def test_lease_loss_ends_leadership(pair: list[Replica],
                                          rstore: store.ResourceStore) -> None:
    await until(lambda: len(leaders(pair)) == 1)
    old = leaders(pair)[0]
    await rstore.etcd.lease_revoke(old.elector.lease_id)  # etcd drops the lease and key
    await asyncio.wait_for(old.elector.wait_lost(), 5)
    await until(lambda: len(leaders(pair)) == 1)


# -- the runner: workers only while leading ----------------------------------------

class Mirror(Controller):
    """Copies <prefix>/in/<k> to <prefix>/out/<k>, fenced; fails once on "boom"."""

    name = "mirror"

    def __init__(self, prefix: str) -> None:
        self.src, self.dst = prefix + "/in/", prefix + "/out/"
        self.failed: set[Hashable] = set()

    def informers(self) -> list[InformerSpec]:
        return [InformerSpec(self.src)]

    def keys_for_event(self, key: str, old: Any, new: Any) -> Iterable[Hashable]:
        return [key.removeprefix(self.src)]

    async def reconcile(self, key: Hashable) -> float | None:
        value = self.ctx.cache(self.src).get(self.src + str(key))
        if value == "boom" and key not in self.failed:
            self.failed.add(key)
            raise RuntimeError("first attempt fails")
        op = Put(self.dst + str(key), str(value).encode()) if value is not None \
            else store.Delete(self.dst + str(key))
        res = await self.ctx.store.etcd.txn([self.ctx.elector.fence()], [op])
        if not res.succeeded:
            raise NotLeader("fenced off")
        return None


async def test_runner_reconciles_only_while_leading_and_hands_over(
        etcd_cluster: EtcdCluster, prefix: str, rstore: store.ResourceStore) -> None:
    etcd = rstore.etcd
    await etcd.txn([], [Put(prefix + "/in/a", b"1")])
    runners = [ControllerRunner(rstore, [Mirror(prefix)], f"r{i}", lease_ttl=2,
                                backoff_base=0.01) for i in range(2)]
    tasks = [asyncio.create_task(r.run()) for r in runners]
    try:
        await until(lambda: any(r.elector("mirror").is_leader for r in runners))
        leader = next(r for r in runners if r.elector("mirror").is_leader)
        follower = next(r for r in runners if r is not leader)

        async def out(k: str) -> bytes | None:
            kv = (await etcd.get(prefix + "/out/" + k))[0]
            return kv.value if kv else None

        async def until_out(k: str, want: bytes | None) -> None:
            deadline = asyncio.get_running_loop().time() + 10
            while await out(k) != want:
                assert asyncio.get_running_loop().time() < deadline, f"{k} never became {want!r}"
                await asyncio.sleep(0.02)

        await until_out("a", b"1")  # the first pass after election
        await etcd.txn([], [Put(prefix + "/in/b", b"boom")])
        await until_out("b", b"boom")  # failed once, retried with backoff
        assert leader.stats("mirror").errors == 1
        assert follower.stats("mirror").reconciles == 0

        tasks[runners.index(leader)].cancel()  # graceful: the lease is revoked
        await asyncio.gather(tasks[runners.index(leader)], return_exceptions=True)
        await until(lambda: follower.elector("mirror").is_leader, timeout=3)
        await etcd.txn([], [Put(prefix + "/in/c", b"3")])
        await until_out("c", b"3")
        # a, b (after its failed first attempt's backoff) and c, in whatever order
        await until(lambda: follower.stats("mirror").reconciles >= 3, timeout=10)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
