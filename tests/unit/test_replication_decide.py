"""Table tests for the replication decision: one named case per rule."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.ops import CreateTask, DeleteTask, Op, UpdateTask
from controllers.replication import HISTORY_ANNOTATION, reconcile_service, service_status
from kubeless.api.tasks import Task
from tests.support.builders import NOW, UID, ids, in_eu, node, service, task

Resource = dict[str, Any]
NODES = [node("n1"), node("n2"), node("n3")]


def decide(svc: Resource | None, tasks: list[Task], nodes: list[Resource] = NODES,
           now: float = NOW) -> tuple[list[Op], float | None]:
    d = reconcile_service(svc, tasks, nodes, now, new_id=ids(), eligible=in_eu)
    return d.ops, d.requeue_after


def summary(ops: list[Op]) -> list[tuple[str, Any, Any]]:
    """(op, task name, slot or node or desired state) per operation, order kept."""
    out: list[tuple[str, Any, Any]] = []
    for op in ops:
        assert not isinstance(op, (CreateTask, UpdateTask, DeleteTask)) or \
            "effectiveState" not in op.task
        if isinstance(op, CreateTask):
            spec = op.task["spec"]
            out.append(("create", spec.get("slot"), spec.get("nodeName")))
        elif isinstance(op, UpdateTask):
            out.append(("update", op.task["metadata"]["name"], op.task["spec"]["desiredState"]))
        elif isinstance(op, DeleteTask):
            out.append(("delete", op.task["metadata"]["name"], None))
    return out


def running(n: int, node_cycle: tuple[str, ...] = ("n1", "n2", "n3")) -> list[Task]:
    return [task(f"r{i}", slot=i, node=node_cycle[(i - 1) % len(node_cycle)])
            for i in range(1, n + 1)]


# ---- replicated: slots ------------------------------------------------------

SLOT_CASES: dict[str, tuple[Resource, list[Task], list[tuple[str, Any, Any]]]] = {
    "empty service gets every slot": (service(3), [], [
        ("create", 1, None), ("create", 2, None), ("create", 3, None)]),
    "converged service: nothing": (service(3), running(3), []),
    "zero replicas, no tasks: nothing": (service(0), [], []),
    "scale up fills the lowest free slots, survivors keep numbers": (
        service(3), [task("a", slot=1, node="n1"), task("e", slot=5, node="n2")],
        [("create", 2, None)]),
    "scale down removes from the most loaded node first": (
        service(2), [task("a", slot=1, node="n1"), task("b", slot=2, node="n1"),
                     task("c", slot=3, node="n1"), task("d", slot=4, node="n2")],
        [("update", "c", "shutdown"), ("update", "b", "shutdown")]),
    "scale down releases ended slots before running ones": (
        service(2, restart={"condition": "none"}),
        [task("a", slot=1, node="n1"), task("b", slot=2, node="n2", state="failed"),
         task("c", slot=3, node="n3")],
        [("update", "b", "shutdown")]),
    "scale down deletes an unscheduled task outright": (
        service(2), [task("a", slot=1, node="n1"), task("b", slot=2, node="n2"),
                     task("p", slot=3, state="pending")],
        [("delete", "p", None)]),
    "scale down prefers a task not yet running on an equally loaded node": (
        service(1), [task("a", slot=1, node="n1"), task("b", slot=2, node="n2", state="starting")],
        [("update", "b", "shutdown")]),
    "two tasks wanting one slot: the running one stays": (
        service(1), [task("a", slot=1, node="n1", state="starting"), task("b", slot=1, node="n2")],
        [("update", "a", "shutdown")]),
    "older spec version still occupies its slot": (
        service(2, generation=4), [task("a", slot=1, node="n1", version=1),
                                   task("b", slot=2, node="n2", version=3)], []),
    "a slot whose task is told to stop but still runs waits for it (stop-first)": (
        service(2), [task("a", slot=1, node="n1"),
                     task("b", slot=2, node="n3", desired="shutdown")],
        []),
    "a slot whose stopped task has not started yet is refilled at once": (
        service(2), [task("a", slot=1, node="n1"),
                     task("b", slot=2, node="n3", state="assigned", desired="shutdown")],
        [("create", 2, None)]),
    "a slot is refilled once its stopping task is seen stopped": (
        service(2), [task("a", slot=1, node="n1"),
                     task("b", slot=2, node="n3", state="shutdown", desired="shutdown")],
        [("create", 2, None)]),
    "task without a slot is stopped, and deleted once ended": (
        service(1), [task("a", slot=1, node="n1"), task("g", node="n2"),
                     task("h", node="n3", state="shutdown", desired="shutdown")],
        [("update", "g", "shutdown"), ("delete", "h", None)]),
    "task of an earlier service of the same name is removed": (
        service(1), [task("a", slot=1, node="n1"), task("old", slot=2, node="n2", uid="gone")],
        [("update", "old", "remove")]),
}


@pytest.mark.parametrize("case", SLOT_CASES)
def test_slots(case: str) -> None:
    svc, tasks, expected = SLOT_CASES[case]
    ops, requeue = decide(svc, tasks)
    assert summary(ops) == expected
    assert requeue is None


def test_new_task_content() -> None:
    (op,), _ = decide(service(1), [])
    assert isinstance(op, CreateTask)
    assert op.task == {
        "apiVersion": "kubeless.io/v1", "kind": "Task",
        "metadata": {"name": "new1", "namespace": "default",
                     "labels": {"app": "web", "kubeless.io/service": "web"}},
        "spec": {"serviceName": "web", "serviceUid": UID, "slot": 1, "specVersion": 1,
                 "template": service()["spec"]["template"],
                 "placement": {"constraints": ["node.labels.zone==eu"]},
                 "ports": [{"target": 80, "published": 8080}], "desiredState": "running"},
        "status": {"state": "pending", "timestamp": NOW}}


def test_update_carries_the_read_resource_version_and_no_derived_keys() -> None:
    ops, _ = decide(service(0), [task("a", slot=1, node="n1")])
    (op,) = ops
    assert isinstance(op, UpdateTask)
    assert op.task["metadata"]["resourceVersion"] == "7"
    assert "effectiveStatus" not in op.task and op.task["status"]["state"] == "running"


# ---- restart policy -----------------------------------------------------------

def ended(state: str, *, ts: float = NOW - 100, name: str = "x", **kw: Any) -> Task:
    return task(name, slot=1, node="n1", state=state, ts=ts, **kw)


RESTART_CASES: dict[str, tuple[dict[str, Any], list[Task], list[tuple[str, Any, Any]],
                               float | None]] = {
    "any: failed is replaced": (
        {"condition": "any"}, [ended("failed")],
        [("update", "x", "shutdown"), ("create", 1, None)], None),
    "any: complete (not asked for) is replaced": (
        {"condition": "any"}, [ended("complete")],
        [("update", "x", "shutdown"), ("create", 1, None)], None),
    "any: shutdown nobody asked for is replaced": (
        {"condition": "any"}, [ended("shutdown")],
        [("update", "x", "shutdown"), ("create", 1, None)], None),
    "on-failure: rejected is replaced": (
        {"condition": "on-failure"}, [ended("rejected")],
        [("update", "x", "shutdown"), ("create", 1, None)], None),
    "on-failure: complete leaves the slot done": (
        {"condition": "on-failure"}, [ended("complete")], [], None),
    "none: failed is never replaced": ({"condition": "none"}, [ended("failed")], [], None),
    "none: orphaned is not replaced either": ({"condition": "none"}, [ended("orphaned")], [], None),
    "delay not yet over: wait and requeue": (
        {"delay": "5s"}, [ended("failed", ts=NOW - 2)], [], 3.0),
    "delay over: replaced": (
        {"delay": "5s"}, [ended("failed", ts=NOW - 5)],
        [("update", "x", "shutdown"), ("create", 1, None)], None),
    "orphaned is replaced at once, past the delay": (
        {"delay": "1m"}, [ended("orphaned", ts=NOW)],
        [("update", "x", "shutdown"), ("create", 1, None)], None),
    "maxAttempts reached (window forever): no more": (
        {"maxAttempts": 2}, [ended("failed", annotations={HISTORY_ANNOTATION: "10.0,20.0"})],
        [], None),
    "maxAttempts reached inside the window: requeue when the oldest leaves it": (
        {"maxAttempts": 2, "window": "1m"},
        [ended("failed", annotations={HISTORY_ANNOTATION: f"{NOW - 50},{NOW - 10}"})], [], 10.0),
    "restarts outside the window do not count": (
        {"maxAttempts": 2, "window": "1m"},
        [ended("failed", annotations={HISTORY_ANNOTATION: f"{NOW - 500},{NOW - 10}"})],
        [("update", "x", "shutdown"), ("create", 1, None)], None),
    "maxAttempts reached does not hold back an orphan": (
        {"maxAttempts": 1}, [ended("orphaned", annotations={HISTORY_ANNOTATION: "10.0"})],
        [("update", "x", "shutdown"), ("create", 1, None)], None),
    "ended task stopped by us is not a restart: refilled at once, past the delay": (
        {"condition": "none", "delay": "1m"},
        [ended("shutdown", desired="shutdown", ts=NOW)], [("create", 1, None)], None),
}


@pytest.mark.parametrize("case", RESTART_CASES)
def test_restart_policy(case: str) -> None:
    policy, tasks, expected, requeue = RESTART_CASES[case]
    ops, got_requeue = decide(service(1, restart=policy), tasks)
    assert summary(ops) == expected
    assert got_requeue == (pytest.approx(requeue) if requeue is not None else None)


def restarts_on(ops: list[Op]) -> str | None:
    (create,) = [op for op in ops if isinstance(op, CreateTask)]
    value = create.task["metadata"].get("annotations", {}).get(HISTORY_ANNOTATION)
    return None if value is None else str(value)


@pytest.mark.parametrize("case, policy, state, before, after", [
    ("a failure is counted", {"maxAttempts": 3}, "failed", None, f"{NOW:.3f}"),
    ("the count grows", {"maxAttempts": 3}, "failed", "1.000", f"1.000,{NOW:.3f}"),
    ("unlimited attempts keep no count", {"maxAttempts": 0}, "failed", None, None),
    ("an orphan counts under any", {"maxAttempts": 3}, "orphaned", None, f"{NOW:.3f}"),
    ("an orphan does not count under on-failure",
     {"maxAttempts": 3, "condition": "on-failure"}, "orphaned", "1.000", "1.000"),
])
def test_restart_count_travels_on_the_new_task(case: str, policy: dict[str, Any], state: str,
                                               before: str | None, after: str | None) -> None:
    notes = {HISTORY_ANNOTATION: before} if before else None
    ops, _ = decide(service(1, restart=policy), [ended(state, annotations=notes)])
    assert restarts_on(ops) == after


def test_restart_count_survives_history_trimming() -> None:
    """Only the current task is left, yet its annotation still stops the restarts."""
    svc = service(1, restart={"maxAttempts": 2}, history=0)
    ops, _ = decide(svc, [ended("failed", annotations={HISTORY_ANNOTATION: "1.0,2.0"})])
    assert ops == []


# ---- history ------------------------------------------------------------------

def test_history_keeps_the_newest_terminal_tasks_per_slot() -> None:
    old = [task(f"h{i}", slot=1, node="n1", state="shutdown", desired="shutdown", ts=NOW - 100 + i)
           for i in range(7)]
    stopping = task("s", slot=1, node="n2", state="running", desired="shutdown", ts=NOW - 1000)
    ops, _ = decide(service(1, history=5), [task("a", slot=1, node="n1"), stopping, *old])
    assert summary(ops) == [("delete", "h1", None), ("delete", "h0", None)]


def test_history_of_a_removed_slot_is_deleted() -> None:
    gone = task("g", slot=3, node="n1", state="shutdown", desired="shutdown")
    stopping = task("s", slot=3, node="n1", state="running", desired="shutdown")
    ops, _ = decide(service(1), [task("a", slot=1, node="n1"), gone, stopping])
    assert summary(ops) == [("delete", "g", None)]


def test_history_never_deletes_the_current_ended_task() -> None:
    ops, _ = decide(service(1, restart={"condition": "none"}, history=0), [ended("failed")])
    assert ops == []


# ---- service deleted ------------------------------------------------------------

def test_deleted_service_removes_then_deletes() -> None:
    tasks = [task("run", slot=1, node="n1"), task("done", slot=2, node="n2", state="failed"),
             task("going", slot=3, node="n3", desired="remove"),
             task("unbound", slot=4, state="pending"),
             task("lost", slot=5, node="n9", state="running")]
    ops, requeue = decide(None, tasks)
    assert summary(ops) == [("delete", "done", None), ("delete", "lost", None),
                            ("update", "run", "remove"), ("delete", "unbound", None)]
    assert requeue is None


def test_deleted_service_with_nothing_left_to_do() -> None:
    assert decide(None, [task("going", slot=1, node="n1", desired="remove")]) == ([], None)


# ---- global ---------------------------------------------------------------------

def gsvc(**kw: Any) -> Resource:
    return service(mode="global", **kw)


GLOBAL_CASES: dict[str, tuple[list[Resource], list[Task], list[tuple[str, Any, Any]]]] = {
    "one task per eligible node (not the us one, not the down one, not the paused one)": (
        [node("n1"), node("n2", zone="us"), node("n3", state="down"),
         node("n4", availability="pause")], [],
        [("create", None, "n1")]),
    "converged: nothing": ([node("n1"), node("n2")],
                           [task("a", node="n1"), task("b", node="n2")], []),
    "paused node keeps its task": ([node("n1", availability="pause")], [task("a", node="n1")], []),
    "drained node's task is stopped": (
        [node("n1", availability="drain")], [task("a", node="n1")], [("update", "a", "shutdown")]),
    "node no longer matching the constraints: task stopped": (
        [node("n1", zone="us")], [task("a", node="n1")], [("update", "a", "shutdown")]),
    "down node: its task left for health, nothing made elsewhere": (
        [node("n1", state="down"), node("n2")], [task("a", node="n1"), task("b", node="n2")], []),
    "node gone: its tasks deleted": (
        [node("n2")], [task("a", node="n1"), task("b", node="n2")], [("delete", "a", None)]),
    "node back with an orphaned task: replaced on that node": (
        [node("n1")], [task("a", node="n1", state="orphaned")],
        [("update", "a", "shutdown"), ("create", None, "n1")]),
    "failed task on a wanted node: replaced under the policy": (
        [node("n1")], [task("a", node="n1", state="failed")],
        [("update", "a", "shutdown"), ("create", None, "n1")]),
    "pending task on a drained node: deleted (no agent has it)": (
        [node("n1", availability="drain")], [task("p", node="n1", state="pending")],
        [("delete", "p", None)]),
    "a replicated-style task (with a slot) is stopped": (
        [node("n1")], [task("a", node="n1"), task("s", slot=1, node="n1")],
        [("update", "s", "shutdown")]),
    "two tasks on one node: the running one stays": (
        [node("n1")], [task("a", node="n1"), task("b", node="n1", state="assigned")],
        [("update", "b", "shutdown")]),
}


@pytest.mark.parametrize("case", GLOBAL_CASES)
def test_global(case: str) -> None:
    nodes, tasks, expected = GLOBAL_CASES[case]
    ops, _ = decide(gsvc(), tasks, nodes)
    assert summary(ops) == expected


def test_global_task_has_its_node_and_no_slot() -> None:
    (op,), _ = decide(gsvc(), [], [node("n1")])
    assert isinstance(op, CreateTask)
    assert op.task["spec"]["nodeName"] == "n1" and "slot" not in op.task["spec"]


# ---- service status ---------------------------------------------------------------

def test_status_replicated() -> None:
    tasks = [task("a", slot=1, node="n1"), task("b", slot=2, node="n2", state="starting"),
             task("c", slot=3, node="n3", desired="shutdown")]
    assert service_status(service(3, generation=7), tasks, NODES) == \
        {"replicas": 3, "runningReplicas": 1, "observedGeneration": 7}


def test_status_global_counts_nodes_that_should_run_a_task() -> None:
    nodes = [node("n1"), node("n2", zone="us"), node("n3", state="down"),
             node("n4", availability="pause"), node("n5", availability="pause"),
             node("n6", availability="drain")]
    tasks = [task("a", node="n1"), task("b", node="n5"), task("c", node="n3")]
    status = service_status(gsvc(), tasks, nodes, eligible=in_eu)
    assert status == {"replicas": 2, "runningReplicas": 3, "observedGeneration": 1}
