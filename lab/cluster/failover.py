"""``python -m lab failover``: what losing one etcd member costs clients.

Starts the managers of the test cluster (3 etcd members, no workers needed),
then ``--rounds`` times kills one member, the leader and a follower in turn,
while eight clients keep a read and a compare-and-swap write in flight on one
connection with every role's defaults. Per round it prints the time until the
survivors agree on a leader, the longest any client call took, and every
call that failed (there should be none); then it starts the member again.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from kubeless import store
from kubeless.store import Compare, Put
from lab.cluster import waits
from lab.cluster.harness import Cluster, Host, run_sync

CLIENTS = 8


async def _swap(etcd: store.Etcd, key: str, stop: asyncio.Event, slowest: list[float],
                errors: list[str]) -> None:
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            kv, _ = await etcd.get(key)
            await etcd.txn([Compare(key, "mod", "==", kv.mod_revision if kv else 0)],
                           [Put(key, b"x")])
        except store.StoreError as err:
            errors.append(f"{type(err).__name__}: {err}")
        slowest[0] = max(slowest[0], time.monotonic() - t0)


async def one_round(c: Cluster, victim_is_leader: bool) -> tuple[str, float, float, list[str]]:
    leader = await waits.until(lambda: waits.etcd_leader(c), 30, "an etcd leader")
    victim: Host = leader if victim_is_leader else next(h for h in c.managers if h is not leader)
    etcd = store.Etcd(store.parse_endpoints(c.endpoints), tls=c.client_tls)
    stop, slowest, errors = asyncio.Event(), [0.0], list[str]()
    loops = [asyncio.create_task(_swap(etcd, f"/failover/{i}", stop, slowest, errors))
             for i in range(CLIENTS)]
    try:
        await asyncio.sleep(1.0)  # the clients are busy when the member dies
        t0 = time.monotonic()
        c.kill(victim, ["etcd"])
        survivors = [h for h in c.managers if h is not victim]
        await waits.until(lambda: waits.etcd_leader(c, survivors), 30, "a leader", interval=0.02)
        elected = time.monotonic() - t0
        await asyncio.sleep(3.0)  # clients keep going through and after the election
    finally:
        stop.set()
        await asyncio.gather(*loops, return_exceptions=True)
        await etcd.close()
    c.start_part(victim, "etcd")
    c.wait_etcd(60)
    return victim.name, elected, slowest[0], errors


def failover(args: argparse.Namespace) -> int:
    cluster = Cluster(args.managers, 0)
    failed = 0
    with cluster:
        for i in range(args.rounds):
            role = "leader" if i % 2 == 0 else "follower"
            name, elected, slowest, errors = run_sync(one_round(cluster, role == "leader"))
            failed += len(errors)
            print(f"round {i + 1:2}: {role:8} ({name}) killed: leader after {elected:.2f}s, "
                  f"slowest client call {slowest:.2f}s, {len(errors)} failed calls"
                  + "".join(f"\n    {e}" for e in errors[:3]), flush=True)
    print(f"{args.rounds} rounds, {failed} failed calls")
    return 1 if failed else 0
