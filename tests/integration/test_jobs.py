"""Jobs on hollow nodes: replication, scheduler and agents (fake runtime) over the session's
TLS etcd. A replicated job's concurrency is counted from every agent report (an etcd
watch); schedules run on the controllers' ``FakeClock``, which the test moves 30 times
faster than real time (agents and leases keep real time), so a one-minute cron tick
comes every two seconds and the controller's own requeue at the next tick is what
starts each run."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controllers.framework import FakeClock
from lab.hollow import HollowCluster, service, state
from lab.waiting import until
from tests.support.hollow_cli import cli
from tests.support.etcd_server import EtcdCluster
from tests.support.reports import ReportCounter

pytestmark = pytest.mark.integration
EXIT_0 = {"KUBELESS_FAKE_EXIT": "0"}


@pytest.fixture
async def cluster(etcd_cluster: EtcdCluster, prefix: str) -> AsyncIterator[HollowCluster]:
    async with HollowCluster(etcd_cluster.endpoints, prefix, tls=etcd_cluster.client_tls) as c:
        yield c



async def job_state(c: HollowCluster, name: str, want: str, run: int = 1) -> Any:
    job = (await c.status(name)).get("job") or {}
    return job if job.get("state") == want and job.get("run") == run else None


async def test_replicated_job_runs_its_completions_at_most_max_concurrent_at_once(
        cluster: HollowCluster) -> None:
    await cluster.add_group("n", 3)
    counter = await ReportCounter(cluster.store).start()
    await cluster.apply(service("batch", 6, mode="replicated-job", env=EXIT_0,
                                job={"maxConcurrent": 2}))
    job = await until(lambda: job_state(cluster, "batch", "complete"), 30, "6 completions")
    await counter.stop()
    assert (job["succeeded"], job["total"], job["failed"]) == (6, 6, 0)
    assert counter.max_going <= 2, counter.max_going
    assert counter.complete == 6
    tasks = await cluster.tasks("batch")
    assert sorted(t["spec"]["slot"] for t in tasks) == [1, 2, 3, 4, 5, 6]
    assert all(state(t) == "complete" and t["spec"]["jobRun"] == 1 for t in tasks)

    ls = await asyncio.to_thread(cli, cluster, "service", "ls")
    assert "6/6 (completed)" in ls.stdout, ls.stdout
    ps = await asyncio.to_thread(cli, cluster, "service", "ps", "batch")
    assert ps.stdout.count("Complete") >= 12, ps.stdout  # desired and current, per task

    forced = await asyncio.to_thread(cli, cluster, "service", "update", "-d", "--force", "batch")
    assert forced.returncode == 0 and "a new run starts" in forced.stdout, forced.stderr
    job = await until(lambda: job_state(cluster, "batch", "complete", run=2), 30, "run 2")
    assert job["trigger"] == "force" and [r["run"] for r in job["runs"]] == [2, 1]
    described = await asyncio.to_thread(cli, cluster, "describe", "service", "batch")
    assert "Run:         2 (force), complete: 6 succeeded" in described.stdout, described.stdout


async def test_global_job_runs_once_per_node(cluster: HollowCluster) -> None:
    await cluster.add_group("n", 3)
    await cluster.apply(service("sweep", mode="global-job", env=EXIT_0))
    job = await until(lambda: job_state(cluster, "sweep", "complete"), 30, "3 completions")
    assert (job["succeeded"], job["total"]) == (3, 3)
    await cluster.add_group("late", 1)  # a node joining after the run: not run there
    tasks = await cluster.tasks("sweep")
    assert sorted(t["spec"]["nodeName"] for t in tasks) == ["n-0", "n-1", "n-2"]


@contextlib.asynccontextmanager
async def driven(clock: FakeClock, speed: float) -> AsyncIterator[None]:
    """Move ``clock`` ``speed`` times faster than real time while the body runs."""
    async def drive() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            clock.advance((now - last) * speed)
            last = now
    task = asyncio.create_task(drive(), name="fake time")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_schedule_starts_runs_on_ticks_and_skips_overlaps(
        etcd_cluster: EtcdCluster, prefix: str) -> None:
    start = time.time() // 60 * 60 + 50  # 10 s (a third of a real second) before a tick
    clock = FakeClock(start=0.0, wall=start)
    async with HollowCluster(etcd_cluster.endpoints, prefix, tls=etcd_cluster.client_tls,
                             clock=clock) as cluster, driven(clock, 30):
        await cluster.add_group("n", 2)
        await cluster.apply(service("tick", mode="replicated-job", env=EXIT_0,
                                    job={"schedule": "* * * * *", "runHistoryLimit": 2}))
        # Never ends: its first run outlives every later tick.
        await cluster.apply(service("long", mode="replicated-job",
                                    job={"schedule": "* * * * *"}))

        async def runs(name: str, n: int) -> Any:
            job = (await cluster.status(name)).get("job") or {}
            return job if job.get("run", 0) >= n and job.get("state") == "complete" else None
        job = await until(lambda: runs("tick", 3), 60, "3 scheduled runs")
        assert job["trigger"] == "schedule" and job["scheduledAt"] % 60 == 0
        assert job["startedAt"] >= job["scheduledAt"]
        assert job["nextRunAt"] == job["scheduledAt"] + 60
        assert [r["state"] for r in job["runs"]] == ["complete", "complete"]  # the last 2
        tasks = await cluster.tasks("tick")
        assert {t["spec"]["jobRun"] for t in tasks} <= {job["run"], job["run"] - 1}

        async def skipping() -> Any:
            job = (await cluster.status("long")).get("job") or {}
            return job if job.get("skipped", 0) >= 2 else None
        job = await until(skipping, 60, "ticks skipped while run 1 goes on")
        assert job["run"] == 1 and job["state"] == "running" and job["lastSkipped"] % 60 == 0
        assert len(await cluster.tasks("long")) == 1
