"""The fake runtime: states it reports, on command, with no etcd."""

from __future__ import annotations

import asyncio
from typing import Any

from kubeless_agent.runtime import Runtime
from kubeless_agent.runtime.fake import FakeRuntime


def task(tid: str, image: str = "web:1", env: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": tid},
            "spec": {"template": {"image": image, "env": env or {}},
                     "ports": [{"target": 80, "published": 8080, "protocol": "tcp"}]}}


def recorder(rt: FakeRuntime) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    rt.subscribe(lambda tid, report: seen.append((tid, report["state"])))
    return seen


async def test_runs_at_once_then_fails_on_command() -> None:
    rt = FakeRuntime()
    assert isinstance(rt, FakeRuntime) and isinstance(rt.name, str)
    _typed: Runtime = rt  # satisfies the protocol
    seen = recorder(rt)
    await rt.start(task("a"))
    assert seen == [("a", "accepted"), ("a", "running")]
    assert rt.tasks["a"]["ports"] == [{"target": 80, "published": 8080, "protocol": "tcp"}]
    rt.fail("a")
    assert seen[-1] == ("a", "failed") and rt.tasks["a"]["exitCode"] == 1
    assert rt.tasks["a"]["error"] == "fake failure"
    rt.fail("a")  # not running any more: nothing
    assert len(seen) == 3


async def test_told_to_fail_or_exit() -> None:
    rt = FakeRuntime()
    seen = recorder(rt)
    await rt.start(task("f", image="web:fail"))
    await rt.start(task("g", env={"KUBELESS_FAKE_FAIL": "1"}))
    await rt.start(task("c", env={"KUBELESS_FAKE_EXIT": "0"}))
    assert ("f", "failed") in seen and ("g", "failed") in seen and ("f", "running") not in seen
    assert rt.tasks["c"]["state"] == "complete" and rt.tasks["c"]["exitCode"] == 0


async def test_delay_stop_remove_list() -> None:
    rt = FakeRuntime(delay=0.05)
    seen = recorder(rt)
    await rt.start(task("a"))
    await rt.start(task("b"))
    assert seen == [("a", "accepted"), ("b", "accepted")]
    await rt.stop(task("b"), 1.0)  # stopped before it ran: never runs
    for _ in range(100):
        if ("a", "running") in seen:
            break
        await asyncio.sleep(0.01)
    assert ("a", "running") in seen and ("b", "running") not in seen
    assert sorted(tid for tid, _ in await rt.list()) == ["a", "b"]
    await rt.remove(task("b"))
    assert [tid for tid, _ in await rt.list()] == ["a"]
    await rt.close()
