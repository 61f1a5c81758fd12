"""Rolling update of a 1,000-task service on 200 hollow nodes, parallelism 50, no delay.

Target (issue 5): under 20 s from the spec change to ``completed``. Prints the
total, the time to get the 1,000 tasks running first, and the rollout
controller's own time (decide and write, summed over its passes) per batch
of 50: the rest is replication, scheduler and the agents.
The monitor window is 0s so the figure measures the rollout, not the wait.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kubeless import store
from kubeless.api import validate
from kubeless.api.service_writes import merge
from bench.harness import run_on_etcd
from lab.hollow import HollowCluster, service
from lab.waiting import until

from controllers.framework import ControllerRunner
from controllers.health.controller import HealthController
from controllers.replication.controller import ReplicationController
from controllers.rollout.controller import RolloutController
from controllers.scheduler.controller import SchedulerController
from controllers.view import ClusterView

REPLICAS, NODES, PARALLELISM = 1000, 200, 50


class _Cluster(HollowCluster):
    rollout: RolloutController

    async def start_controllers(self) -> ControllerRunner:
        ctl = self._ctl_store = store.connect(self.endpoints, self.prefix)
        view = ClusterView(ctl)  # one read model for all four, as controllers.main builds it
        self.rollout = RolloutController(ctl, view)
        controllers = [ReplicationController(ctl, view), SchedulerController(ctl, view),
                       HealthController(ctl, view), self.rollout]
        runner = self.runner = ControllerRunner(ctl, controllers, self.identity,
                                                lease_ttl=self.lease_ttl)
        self._runner_task = asyncio.create_task(runner.run(), name="controllers")
        await until(lambda: all(runner.elector(c.name).is_leader for c in controllers), 15,
                    "controllers lead")
        return runner

    async def stop_controllers(self) -> None:
        stopping = asyncio.ensure_future(super().stop_controllers())
        for _ in range(20):
            done, _ = await asyncio.wait({stopping}, timeout=3)
            if done:
                return
            for task in asyncio.all_tasks():  # a swallowed cancellation: cancel again
                if task is not stopping and task is not asyncio.current_task() and \
                        task.get_name().split(" ")[0] in ("replication", "scheduler", "health",
                                                          "rollout", "controller"):
                    task.cancel()


async def _update_status(c: HollowCluster) -> dict[str, Any]:
    return (await c.status("web")).get("updateStatus") or {}


async def _run(endpoints: str) -> None:
    async with _Cluster(endpoints, "/bench-rollout", lease_ttl=5, heartbeat_ttl=10) as c:
        await c.add_group("hollow", NODES)
        svc = service("web", REPLICAS, image="web:1")
        svc["spec"]["update"] = {"parallelism": PARALLELISM, "delay": "0s", "monitor": "0s"}
        started = time.perf_counter()
        await c.apply(svc)
        await c.wait_running("web", REPLICAS, timeout=120)
        created = time.perf_counter() - started

        live = await c.store.get("Service", "web", "default")
        assert live is not None
        desired = {k: v for k, v in live.items() if k != "status"}
        desired["spec"] = {**desired["spec"],
                           "template": {**desired["spec"]["template"], "image": "web:2"}}
        new, _, _ = merge(live, validate(desired))
        new.pop("status", None)
        passes0, seconds0 = c.rollout.passes, c.rollout.pass_seconds
        started = time.perf_counter()
        await c.store.update(new)

        async def done() -> bool:
            us = await _update_status(c)
            return us.get("state") == "completed" and us.get("generation") == 2
        await until(done, 300, "rollout completed", interval=0.1)
        total = time.perf_counter() - started
        passes = c.rollout.passes - passes0
        spent = c.rollout.pass_seconds - seconds0
        batches = REPLICAS // PARALLELISM
        tasks = await c.tasks("web")
        up = sum(1 for t in tasks if t["spec"]["template"]["image"] == "web:2"
                 and (t.get("status") or {}).get("state") == "running")
        print(f"{REPLICAS} tasks on {NODES} hollow nodes running in {created:.1f} s")
        print(f"rolling update web:1 -> web:2, parallelism {PARALLELISM}, no delay: "
              f"{total:.1f} s total (target < 20 s); {up} new tasks running")
        print(f"rollout controller: {passes} passes, {spent:.2f} s in them "
              f"({spent / max(passes, 1) * 1000:.1f} ms per pass, "
              f"{spent / batches * 1000:.0f} ms per batch of {PARALLELISM})")


def main() -> None:
    run_on_etcd(_run)


if __name__ == "__main__":
    main()
