"""An agent restarted on its node takes its heartbeat over; a live one is never displaced.

Two ``Heartbeats`` for one node id on one real etcd: while the first keeps
its lease alive the second waits (two live agents never take turns); once
the first stops refreshing (a SIGKILLed agent: its lease is abandoned, not
revoked), the second takes the key over before the lease expires, so the
node never looks down. A gracefully stopped holder (``release``: marked
``stoppedAt``, not revoked) is taken over at once, or expires with its lease.
"""

from __future__ import annotations

import asyncio
import json
import time

from kubeless import store
from kubeless_agent.heartbeat import Heartbeats
from kubeless_agent.identity import NodeIdentity
from lab.waiting import until

TTL = 4


def ident() -> NodeIdentity:
    return NodeIdentity.detect("twin", address="127.0.0.1", runtime="fake")


async def holder(rs: store.ResourceStore) -> int:
    kv, _ = await rs.etcd.get(rs.keys.heartbeat("twin"))
    return 0 if kv is None else kv.lease


async def test_a_live_holder_keeps_the_key_and_a_dead_one_is_taken_over(
        rstore: store.ResourceStore) -> None:
    first = Heartbeats(rstore.etcd, rstore.keys, [ident()], TTL)
    second = Heartbeats(rstore.etcd, rstore.keys, [ident()], TTL, retry_interval=0.2)
    runs = [asyncio.create_task(first.run())]
    try:
        await asyncio.wait_for(first.live.wait(), 10)
        runs.append(asyncio.create_task(second.run()))
        end = time.monotonic() + TTL  # a whole TTL: the live first never loses the key
        while time.monotonic() < end:
            assert await holder(rstore) == first.lease_id
            assert not second.live.is_set()
            await asyncio.sleep(0.2)
        runs[0].cancel()  # the first agent dies: no refresh, no revoke
        await asyncio.gather(runs[0], return_exceptions=True)
        assert first.lease is not None
        await first.lease.abandon()
        seen_absent = False

        async def taken() -> bool:
            nonlocal seen_absent
            lease = await holder(rstore)
            seen_absent = seen_absent or lease == 0
            return lease == second.lease_id
        await until(taken, TTL + 2, "the second agent holds the heartbeat")
        assert not seen_absent, "the heartbeat disappeared: the node looked down"
        kv, _ = await rstore.etcd.get(rstore.keys.heartbeat("twin"))
        assert kv is not None and json.loads(kv.value)["startedAt"] == second.started_at
    finally:
        for r in runs:
            r.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        await second.close()


async def test_a_gracefully_stopped_holder_is_taken_over_at_once(
        rstore: store.ResourceStore) -> None:
    """SIGTERM: the heartbeat is marked stopped, not revoked; the next agent takes it over
    at once (not after a missed refresh), and the key never disappears meanwhile."""
    ttl = 30  # a missed refresh would take 10 s to show: only the marker explains a quick takeover
    first = Heartbeats(rstore.etcd, rstore.keys, [ident()], ttl)
    run = asyncio.create_task(first.run())
    await asyncio.wait_for(first.live.wait(), 10)
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    await first.release()
    kv, _ = await rstore.etcd.get(rstore.keys.heartbeat("twin"))
    assert kv is not None and kv.lease == first.lease_id, "release must not revoke"
    assert json.loads(kv.value)["stoppedAt"]

    second = Heartbeats(rstore.etcd, rstore.keys, [ident()], ttl, retry_interval=0.2)
    runs = [asyncio.create_task(second.run())]
    try:
        await asyncio.wait_for(second.live.wait(), 5)  # far less than the 20 s of a dead holder
        kv, _ = await rstore.etcd.get(rstore.keys.heartbeat("twin"))
        assert kv is not None and kv.lease == second.lease_id
        assert "stoppedAt" not in json.loads(kv.value)
    finally:
        for r in runs:
            r.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        await second.close()
        await rstore.etcd.lease_revoke(first.lease_id)


async def test_a_stopped_holder_nobody_replaces_expires_with_its_lease(
        rstore: store.ResourceStore) -> None:
    first = Heartbeats(rstore.etcd, rstore.keys, [ident()], 2)
    run = asyncio.create_task(first.run())
    await asyncio.wait_for(first.live.wait(), 10)
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    await first.release()
    assert await holder(rstore) == first.lease_id
    await until(lambda: holder_gone(rstore), 2 + 2, "the heartbeat expired with its lease")


async def holder_gone(rs: store.ResourceStore) -> bool:
    return await holder(rs) == 0
