"""Controllers fail over and ride out etcd outages, with real process boundaries.

Two ``python -m controllers`` processes (2 s leases, distinct identities)
compete for leadership; the leader is SIGKILLed and the other must lead
within TTL + 1.5 s and keep reconciling, with never two tasks wanting to
run in one slot. A controller that loses etcd for a while (the member
stopped, then started again) resumes and converges. Both run beside a hollow
cluster (lab.hollow), over TLS: each controllers process as ``manager:<id>``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest

from kubeless import store
from lab.hollow import ROOT, HollowCluster, running, service
from lab.waiting import until
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration

CONTROLLERS = ("replication", "scheduler", "health")
TTL = 2


def spawn_controllers(etcd: EtcdCluster, prefix: str, identity: str,
                      metrics_port: int | None = None) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "controllers", *etcd.client_flags(f"manager:{identity}"),
            "--prefix", prefix,
            "--identity", identity, "--lease-ttl", str(TTL), "--log-level", "WARNING"]
    if metrics_port is not None:
        args += ["--metrics-port", str(metrics_port)]
    return subprocess.Popen(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            start_new_session=True)


async def leaders(c: HollowCluster) -> dict[str, str]:
    kvs, _ = await c.store.etcd.list_prefix(c.store.keys.root + "leaders/")
    return {kv.key.rsplit("/", 1)[-1]: kv.value.decode() for kv in kvs}


def cli(c: HollowCluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBELESS_PREFIX": c.prefix, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "kubeless_cli.main", *c.client_flags(), *args],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=30)


def manager_column(ls: str) -> dict[str, str]:
    rows = ls.splitlines()
    at, end = rows[0].index("MANAGER STATUS"), rows[0].index("ENGINE VERSION")
    return {r.split()[0]: r[at:end].strip() for r in rows[1:]}


async def test_leader_failover(etcd_cluster: EtcdCluster, prefix: str,
                               procs: list[subprocess.Popen[bytes]]) -> None:
    async with HollowCluster(etcd_cluster.endpoints, prefix, controllers=False,
                             tls=etcd_cluster.client_tls) as c:
        await c.add_group("m", 2, role="manager")  # m-0, m-1: the controllers' hosts
        await c.add_group("w", 3)
        await c.apply(service("web", 6))
        by_id = {"m-0": spawn_controllers(etcd_cluster, prefix, "m-0"),
                 "m-1": spawn_controllers(etcd_cluster, prefix, "m-1")}
        procs.extend(by_id.values())
        watch = c.watch("web")
        await c.wait_running("web", 6, timeout=30)
        found = await until(lambda: _all_led(c), 10, "every controller led")
        leader = found["replication"]
        assert set(found.values()) <= set(by_id)

        ls = await asyncio.to_thread(cli, c, "node", "ls")
        assert ls.returncode == 0, ls.stderr
        status = manager_column(ls.stdout)
        assert status[leader] == "Leader"
        other = "m-1" if leader == "m-0" else "m-0"
        assert status[other] in ("Reachable", "Leader")  # leads none, or some controller
        assert status["w-0"] == ""

        # Kill every process that leads something (both may share the controllers).
        killed = set(found.values())
        survivor = next(iter(set(by_id) - killed), None)
        if survivor is None:  # both lead some controller: kill one, the other takes all
            killed = {leader}
            survivor = other
        killed_at = time.monotonic()
        for ident in killed:
            by_id[ident].send_signal(signal.SIGKILL)
            by_id[ident].wait()
        took = await until(lambda: _led_by(c, survivor, killed_at), TTL + 5,
                           f"{survivor} leads every controller")
        assert took < TTL + 1.5, f"failover took {took:.2f}s"

        await c.scale("web", 9)
        tasks = await c.wait_running("web", 9, timeout=20)
        assert len(running(tasks)) == 9
        await c.scale("web", 4)
        await c.wait_running("web", 4, timeout=20)
        await watch.stop()
        assert watch.violations == [], watch.violations[:5]

        async def unreachable() -> bool:
            ls = await asyncio.to_thread(cli, c, "node", "ls")
            col = manager_column(ls.stdout)
            return col[survivor] == "Leader" and all(col[k] == "Unreachable" for k in killed)
        await until(unreachable, TTL + 5, "node ls shows Leader and Unreachable")


async def _all_led(c: HollowCluster) -> dict[str, str] | None:
    found = await leaders(c)
    return found if set(found) >= set(CONTROLLERS) else None


async def _led_by(c: HollowCluster, identity: str, since: float) -> float | None:
    found = await leaders(c)
    if all(found.get(name) == identity for name in CONTROLLERS):
        return time.monotonic() - since
    return None


@pytest.fixture
async def own_cluster(own_etcd: EtcdCluster,
                      prefix: str) -> AsyncIterator[HollowCluster]:
    async with HollowCluster(own_etcd.endpoints, prefix, tls=own_etcd.client_tls) as c:
        yield c


async def test_controllers_survive_etcd_outage(own_etcd: EtcdCluster,
                                               own_cluster: HollowCluster) -> None:
    c = own_cluster
    await c.add_group("n", 3)
    await c.apply(service("web", 3))
    await c.wait_running("web", 3)
    member = own_etcd.members[0]
    await asyncio.to_thread(own_etcd.stop_member, member)
    await asyncio.sleep(TTL + 2)  # an outage longer than every lease: on purpose
    await asyncio.to_thread(own_etcd.start_member, member)
    c.check_controllers()
    await c.wait_nodes_ready([f"n-{i}" for i in range(3)], timeout=30)
    await until(lambda: _leading(c), 20, "controllers lead again")
    await c.scale("web", 5)
    tasks = await c.wait_running("web", 5, timeout=30)
    assert len(running(tasks)) == 5
    c.check_controllers()


def _leading(c: HollowCluster) -> bool:
    assert c.runner is not None
    return all(c.runner.elector(n).is_leader for n in CONTROLLERS)


del store
