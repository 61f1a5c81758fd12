"""Rolling updates and rollbacks on hollow nodes: the rollout controller with the others.

Each test runs replication, scheduler, health and rollout (2 s leases) on
two groups of hollow nodes (fake runtime: an image ending ``:fail`` fails
at start) against the session's TLS etcd, changes a 4-replica service the way ``service update`` does
(``kubeless.api.service_writes.merge``: generation bumped, previous spec
kept), and samples the tasks in the background.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from kubeless import store
from kubeless.api import rollout_annotations as ann
from kubeless.api import validate
from kubeless.api.service_writes import merge
from kubeless.api.tasks import created_at
from kubeless_cli.rollout_cmds import roll_back
from lab.hollow import ROOT, HollowCluster, RolloutCluster, service
from lab.waiting import hold, until
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration
Resource = dict[str, Any]



@pytest.fixture
async def cluster(etcd_cluster: EtcdCluster, prefix: str) -> AsyncIterator[RolloutCluster]:
    async with RolloutCluster(etcd_cluster.endpoints, prefix, tls=etcd_cluster.client_tls) as c:
        await c.add_group("a", 2)
        await c.add_group("b", 2)
        yield c


def web(image: str = "web:1", **update: Any) -> Resource:
    svc = service("web", 4, image=image)
    cfg = {"parallelism": 1, "monitor": "200ms", **update}
    svc["spec"]["update"] = cfg
    svc["spec"]["rollback"] = {**cfg, "failureAction": "pause"}
    return svc


async def change(c: HollowCluster, edit: Callable[[Resource], None]) -> Resource:
    """``service update``: read, edit the spec, merge (previous spec kept), write."""
    for _ in range(10):
        live = await c.store.get("Service", "web", "default")
        assert live is not None
        desired = {k: v for k, v in live.items() if k != "status"}
        desired["spec"] = {**desired["spec"]}
        edit(desired["spec"])
        new, _, _ = merge(live, validate(desired))
        new.pop("status", None)
        try:
            return await c.store.update(new)
        except store.Conflict:
            continue
    raise AssertionError("could not update web")


def set_image(image: str) -> Callable[[Resource], None]:
    def edit(spec: Resource) -> None:
        spec["template"] = {**spec["template"], "image": image}
    return edit


async def update_status(c: HollowCluster) -> Resource:
    return (await c.status("web")).get("updateStatus") or {}


async def wait_state(c: HollowCluster, *states: str, timeout: float = 30) -> Resource:
    async def reached() -> Resource | None:
        c.check_controllers()
        svc = await c.store.get("Service", "web", "default")
        us = ((svc or {}).get("status") or {}).get("updateStatus") or {}
        ok = us.get("state") in states and \
            int(us.get("generation") or 0) >= int(svc["metadata"]["generation"])  # type: ignore[index]
        return us if ok else None
    try:
        return await until(reached, timeout, f"update state in {states}")  # type: ignore[no-any-return]
    except AssertionError:
        svc = await c.store.get("Service", "web", "default")
        tasks = [(t["metadata"]["name"][:5], t["spec"].get("slot"), image_of(t),
                  t["spec"]["desiredState"], t["status"].get("state")) for t in await c.tasks("web")]
        raise AssertionError(f"update state not in {states} within {timeout}s: "
                             f"generation {svc['metadata']['generation']}, "  # type: ignore[index]
                             f"status {(svc or {}).get('status')}, tasks {sorted(tasks, key=str)}")


def image_of(t: Resource) -> str:
    return str(t["spec"]["template"]["image"])


def running_images(tasks: list[Resource]) -> list[str]:
    return sorted(image_of(t) for t in tasks
                  if t["spec"].get("desiredState") == "running"
                  and (t.get("status") or {}).get("state") == "running")


class Sampler:
    """Counts running tasks (effective state running, whatever is desired) in the background."""

    def __init__(self, c: HollowCluster) -> None:
        self.c = c
        self.lowest = 10**9
        self.samples = 0
        self.doubled: list[Any] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            tasks = await self.c.tasks("web")
            up = [t for t in tasks if (t.get("status") or {}).get("state") == "running"]
            self.lowest = min(self.lowest, len(up))
            self.samples += 1
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def converged(c: HollowCluster, image: str = "web:1", **update: Any) -> None:
    await c.apply(web(image, **update))
    await c.wait_running("web", 4)


@pytest.mark.parametrize("order,parallelism,floor", [
    ("stop-first", 1, 3), ("stop-first", 2, 2), ("start-first", 1, 4), ("start-first", 2, 4)])
async def test_rolling_update(cluster: RolloutCluster, order: str, parallelism: int,
                              floor: int) -> None:
    await converged(cluster, order=order, parallelism=parallelism)
    sampler = Sampler(cluster)
    await change(cluster, set_image("web:2"))
    us = await wait_state(cluster, "completed")
    await sampler.stop()
    tasks = await cluster.tasks("web")
    assert running_images(tasks) == ["web:2"] * 4
    old = [t for t in tasks if image_of(t) == "web:1"]
    assert len(old) == 4 and all(t["spec"]["desiredState"] == "shutdown" for t in old)
    assert sampler.samples > 10 and sampler.lowest >= floor, (sampler.lowest, sampler.samples)
    assert us["completedAt"] >= us["startedAt"]
    svc = await cluster.store.get("Service", "web", "default")
    previous = ann.previous_spec(svc)  # type: ignore[arg-type]
    assert previous is not None and previous[1]["template"]["image"] == "web:1"


async def test_force_update_replaces_every_task_and_scaling_none(cluster: RolloutCluster) -> None:
    await converged(cluster, parallelism=0)
    before = {t["metadata"]["name"] for t in await cluster.tasks("web")}
    await change(cluster, lambda spec: spec.update(replicas=5))
    await cluster.wait_running("web", 5)
    assert before <= {t["metadata"]["name"] for t in await cluster.tasks("web")
                      if t["spec"]["desiredState"] == "running"}
    await change(cluster, lambda spec: spec.update(forceUpdate=1))
    await wait_state(cluster, "completed")
    tasks = await cluster.wait_running("web", 5)
    assert not before & {t["metadata"]["name"] for t in tasks
                         if t["spec"]["desiredState"] == "running"}


async def test_failing_image_pauses_after_the_first_batch(cluster: RolloutCluster) -> None:
    await converged(cluster, parallelism=1, monitor="3s")
    await change(cluster, set_image("web:fail"))
    us = await wait_state(cluster, "paused")
    assert "failure" in us["message"]
    async def three_old() -> bool:
        return running_images(await cluster.tasks("web")) == ["web:1"] * 3
    await hold(0.5, three_old, "the paused rollout takes nothing more down")
    tasks = await cluster.tasks("web")
    assert running_images(tasks) == ["web:1"] * 3, [  # only parallelism (1) old task went
        (t["metadata"]["name"][:5], t["metadata"]["creationTimestamp"], t["spec"]["slot"],
         image_of(t), t["spec"]["desiredState"], t["status"].get("state"),
         t["status"].get("timestamp"), t["status"].get("message")) for t in tasks]
    assert (await update_status(cluster))["state"] == "paused"


async def test_failing_image_rolls_back(cluster: RolloutCluster) -> None:
    await converged(cluster, parallelism=2, monitor="3s", failureAction="rollback")
    await change(cluster, set_image("web:fail"))
    us = await wait_state(cluster, "rollback_completed", timeout=40)
    assert "rolled back due to failure" in us["message"]
    svc = await cluster.store.get("Service", "web", "default")
    assert svc["spec"]["template"]["image"] == "web:1"  # type: ignore[index]
    assert ann.previous_spec(svc) is None  # type: ignore[arg-type]  # as Swarm
    tasks = await cluster.wait_running("web", 4)
    assert running_images(tasks) == ["web:1"] * 4


async def test_manual_rollback_swaps_current_and_previous(cluster: RolloutCluster) -> None:
    await converged(cluster, parallelism=0)
    await change(cluster, set_image("web:2"))
    await wait_state(cluster, "completed")
    await roll_back(cluster.store, "web", "default")
    us = await wait_state(cluster, "rollback_completed")
    assert us["message"].startswith("rollback completed")
    tasks = await cluster.wait_running("web", 4)
    assert running_images(tasks) == ["web:1"] * 4
    svc = await cluster.store.get("Service", "web", "default")
    previous = ann.previous_spec(svc)  # type: ignore[arg-type]
    assert previous is not None and previous[1]["template"]["image"] == "web:2"
    status = subprocess.run(
        [sys.executable, "-m", "kubeless_cli.main", *cluster.client_flags(),
         "--prefix", cluster.prefix, "rollout", "status", "service/web"],
        cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert status.returncode == 1 and "rolled back" in status.stdout


async def test_failover_mid_rollout_resumes(cluster: RolloutCluster) -> None:
    await converged(cluster, parallelism=1, delay="700ms")
    await change(cluster, set_image("web:2"))
    first = await wait_state(cluster, "updating")

    async def two_updated() -> bool:
        return running_images(await cluster.tasks("web")).count("web:2") >= 2
    await until(two_updated, 20, "two slots updated")
    await cluster.stop_controllers()
    cluster.identity = "another-manager"
    await cluster.start_controllers()
    us = await wait_state(cluster, "completed")
    assert us["startedAt"] == first["startedAt"]  # resumed, not restarted
    tasks = await cluster.tasks("web")
    assert sorted(map(image_of, tasks)).count("web:2") == 4  # no slot updated twice
    assert running_images(tasks) == ["web:2"] * 4


async def test_new_spec_mid_rollout_restarts_toward_it(cluster: RolloutCluster) -> None:
    await converged(cluster, parallelism=1, delay="500ms")
    await change(cluster, set_image("web:2"))

    async def one_updated() -> bool:
        return "web:2" in running_images(await cluster.tasks("web"))
    await until(one_updated, 20, "one slot updated")
    await change(cluster, set_image("web:3"))
    await wait_state(cluster, "completed", timeout=40)
    tasks = await cluster.wait_running("web", 4)
    assert running_images(tasks) == ["web:3"] * 4


async def test_pause_and_resume(cluster: RolloutCluster) -> None:
    await converged(cluster, parallelism=1, delay="300ms")
    live = await cluster.store.get("Service", "web", "default")
    assert live is not None
    await change(cluster, set_image("web:2"))
    await until(lambda: _annotate(cluster, {ann.PAUSED: "true"}), 5, "paused annotation")
    await wait_state(cluster, "paused")

    async def stays_paused() -> bool:  # the batch under way may end; no new batch starts
        return running_images(await cluster.tasks("web")).count("web:2") < 4
    await hold(1.0, stays_paused, "the update stays unfinished while paused")
    await until(lambda: _annotate(cluster, {ann.RESUMED: "1"}, drop=ann.PAUSED), 5, "resume")
    await wait_state(cluster, "completed")


async def _annotate(c: HollowCluster, add: dict[str, str], drop: str = "") -> bool:
    live = await c.store.get("Service", "web", "default")
    assert live is not None
    live.pop("status", None)
    annotations = {k: v for k, v in (live["metadata"].get("annotations") or {}).items()
                   if k != drop}
    live["metadata"]["annotations"] = {**annotations, **add}
    try:
        await c.store.update(live)
    except store.Conflict:
        return False
    return True


async def test_delay_between_batches_of_two(cluster: RolloutCluster) -> None:
    """6 tasks, parallelism 2, delay D: three batches, so at least 2 D between the first
    slot taken and the last (Swarm waits the delay after each batch; the bug waited it
    only when a whole batch happened to run at once). The same for a rollback."""
    delay = 1.0
    svc = web(parallelism=2, delay=f"{delay}s")
    svc["spec"]["replicas"] = 6
    # the tasks of a batch run apart (slots 1, 3, 5 at once; 2, 4, 6 after 0.8 s), as real
    # containers do: a whole batch never runs at one instant
    svc["spec"]["template"]["env"] = {"KUBELESS_FAKE_START_DELAYS": "0,0.8"}
    await cluster.apply(svc)
    await cluster.wait_running("web", 6)
    for image, step in (("web:2", lambda: change(cluster, set_image("web:2"))),
                        ("web:1", lambda: roll_back(cluster.store, "web", "default"))):
        before = {t["metadata"]["name"] for t in await cluster.tasks("web")}
        await step()
        await wait_state(cluster, "completed", "rollback_completed", timeout=40)
        fresh = [t for t in await cluster.tasks("web") if t["metadata"]["name"] not in before]
        assert running_images(fresh) == [image] * 6
        created = sorted(created_at(t) or 0 for t in fresh)
        assert created[-1] - created[0] >= 2 * delay, (image, created)
