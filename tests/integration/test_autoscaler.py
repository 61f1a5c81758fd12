"""The autoscaler on hollow nodes, with load reports the test writes itself.

Replication, scheduler, health and the autoscaler (evaluating every 0.3 s) run
against the session's TLS etcd; one group of hollow nodes runs the tasks. A
background reporter puts ``agents/<node>/load`` for each node every 0.2 s,
every running task of the service at the CPU the test sets: a scale-up comes
at once, a scale-down only after ``scaleDownDelay`` of low load, and neither
makes a new generation or a previous spec for a rollback to undo.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controllers.autoscaler.controller import AutoscalerController
from controllers.framework import Controller
from controllers.view import ClusterView
from kubeless import store
from kubeless.api import rollout_annotations as ann
from kubeless.api.service_writes import scaled
from kubeless.store.services import replace_service
from lab.hollow import HollowCluster, running, service
from lab.waiting import until
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration
Resource = dict[str, Any]
DELAY = 3.0


class AutoscaleCluster(HollowCluster):
    def make_controllers(self, ctl_store: store.ResourceStore,
                         view: ClusterView) -> list[Controller]:
        return [*super().make_controllers(ctl_store, view),
                AutoscalerController(ctl_store, view, period=0.3)]


class Reporter:
    """Puts every node's load report, each running task of ``web`` at ``cpu`` cores."""

    def __init__(self, c: HollowCluster, nodes: list[str]) -> None:
        self.c, self.nodes, self.cpu = c, nodes, 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            tasks = running(await self.c.tasks("web"))
            for node in self.nodes:
                mine = {t["metadata"]["name"]: {"namespace": "default", "service": "web",
                                                "cpu": self.cpu, "memory": 1000}
                        for t in tasks if t["spec"].get("nodeName") == node}
                value = {"node": node, "timestamp": time.time(), "period": 0.2,
                         "host": {"cpu": 0.1, "memory": 1, "cpus": 2, "memoryTotal": 2},
                         "tasks": mine, "connections": {}}
                await self.c.store.etcd.txn([], [store.Put(self.c.store.keys.load(node),
                                                           json.dumps(value).encode())])
            await asyncio.sleep(0.2)

    async def __aenter__(self) -> Reporter:
        self._task = asyncio.create_task(self._run(), name="load reporter")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture
async def cluster(etcd_cluster: EtcdCluster, prefix: str) -> AsyncIterator[AutoscaleCluster]:
    async with AutoscaleCluster(etcd_cluster.endpoints, prefix,
                                tls=etcd_cluster.client_tls) as c:
        await c.add_group("a", 2)
        yield c


def web(replicas: int = 1) -> Resource:
    svc = service("web", replicas, reservations={"cpus": 0.5})
    svc["spec"]["autoscale"] = {"min": 1, "max": 4, "targetCPU": 50,
                                "scaleDownDelay": f"{DELAY:g}s"}
    return svc


async def replicas_become(c: HollowCluster, count: int, timeout: float = 30) -> Resource:
    async def reached() -> Resource | None:
        c.check_controllers()
        svc = await c.store.get("Service", "web", "default")
        return svc if svc and svc["spec"]["replicas"] == count else None
    found: Resource = await until(reached, timeout, f"web at {count} replicas")
    return found


async def test_scales_up_at_once_and_down_after_the_delay(cluster: AutoscaleCluster) -> None:
    c = cluster
    created = await c.apply(web())
    await c.wait_running("web", 1)
    nodes = sorted({n for n in c.groups["a"].node_ids})
    async with Reporter(c, nodes) as load:
        load.cpu = 1.0  # 200% of the 0.5 CPU reserved, target 50%: four times too busy
        up = await replicas_become(c, 4)
        assert up["metadata"]["generation"] == created["metadata"]["generation"]
        assert ann.PREVIOUS_SPEC not in (up["metadata"].get("annotations") or {})
        status = await until(lambda: autoscale_status(c, desired=4), 20, "status desired 4")
        # the last decision may already be the next one (the new tasks not yet counted)
        assert status.get("lastScaleTime") and status["lastDecision"]["to"] == 4, repr(status)
        await c.wait_running("web", 4, timeout=30)

        low_since = time.time()
        load.cpu = 0.0
        await until(lambda: holding(c), 20, "a holding decision")
        down = await replicas_become(c, 1)
        status = await until(lambda: autoscale_status(c, desired=1), 20, "status desired 1")
        scaled_at = float(status["lastScaleTime"])
        # the last busy report was evaluated at low_since at the latest: the delay runs
        # from there (a lower bound only; a loaded machine makes it later, never sooner)
        assert scaled_at >= low_since + DELAY - 0.5
        assert down["metadata"]["generation"] == created["metadata"]["generation"]

    async def scaled_events() -> list[str] | None:  # each scale is an Event on the service
        kvs, _ = await c.store.etcd.list_prefix(c.store.keys.events_prefix() + "default/")
        found = [json.loads(kv.value) for kv in kvs]
        texts = [e["message"] for e in found if e["reason"] == "Scaled"
                 and e["involvedObject"] == {"kind": "Service", "name": "web",
                                             "namespace": "default"}]
        return texts if len(texts) >= 2 else None
    texts = await until(scaled_events, 20, "a Scaled event up and one down")
    assert any("-> 4" in t for t in texts) and any("-> 1" in t for t in texts), texts


async def autoscale_status(c: HollowCluster, **wanted: Any) -> Resource | None:
    """``status.autoscale`` once it says what ``wanted`` says, else None."""
    found = (await c.status("web")).get("autoscale") or {}
    return found if all(found.get(k) == v for k, v in wanted.items()) else None


async def holding(c: HollowCluster) -> bool:
    last = ((await c.status("web")).get("autoscale") or {}).get("lastDecision") or {}
    return last.get("kind") == "holding"


async def test_waits_for_reports_and_clamps_to_min_at_once(cluster: AutoscaleCluster) -> None:
    c = cluster
    svc = web(0)  # below min: brought to 1 with no report at all
    await c.apply(svc)
    await replicas_become(c, 1)
    await c.wait_running("web", 1)

    async def waiting() -> bool:
        last = ((await c.status("web")).get("autoscale") or {}).get("lastDecision") or {}
        return last.get("reason") == "waiting for load reports"
    await until(waiting, 20, "waiting for load reports")


async def test_a_deposed_leaders_write_fails(cluster: AutoscaleCluster) -> None:
    c = cluster
    await c.apply(web())
    await c.wait_running("web", 1)
    assert c.runner is not None
    fence = c.runner.elector("autoscaler").fence()  # the old leader's, as it wrote with
    await c.stop_controllers()
    await c.start_controllers()  # a new term: another leader key
    live = await c.store.get("Service", "web", "default")
    with pytest.raises(store.Conflict):
        await replace_service(c.store, "web", "default", lambda s: scaled(s, 3),
                              what="autoscaling service web", read=live, fence=fence)
    assert (await c.store.get("Service", "web", "default"))["spec"]["replicas"] == 1  # type: ignore[index]
