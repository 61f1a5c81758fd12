"""Losing one etcd member of three is invisible to clients.

A real 3-member etcd on loopback, with etcd's default timing (heartbeat
100 ms, election 1 s) and TLS between members and to clients, as users run
it. Eight clients keep reads and compare-and-swap writes in flight on one
``Etcd`` connection while a member is SIGKILLed: the leader (an election
follows) or a follower. No call may fail, and every client makes progress
after the kill.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import pytest

from kubeless.store import Compare, Etcd, Put, StoreError, parse_endpoints
from lab.waiting import until
from tests.support.etcd_server import EtcdCluster, Member

pytestmark = pytest.mark.integration

CLIENTS = 8


@pytest.fixture
def three() -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(3, extra_args=("--heartbeat-interval", "100",  # etcd's defaults
                                         "--election-timeout", "1000"), tls=True)
    cluster.start()
    yield cluster
    cluster.stop()


async def leader(cluster: EtcdCluster, among: list[Member]) -> Member | None:
    """The member every live one in ``among`` agrees leads, else None."""
    ids, leaders = {}, set()
    for m in among:
        one = Etcd(parse_endpoints(m.client_url), call_timeout=0.5, retry_for=0.5,
                   tls=cluster.client_tls())
        try:
            status = await one.status()
            ids[status.header.member_id] = m
            leaders.add(status.leader)
        except StoreError:
            return None
        finally:
            await one.close()
    return ids.get(leaders.pop()) if len(leaders) == 1 else None


async def swap_forever(etcd: Etcd, key: str, done: list[int], errors: list[str]) -> None:
    """Read then compare-and-swap ``key`` in a loop: a call is always in flight."""
    while True:
        try:
            kv, _ = await etcd.get(key)
            rev = kv.mod_revision if kv is not None else 0
            await etcd.txn([Compare(key, "mod", "==", rev)], [Put(key, b"%d" % len(done))])
            done.append(1)
        except StoreError as err:
            errors.append(f"{type(err).__name__}: {err}")


@pytest.mark.parametrize("victim", ["leader", "follower", "leader again"])
async def test_a_member_killed_under_load_fails_no_call(three: EtcdCluster, victim: str) -> None:
    members = list(three.members)
    if victim == "leader again":  # a second election in the same cluster's life
        first = await until(lambda: leader(three, members), 20, "a leader")
        three.stop_member(first, signal.SIGKILL)
        three.start_member(first)
    current = await until(lambda: leader(three, members), 20, "a leader")
    target = current if victim.startswith("leader") else next(m for m in members if m is not current)

    etcd = Etcd(parse_endpoints(three.endpoints), tls=three.client_tls())  # every role's defaults
    done: list[list[int]] = [[] for _ in range(CLIENTS)]
    errors: list[str] = []
    loops = [asyncio.create_task(swap_forever(etcd, f"/loss/{i}", done[i], errors))
             for i in range(CLIENTS)]
    try:
        await until(lambda: all(len(d) >= 5 for d in done), 20, "every client writing")
        three.stop_member(target, signal.SIGKILL)
        before = [len(d) for d in done]
        survivors = [m for m in members if m is not target]
        await until(lambda: leader(three, survivors), 10, "a leader among the survivors")
        await until(lambda: all(len(d) >= b + 5 for d, b in zip(done, before)), 20,
                    "every client writing again")
    finally:
        for t in loops:
            t.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        await etcd.close()
    assert errors == []
