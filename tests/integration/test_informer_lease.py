"""The informer across etcd restarts and compactions, and the kept lease."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from kubeless import store
from kubeless.store import KeyValue, Put
from kubeless.store.codec import decode
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration


def plain(kv: KeyValue) -> Any:
    return decode(kv.key, kv.value)


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.02)


async def put(etcd: store.Etcd, key: str, value: str) -> int:
    return (await etcd.txn([], [Put(key, value.encode())])).revision


async def test_informer_lists_then_watches(rstore: store.ResourceStore, prefix: str) -> None:
    etcd = rstore.etcd
    base = prefix + "/inf/"
    await put(etcd, base + "a", "1")
    inf = store.Informer(etcd, base, plain)
    seen: list[tuple[str, Any, Any]] = []
    inf.add_handler(lambda k, old, new: seen.append((k, old, new)))
    runner = asyncio.create_task(inf.run())
    try:
        await asyncio.wait_for(inf.synced.wait(), 5)
        assert inf.cache == {base + "a": 1}
        rev = await put(etcd, base + "b", "2")
        await inf.wait_for_revision(rev, 5)
        await etcd.txn([], [store.Delete(base + "a")])
        await until(lambda: base + "a" not in inf.cache)
        assert inf.cache == {base + "b": 2}
        assert (base + "a", 1, None) in seen
    finally:
        runner.cancel()


async def test_informer_resumes_after_etcd_restart(own_etcd: EtcdCluster) -> None:
    etcd = store.Etcd(store.parse_endpoints(own_etcd.endpoints), retry_for=2,
                      tls=own_etcd.client_tls())
    inf = store.Informer(etcd, "/r/", plain, backoff_max=0.3)
    runner = asyncio.create_task(inf.run())
    try:
        await put(etcd, "/r/a", "1")
        await until(lambda: "/r/a" in inf.cache)
        member = own_etcd.members[0]
        own_etcd.stop_member(member)
        await until(lambda: inf.resumes > 0)
        own_etcd.start_member(member)
        await put(etcd, "/r/b", "2")
        await until(lambda: inf.cache.get("/r/b") == 2, 20)
        assert inf.relists == 1, "a restart resumes the watch; it does not list again"
    finally:
        runner.cancel()
        await etcd.close()


async def test_informer_relists_after_compaction(own_etcd: EtcdCluster) -> None:
    etcd = store.Etcd(store.parse_endpoints(own_etcd.endpoints), retry_for=2,
                      tls=own_etcd.client_tls())
    inf = store.Informer(etcd, "/c/", plain, backoff_max=0.3)
    runner = asyncio.create_task(inf.run())
    try:
        await put(etcd, "/c/gone", "1")
        await until(lambda: "/c/gone" in inf.cache)
        runner.cancel()  # the informer is away...
        await asyncio.gather(runner, return_exceptions=True)
        # ...while keys change and a compaction passes its revision.
        await etcd.txn([], [store.Delete("/c/gone")])
        await put(etcd, "/c/new", "2")
        await etcd.compact(await put(etcd, "/other", "x"))
        runner = asyncio.create_task(inf.run())  # resumes from its old revision
        await until(lambda: inf.relists == 2 and inf.cache == {"/c/new": 2}, 20)
    finally:
        runner.cancel()
        await etcd.close()


async def test_informer_skips_undecodable_values(rstore: store.ResourceStore,
                                                 prefix: str) -> None:
    base = prefix + "/bad/"
    inf = store.Informer(rstore.etcd, base, plain)
    runner = asyncio.create_task(inf.run())
    try:
        await inf.synced.wait()
        rev = await put(rstore.etcd, base + "x", "{broken: [")
        await put(rstore.etcd, base + "y", "ok")
        await until(lambda: base + "y" in inf.cache)
        assert base + "x" not in inf.cache
        assert "not valid YAML" in inf.invalid[base + "x"]
        assert rev
    finally:
        runner.cancel()


async def test_kept_lease_keeps_bound_key_alive(rstore: store.ResourceStore, prefix: str) -> None:
    etcd = rstore.etcd
    key = prefix + "/alive"
    async with store.KeptLease(etcd, ttl=2) as lease:
        await etcd.txn([], [Put(key, b"x", lease=lease.id)])
        await until(lambda: lease.refreshes >= 4, 10)  # > 2 TTLs have passed
        kv, _ = await etcd.get(key)
        assert kv is not None and not lease.lost.is_set()
    kv, _ = await etcd.get(key)
    assert kv is None, "revoking the lease removes its keys at once"


async def test_kept_lease_reports_loss(rstore: store.ResourceStore) -> None:
    async with store.KeptLease(rstore.etcd, ttl=2) as lease:
        await rstore.etcd.lease_revoke(lease.id)  # as if it had expired
        await asyncio.wait_for(lease.lost.wait(), 5)
        with pytest.raises(store.LeaseLost):
            lease.check()
