"""The agent's load measurements: rates, /proc parsing, docker stats, the fake runtime's
load, and LoadPublisher.measure on fake runtimes (no etcd, an injected clock)."""

from __future__ import annotations

from typing import Any

import pytest

from kubeless.api.load import parse_report
from kubeless_agent.load.procfs import (CpuTimes, busy_cores, cpu_count, parse_cpu_times,
                                        parse_meminfo, parse_proc_stat)
from kubeless_agent.load.publisher import LoadPublisher, NodeLoad
from kubeless_agent.load.rates import Sample, rate, rates
from kubeless_agent.runtime.docker_stats import memory_in_use, usage_of
from kubeless_agent.runtime.fake import FakeRuntime
from kubeless.store import Keyspace


# -- rates ----------------------------------------------------------------------------

@pytest.mark.parametrize("before, after, seconds, expected", [
    (10.0, 15.3, 10.0, 0.53),  # 5.3 CPU seconds in 10 s: 0.53 cores
    (0.0, 0.0, 10.0, 0.0),  # idle
    (4.0, 6.0, 0.5, 4.0),  # short periods (tests)
    (50.0, 3.0, 10.0, None),  # went down: started over, no rate this period
    (1.0, 2.0, 0.0, None),  # no time passed
], ids=["busy", "idle", "short-period", "counter-reset", "no-time"])
def test_rate_from_two_samples(before: float, after: float, seconds: float,
                               expected: float | None) -> None:
    found = rate(before, after, seconds)
    assert found == pytest.approx(expected) if expected is not None else found is None


def test_rates_only_for_counters_in_both_samples() -> None:
    before = Sample(100.0, {"a": 1.0, "gone": 5.0, "reset": 9.0})
    after = Sample(102.0, {"a": 3.0, "new": 7.0, "reset": 1.0})
    assert rates(before, after) == {"a": 1.0}
    assert rates(None, after) == {}
    assert rates(after, Sample(104.0, {"new": 7.0, "reset": 2.0})) == {"new": 0.0,
                                                                       "reset": 0.5}


# -- /proc ----------------------------------------------------------------------------

STAT = """cpu  100 10 50 800 40 5 5 0 20 0
cpu0 50 5 25 400 20 2 3 0 10 0
cpu1 50 5 25 400 20 3 2 0 10 0
intr 12345
"""


def test_host_cpu_from_proc_stat() -> None:
    times = parse_cpu_times(STAT)
    assert times == CpuTimes(busy=170, total=1010)  # guest (20) is already in user
    assert cpu_count(STAT) == 2
    later = CpuTimes(busy=170 + 150, total=1010 + 200)
    assert busy_cores(times, later, 2) == pytest.approx(1.5)
    assert busy_cores(times, times, 2) is None
    with pytest.raises(ValueError):
        parse_cpu_times("intr 1\n")


def test_host_memory_from_meminfo() -> None:
    meminfo = "MemTotal:  2048 kB\nMemFree:  100 kB\nMemAvailable:  1024 kB\n"
    assert parse_meminfo(meminfo) == (1024 * 1024, 2048 * 1024)
    assert parse_meminfo("MemTotal: 10 kB\nMemFree: 4 kB\n") == (6 * 1024, 10 * 1024)


def test_a_process_stat_line() -> None:
    # pid (comm with ") (" inside) state ppid pgrp session ... utime stime cutime cstime ...
    fields = ["S", "1", "4242", "4242"] + ["0"] * 7 + ["30", "12", "5", "3"] + ["0"] * 6 \
        + ["99"]
    stat = parse_proc_stat("4243 (odd) (name) " + " ".join(fields) + " 0 0")
    assert stat is not None
    assert (stat.session, stat.cpu_ticks, stat.rss_pages) == (4242, 50, 99)
    assert parse_proc_stat("12 (short) S 1") is None


# -- docker stats ---------------------------------------------------------------------

def stats(total: int, usage: int, **memory: int) -> dict[str, Any]:
    return {"cpu_stats": {"cpu_usage": {"total_usage": total}},
            "memory_stats": {"usage": usage, "stats": memory}}


@pytest.mark.parametrize("memory, expected", [
    ({"total_inactive_file": 300, "inactive_file": 100}, 700),  # cgroup v1
    ({"inactive_file": 200}, 800),  # cgroup v2
    ({"inactive_file": 5000}, 1000),  # more inactive than usage: usage as is
    ({}, 1000),
], ids=["cgroup-v1", "cgroup-v2", "inactive-above-usage", "no-cache-figure"])
def test_memory_as_docker_stats_shows_it(memory: dict[str, int], expected: int) -> None:
    assert memory_in_use({"usage": 1000, "stats": memory}) == expected


def test_usage_of_docker_stats() -> None:
    assert usage_of(stats(2_500_000_000, 1000)) == (2.5, 1000)
    assert usage_of({"cpu_stats": {}, "memory_stats": {}}) is None  # not running
    assert usage_of(None) is None


# -- the fake runtime's load ----------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fake_task(tid: str, env: dict[str, str] | None = None, service: str = "web",
              ns: str = "default") -> dict[str, Any]:
    return {"metadata": {"name": tid, "namespace": ns},
            "spec": {"serviceName": service, "slot": 1, "desiredState": "running",
                     "template": {"image": "x", "env": env or {}}}}


async def test_the_fake_runtime_uses_what_its_env_and_setter_say() -> None:
    clock = Clock()
    runtime = FakeRuntime(clock=clock)
    await runtime.start(fake_task("t1", {"KUBELESS_FAKE_CPU": "0.5",
                                         "KUBELESS_FAKE_MEMORY": "64Mi"}))
    await runtime.start(fake_task("t2"))
    clock.now += 10
    assert await runtime.usage(["t1", "t2", "none"]) == {"t1": (5.0, 64 << 20), "t2": (0.0, 0)}
    runtime.set_load("t1", cpu=2.0)
    clock.now += 10
    assert (await runtime.usage(["t1"]))["t1"] == (25.0, 64 << 20)
    await runtime.stop(fake_task("t1"), 0)
    assert await runtime.usage(["t1"]) == {}


# -- the publisher's figures ----------------------------------------------------------

class Mesh:
    def __init__(self) -> None:
        self.counts: dict[str, float] = {}

    async def connections_by_task(self) -> dict[str, float]:
        return dict(self.counts)


async def test_reports_come_from_two_samples() -> None:
    clock = Clock()
    runtime = FakeRuntime(clock=clock)
    tasks = {"t1": fake_task("t1", {"KUBELESS_FAKE_CPU": "0.53", "KUBELESS_FAKE_MEMORY": "1000"}),
             "t2": fake_task("t2", service="db", ns="prod")}
    for task in tasks.values():
        await runtime.start(task)
    running = dict(tasks)
    mesh = Mesh()
    node = NodeLoad("n1", runtime, lambda: running, capacity=(4.0, 8000))
    publisher = LoadPublisher(None, Keyspace("/t"), [node], lambda: 1, 10.0,  # type: ignore[arg-type]
                              mesh=mesh, host=None, set_metrics=False, clock=clock,
                              wall=lambda: 1_764_690_000.0)
    mesh.counts = {"t1": 100.0, "elsewhere": 7.0}
    assert await publisher.measure() == {}  # one sample: nothing yet
    clock.now += 10
    mesh.counts = {"t1": 132.0, "elsewhere": 7.0}
    running["t3"] = fake_task("t3")  # started meanwhile: one sample only
    await runtime.start(running["t3"])
    found = await publisher.measure()
    report = parse_report(found["n1"])
    assert report is not None and report.node == "n1" and report.period == 10.0
    assert set(report.tasks) == {"t1", "t2"}
    assert report.tasks["t1"].cpu == pytest.approx(0.53)
    assert (report.tasks["t1"].memory, report.tasks["t2"].service,
            report.tasks["t2"].namespace) == (1000, "db", "prod")
    assert report.connections == {"t1": pytest.approx(3.2)}  # idle endpoints left out
    assert (report.host.cpu, report.host.memory, report.host.cpus) == \
        (pytest.approx(0.53), 1000, 4.0)  # a hollow node: the sum of its tasks
    clock.now += 10
    del running["t1"]
    report = parse_report((await publisher.measure())["n1"])
    assert report is not None and set(report.tasks) == {"t2", "t3"}
