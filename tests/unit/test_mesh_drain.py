"""Graceful stop: a running task behind the mesh drains before its stop, alone.

``needs_drain`` is table-tested; the worker is driven with the fake runtime
and an injected sleep (a gate the test opens), so nothing sleeps for real.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kubeless.store import Keyspace
from kubeless_agent.runtime.fake import FakeRuntime
from kubeless_agent.worker import Reporter, TaskRecord, Worker, needs_drain

INGRESS = [{"target": 80, "published": 30001, "protocol": "tcp", "mode": "ingress"}]
HOST = [{"target": 80, "published": 8080, "protocol": "tcp", "mode": "host"}]


def task(tid: str, desired: str = "running", ports: list[dict[str, Any]] | None = None
         ) -> dict[str, Any]:
    return {"metadata": {"name": tid, "namespace": "default"},
            "spec": {"desiredState": desired, "ports": ports or [],
                     "template": {"image": "web:1"}}}


@pytest.mark.parametrize("name,record,drains", [
    ("running with an ingress port", TaskRecord(task("t", ports=INGRESS), state="running"), True),
    ("ingress is the default mode",
     TaskRecord(task("t", ports=[{"target": 80}]), state="running"), True),
    ("host-mode ports only", TaskRecord(task("t", ports=HOST), state="running"), False),
    ("no ports", TaskRecord(task("t"), state="running"), False),
    ("not running yet (not in endpoints)",
     TaskRecord(task("t", ports=INGRESS), state="starting"), False),
    ("no task known", TaskRecord(None, state="running"), False),
])
def test_needs_drain(name: str, record: TaskRecord, drains: bool) -> None:
    assert needs_drain(record) is drains, name


async def test_a_draining_task_does_not_hold_up_the_others() -> None:
    gate = asyncio.Event()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await gate.wait()

    runtime = FakeRuntime()
    worker = Worker("n1", runtime, Reporter(None), Keyspace("/t"),  # type: ignore[arg-type]
                    drain_period=2.0, sleep=sleep)
    web, batch = task("web1", ports=INGRESS), task("batch1")
    for t in (web, batch):
        worker.on_assignment(t["metadata"]["name"], t)
    await _until(lambda: all(worker.records[t].state == "running" for t in ("web1", "batch1")))
    for t in (web, batch):
        worker.on_assignment(t["metadata"]["name"], {**t, "spec": {**t["spec"],
                                                                  "desiredState": "shutdown"}})
    await _until(lambda: worker.records["batch1"].state == "shutdown")
    assert slept == [2.0]
    assert worker.records["web1"].state == "running"  # still draining: still serving
    gate.set()
    await _until(lambda: worker.records["web1"].state == "shutdown")
    await worker.close()


async def test_no_drain_period_stops_at_once() -> None:
    async def sleep(seconds: float) -> None:
        raise AssertionError("must not sleep")

    worker = Worker("n1", FakeRuntime(), Reporter(None), Keyspace("/t"),  # type: ignore[arg-type]
                    drain_period=0.0, sleep=sleep)
    web = task("web1", ports=INGRESS)
    worker.on_assignment("web1", web)
    await _until(lambda: worker.records["web1"].state == "running")
    worker.on_assignment("web1", {**web, "spec": {**web["spec"], "desiredState": "shutdown"}})
    await _until(lambda: worker.records["web1"].state == "shutdown")
    await worker.close()


async def _until(cond: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not met"
        await asyncio.sleep(0.005)
