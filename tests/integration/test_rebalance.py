"""Rebalancing on hollow nodes, and ``kubeless service rebalance``/``--rebalance`` as a user
runs them: the rollout controller with replication, scheduler and health (2 s leases) on
groups of hollow nodes (fake runtime) against the session's TLS etcd."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml

from kubeless.api.rollout_annotations import REBALANCE_REQUESTED
from lab.hollow import HollowCluster, RolloutCluster, per_node, running, service
from lab.waiting import hold, until
from tests.support.hollow_cli import cli
from tests.integration.test_rollout import Sampler
from tests.support.cli import Run
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration
Resource = dict[str, Any]


@pytest.fixture
async def cluster(etcd_cluster: EtcdCluster, prefix: str) -> AsyncIterator[RolloutCluster]:
    async with RolloutCluster(etcd_cluster.endpoints, prefix, tls=etcd_cluster.client_tls) as c:
        await c.add_group("a", 2)
        yield c


def web(replicas: int, *, rebalance: bool, order: str) -> Resource:
    svc = service("web", replicas, placement={"rebalance": True} if rebalance else None)
    svc["spec"]["update"] = {"parallelism": 1, "order": order, "monitor": "200ms"}
    return svc


async def spread(c: HollowCluster) -> list[int] | None:
    """Running tasks per node (every node), once the rebalance says it is even."""
    c.check_controllers()
    balance = (await c.status("web")).get("rebalance") or {}
    if balance.get("state") != "balanced":
        return None
    counts = per_node(running(await c.tasks("web")))
    return sorted(counts.get(n, 0) for g in c.groups.values() for n in g.node_ids)


async def test_a_joining_node_gets_its_share_start_first(cluster: RolloutCluster) -> None:
    await cluster.apply(web(4, rebalance=True, order="start-first"))
    tasks = await cluster.wait_running("web", 4)
    assert sorted(per_node(running(tasks)).values()) == [2, 2]
    lowest = Sampler(cluster)
    await cluster.add_group("b", 1)  # b-0 joins: 2, 2, 0
    assert await until(lambda: _moved_spread(cluster), 30, "b-0 gets a task") == [1, 1, 2]
    await lowest.stop()
    assert lowest.lowest >= 4, "start-first: never fewer than 4 running"
    balance = (await cluster.status("web"))["rebalance"]
    assert balance["state"] == "balanced" and balance["moved"] == 1, balance
    assert (await cluster.status("web"))["updateStatus"].get("state") is None  # no rollout


async def _moved_spread(c: HollowCluster) -> list[int] | None:
    got = await spread(c)
    return got if got is not None and got[0] >= 1 else None


async def test_a_one_shot_request_through_the_cli(cluster: RolloutCluster) -> None:
    await cluster.apply(web(6, rebalance=False, order="stop-first"))
    await cluster.wait_running("web", 6)
    await cluster.add_group("b", 1)
    await hold(1.5, lambda: _untouched(cluster), "no rebalance without asking")
    res = await asyncio.to_thread(cli, cluster, "service", "rebalance", "web")
    assert (res.returncode, res.stdout, res.stderr) == \
        (0, "service default/web: rebalance requested\n", "")
    assert await until(lambda: _moved_spread(cluster), 30, "b-0 gets its share") == [2, 2, 2]
    svc = await cluster.store.get("Service", "web", "default")
    assert svc is not None and svc["metadata"]["generation"] == 1  # an annotation: no rollout
    asked = float(svc["metadata"]["annotations"][REBALANCE_REQUESTED])
    balance = svc["status"]["rebalance"]
    assert balance["requested"] == asked and balance["moved"] == 2, balance
    shown = await asyncio.to_thread(cli, cluster, "describe", "service", "web")
    status = yaml.safe_load(shown.stdout.split("\nStatus:\n", 1)[1].split("\nEvents:", 1)[0])
    assert status["rebalance"]["state"] == "balanced", shown.stdout


async def _untouched(c: HollowCluster) -> bool:
    tasks = await c.tasks("web")
    return len(tasks) == 6 and "b-0" not in per_node(running(tasks))


def test_cli_rebalance_flags_and_refusals(kubeless: Run) -> None:
    res = kubeless("service", "create", "-d", "--name", "web", "--replicas", "2", "--rebalance",
                   "web:1")
    assert res.returncode == 0, res.stderr
    doc = yaml.safe_load(kubeless("get", "svc", "web", "-o", "yaml").stdout)
    assert doc["spec"]["placement"]["rebalance"] is True
    assert kubeless("service", "update", "-d", "--no-rebalance", "web").returncode == 0
    doc = yaml.safe_load(kubeless("get", "svc", "web", "-o", "yaml").stdout)
    assert "rebalance" not in doc["spec"].get("placement", {})  # absent: off
    res = kubeless("service", "rebalance", "web")
    assert (res.returncode, res.stdout) == (0, "service default/web: rebalance requested\n")
    after = yaml.safe_load(kubeless("get", "svc", "web", "-o", "yaml").stdout)
    assert REBALANCE_REQUESTED in after["metadata"]["annotations"]
    assert after["metadata"]["generation"] == doc["metadata"]["generation"]

    kubeless("service", "create", "-d", "--name", "g", "--mode", "global", "web:1")
    job = {"apiVersion": "kubeless.io/v1", "kind": "Service",
           "metadata": {"name": "j", "namespace": "default"},
           "spec": {"mode": "replicated-job", "replicas": 2, "template": {"image": "web:1"}}}
    assert kubeless("apply", "-f", "-", stdin=yaml.safe_dump(job)).returncode == 0
    for name, mode in (("g", "global"), ("j", "replicated-job")):
        before = kubeless("get", "svc", name, "-o", "yaml").stdout
        res = kubeless("service", "rebalance", name)
        assert res.returncode == 1 and "Traceback" not in res.stderr
        assert res.stderr == f"error: service default/{name} is {mode}: only a replicated " \
                             "service rebalances\n"
        assert kubeless("get", "svc", name, "-o", "yaml").stdout == before  # nothing written
    res = kubeless("service", "rebalance", "nope")
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and "not found" in res.stderr
    res = kubeless("service", "update", "-d", "--rebalance", "g")
    assert res.returncode != 0 and "only mode replicated rebalances" in res.stderr
