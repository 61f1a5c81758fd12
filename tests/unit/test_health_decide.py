"""Table tests for the health decision: orphaning, stale shutdown, drain."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.health import drain, orphan_tasks, shutdown_stale
from controllers.ops import Op, UpdateTask
from kubeless.api.tasks import Task
from tests.support.builders import NOW, node, task

Resource = dict[str, Any]


def changes(ops: list[Op]) -> list[tuple[str, str, str]]:
    out = []
    for op in ops:
        assert isinstance(op, UpdateTask) and "effectiveState" not in op.task
        out.append((op.task["metadata"]["name"], op.task["spec"]["desiredState"],
                    op.task["status"]["state"]))
    return out


ON_N1 = [task("run", slot=1, node="n1"), task("start", slot=2, node="n1", state="starting"),
         task("done", slot=3, node="n1", state="failed"),
         task("orph", slot=4, node="n1", state="orphaned"),
         task("stopping", slot=5, node="n1", desired="shutdown"),
         task("other", slot=6, node="n2")]

CASES: dict[str, tuple[Any, Resource, list[tuple[str, str, str]]]] = {
    "down node: live tasks orphaned, ended ones and other nodes' left": (
        lambda n, ts: orphan_tasks(n, ts, NOW), node("n1", state="down"),
        [("run", "running", "orphaned"), ("start", "running", "orphaned"),
         ("stopping", "shutdown", "orphaned")]),
    "ready node: nothing orphaned": (
        lambda n, ts: orphan_tasks(n, ts, NOW), node("n1"), []),
    "returning node: orphaned tasks still wanted running are shut down": (
        shutdown_stale, node("n1"), [("orph", "shutdown", "orphaned")]),
    "still down: no stale shutdown yet": (shutdown_stale, node("n1", state="down"), []),
    "drained node: live tasks wanted running are shut down": (
        drain, node("n1", availability="drain"),
        [("run", "shutdown", "running"), ("start", "shutdown", "starting")]),
    "active node: no drain": (drain, node("n1"), []),
    "paused node: no drain": (drain, node("n1", availability="pause"), []),
}


@pytest.mark.parametrize("case", CASES)
def test_health(case: str) -> None:
    fn, n, expected = CASES[case]
    assert changes(fn(n, ON_N1)) == expected


def test_orphan_message_and_timestamp() -> None:
    (op,) = orphan_tasks(node("n1", state="down"), [task("run", slot=1, node="n1")], NOW)
    assert isinstance(op, UpdateTask)
    assert op.task["status"] == {"state": "orphaned", "message": "node n1 is down",
                                 "timestamp": NOW}
    assert op.task["metadata"]["resourceVersion"] == "7"


def test_orphan_uses_the_effective_state() -> None:
    """Own status assigned, agent reported complete: already ended, nothing to orphan."""
    t = Task.of(task("a", slot=1, node="n1", state="assigned").stored, {"state": "complete"})
    assert t.state == "complete"
    assert orphan_tasks(node("n1", state="down"), [t], NOW) == []


def test_each_decision_is_idempotent() -> None:
    def applied(ops: list[Op], tasks: list[Task]) -> list[Task]:
        by_name = {t.id: t for t in tasks}
        for op in ops:
            assert isinstance(op, UpdateTask)
            by_name[op.task["metadata"]["name"]] = Task.of(op.task)
        return list(by_name.values())

    down, back, drained = node("n1", state="down"), node("n1"), node("n1", availability="drain")
    after = applied(orphan_tasks(down, ON_N1, NOW), ON_N1)
    assert orphan_tasks(down, after, NOW + 5) == []
    after = applied(shutdown_stale(back, after), after)
    assert shutdown_stale(back, after) == []
    after = applied(drain(drained, ON_N1), ON_N1)
    assert drain(drained, after) == []
