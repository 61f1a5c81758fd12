"""Rebalancing as a pure decision (controllers/rollout/rebalance.py): which tasks move,
how many at once, in which order, and when nothing moves; and that the scheduler puts
each replacement where the decision expects."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.ops import CreateTask, Op, UpdateTask
from controllers.rollout import rebalance
from controllers.rollout.decide import decide as rollout_decide
from controllers.rollout.facts import fingerprint
from controllers.replication import reconcile_service
from controllers.scheduler.plan import plan_placements
from kubeless.api.rollout_annotations import REBALANCE_REQUESTED
from kubeless.api.tasks import REPLACES_ANNOTATION, Task
from tests.support.builders import NOW, ids, in_eu

Resource = dict[str, Any]
UID = "uid-web"


def service(replicas: int, *, order: str = "stop-first", parallelism: int = 1,
            on: bool = True, requested: float | None = None, **placement: Any) -> Resource:
    meta: Resource = {"name": "web", "namespace": "default", "uid": UID, "generation": 3}
    if requested is not None:
        meta["annotations"] = {REBALANCE_REQUESTED: f"{requested:.3f}"}
    return {"apiVersion": "kubeless.io/v1", "kind": "Service", "metadata": meta,
            "spec": {"mode": "replicated", "replicas": replicas,
                     "template": {"image": "web:1"},
                     "placement": {**placement, **({"rebalance": True} if on else {})},
                     "update": {"parallelism": parallelism, "order": order}}}


def node(name: str, *, state: str = "ready", availability: str = "active",
         zone: str = "eu", memory: str | None = None) -> Resource:
    status: Resource = {"state": state}
    if memory:
        status["capacity"] = {"cpus": 4, "memory": memory}
    return {"apiVersion": "kubeless.io/v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"zone": zone}},
            "spec": {"role": "worker", "availability": availability}, "status": status}


def tasks_of(svc: Resource, layout: dict[str, int], *, state: str = "running") -> list[Task]:
    """Tasks frozen from ``svc`` (its version and placement), ``layout`` node -> how many,
    slots numbered in node order."""
    out: list[Task] = []
    for name, count in layout.items():
        for _ in range(count):
            slot = len(out) + 1
            out.append(_task(svc, f"t{slot}", slot, name, state))
    return out


def _task(svc: Resource, name: str, slot: int, node_name: str | None, state: str,
          annotations: dict[str, str] | None = None) -> Task:
    spec = svc["spec"]
    meta: Resource = {"name": name, "namespace": "default", "resourceVersion": "7"}
    if annotations:
        meta["annotations"] = annotations
    body: Resource = {"serviceName": "web", "serviceUid": UID, "specVersion": 3,
                      "template": spec["template"], "placement": spec["placement"],
                      "ports": [], "desiredState": "running", "slot": slot}
    if node_name:
        body["nodeName"] = node_name
    return Task.of({"apiVersion": "kubeless.io/v1", "kind": "Task", "metadata": meta,
                    "spec": body, "status": {"state": state, "timestamp": NOW - 100}})


def nodes(*names: str, **kw: Any) -> list[Resource]:
    return [node(n, **kw) for n in names]


def run(svc: Resource, tasks: list[Task], nodes_: list[Resource], *,
        previous: Resource | None = None,
        rollout: str | None = "completed") -> rebalance.RebalancePlan:
    return rebalance.decide(svc, tasks, nodes_, tasks, previous, rollout, NOW, new_id=ids())


def moved(ops: list[Op]) -> list[tuple[str, Any]]:
    """("stop", task id) or ("start", the task it replaces, its slot) per op."""
    out: list[tuple[str, Any]] = []
    for op in ops:
        if isinstance(op, UpdateTask):
            assert op.task["spec"]["desiredState"] == "shutdown"
            out.append(("stop", op.task["metadata"]["name"]))
        else:
            assert isinstance(op, CreateTask)
            out.append(("start", (op.task["metadata"]["annotations"][REPLACES_ANNOTATION],
                                  op.task["spec"]["slot"])))
    return out


# -- which tasks move ------------------------------------------------------------------

def test_a_joined_node_gets_a_task_from_the_fullest_node() -> None:
    svc = service(4)
    plan = run(svc, tasks_of(svc, {"a": 3, "b": 1}), nodes("a", "b", "c"))
    assert moved(plan.ops) == [("stop", "t3")]  # a holds 3, c none: the highest slot of a
    assert plan.status is not None and plan.status["state"] == "moving"
    assert plan.status["moved"] == 1 and "1 from a to c" in plan.status["message"]


def test_even_within_one_moves_nothing() -> None:
    svc = service(4, parallelism=0)
    plan = run(svc, tasks_of(svc, {"a": 2, "b": 1, "c": 1}), nodes("a", "b", "c"))
    assert plan.ops == []
    assert plan.status is not None and plan.status["state"] == "balanced"


def test_parallelism_zero_moves_every_task_needed_at_once() -> None:
    svc = service(6, parallelism=0)
    plan = run(svc, tasks_of(svc, {"a": 3, "b": 3}), nodes("a", "b", "c"))
    # 3,3,0 -> 2,2,2: one from each full node, both to c
    assert sorted(moved(plan.ops)) == [("stop", "t3"), ("stop", "t6")]
    assert "1 from a to c, 1 from b to c" in str(plan.status)


def test_parallelism_bounds_a_batch() -> None:
    svc = service(8, parallelism=2)
    plan = run(svc, tasks_of(svc, {"a": 8}), nodes("a", "b", "c", "d"))
    assert len(plan.ops) == 2
    assert plan.moved == 2


def test_start_first_starts_the_replacement_in_the_same_slot() -> None:
    svc = service(4, order="start-first", parallelism=0)
    plan = run(svc, tasks_of(svc, {"a": 2, "b": 2}), nodes("a", "b", "c"))
    assert moved(plan.ops) == [("start", ("t4", 4))]  # b's highest slot (ties: b first)
    new = plan.ops[0]
    assert isinstance(new, CreateTask) and "nodeName" not in new.task["spec"]
    assert new.task["spec"]["specVersion"] == 3  # same version: a move, not an update


def test_stop_first_stops_the_old_task() -> None:
    svc = service(4, order="stop-first")
    plan = run(svc, tasks_of(svc, {"a": 2, "b": 2}), nodes("a", "b", "c"))
    assert moved(plan.ops) == [("stop", "t4")]


def test_max_replicas_per_node_leaves_a_full_target_alone() -> None:
    svc = service(5, parallelism=0, maxReplicasPerNode=3)
    # c already holds its 3: only d can take one
    plan = run(svc, tasks_of(svc, {"a": 2, "c": 3}), nodes("a", "c", "d"))
    assert [m[1] for m in moved(plan.ops)] == ["t5"]
    assert "from c to d" in str(plan.status)


def test_max_replicas_per_node_can_make_even_impossible() -> None:
    svc = service(4, parallelism=0, maxReplicasPerNode=2)
    plan = run(svc, tasks_of(svc, {"a": 2, "b": 2}), nodes("a", "b", "c"))
    assert moved(plan.ops) == [("stop", "t4")]  # c holds none: it may take 2
    full = run(svc, tasks_of(svc, {"a": 2, "b": 2}), nodes("a", "b"))
    assert full.ops == []


def test_a_node_the_constraints_exclude_gets_nothing() -> None:
    svc = service(4, parallelism=0, constraints=["node.labels.zone==eu"])
    cluster = nodes("a", "b") + [node("us1", zone="us")]
    plan = run(svc, tasks_of(svc, {"a": 2, "b": 2}), cluster)
    assert plan.ops == [] and plan.status is not None and plan.status["state"] == "balanced"


@pytest.mark.parametrize("kw", [{"state": "down"}, {"availability": "pause"},
                                {"availability": "drain"}])
def test_a_node_not_ready_or_not_active_gets_nothing(kw: dict[str, Any]) -> None:
    svc = service(4, parallelism=0)
    plan = run(svc, tasks_of(svc, {"a": 2, "b": 2}), nodes("a", "b") + [node("c", **kw)])
    assert plan.ops == []


def test_tasks_on_a_paused_node_stay() -> None:
    svc = service(4, parallelism=0)
    cluster = [node("a", availability="pause"), node("b"), node("c")]
    plan = run(svc, tasks_of(svc, {"a": 4}), cluster)
    assert plan.ops == []  # pause keeps its tasks; only eligible nodes give


def test_a_node_without_room_gets_nothing() -> None:
    svc = service(4, parallelism=0)
    svc["spec"]["template"]["resources"] = {"reservations": {"memory": "1Gi"}}
    cluster = [node("a", memory="8Gi"), node("b", memory="8Gi"), node("c", memory="512Mi")]
    plan = run(svc, tasks_of(svc, {"a": 2, "b": 2}), cluster)
    assert plan.ops == []


# -- when nothing moves ------------------------------------------------------------------

@pytest.mark.parametrize("rollout", ["updating", "paused", "rollback_started",
                                     "rollback_paused"])
def test_nothing_moves_during_a_rollout(rollout: str) -> None:
    svc = service(4)
    plan = run(svc, tasks_of(svc, {"a": 4}), nodes("a", "b"), rollout=rollout)
    assert plan.ops == []
    assert plan.status == {"state": "waiting", "message": "waiting: rollout in progress"}


def test_nothing_moves_while_a_task_is_not_running() -> None:
    svc = service(4)
    tasks = tasks_of(svc, {"a": 3}) + [_task(svc, "t4", 4, "a", "starting")]
    plan = run(svc, tasks, nodes("a", "b"))
    assert plan.ops == []
    assert plan.status is not None
    assert plan.status["message"] == "waiting: tasks not running (3 of 4 running)"


def test_nothing_moves_while_a_slot_is_empty() -> None:
    svc = service(4)
    plan = run(svc, tasks_of(svc, {"a": 3}), nodes("a", "b"))
    assert plan.ops == [] and plan.status is not None and plan.status["state"] == "waiting"


def test_a_batch_on_its_way_stays_moving() -> None:
    svc = service(4, order="start-first")
    tasks = tasks_of(svc, {"a": 3, "b": 1}) + [
        _task(svc, "n1", 3, "c", "starting", {REPLACES_ANNOTATION: "t3"})]
    previous = {"state": "moving", "moved": 1, "message": "moving 1 from a to c"}
    plan = run(svc, tasks, nodes("a", "b", "c"), previous=previous)
    assert plan.ops == [] and plan.status == previous


def test_off_by_default() -> None:
    svc = service(4, on=False)
    plan = run(svc, tasks_of(svc, {"a": 4}), nodes("a", "b"))
    assert plan.ops == [] and plan.status is None


@pytest.mark.parametrize("mode", ["global", "replicated-job", "global-job"])
def test_only_replicated_services_rebalance(mode: str) -> None:
    svc = service(4, requested=NOW - 5)
    svc["spec"]["mode"] = mode
    assert not rebalance.wanted(svc, None)


# -- a one-shot request ------------------------------------------------------------------

def test_a_request_moves_until_even_then_is_done() -> None:
    svc = service(4, on=False, requested=NOW - 5)
    assert rebalance.wanted(svc, None)
    first = run(svc, tasks_of(svc, {"a": 4}), nodes("a", "b"))
    assert moved(first.ops) == [("stop", "t4")]
    assert first.status is not None and "requested" not in first.status
    done = run(svc, tasks_of(svc, {"a": 2, "b": 2}), nodes("a", "b"), previous=first.status)
    assert done.status == {"state": "balanced", "message": "the spread is even",
                           "moved": 1, "requested": NOW - 5, "completedAt": NOW}
    assert not rebalance.wanted(svc, done.status)  # done: not evaluated again
    again = service(4, on=False, requested=NOW + 1)
    assert rebalance.wanted(again, done.status)  # a newer request is


def test_a_request_on_an_even_service_is_done_at_once() -> None:
    svc = service(4, on=False, requested=NOW - 5)
    plan = run(svc, tasks_of(svc, {"a": 2, "b": 2}), nodes("a", "b"))
    assert plan.ops == []
    assert plan.status == {"state": "balanced", "message": "the spread is even", "moved": 0,
                           "requested": NOW - 5, "completedAt": NOW}


def test_an_even_status_is_not_rewritten() -> None:
    svc = service(4)
    previous = {"state": "balanced", "message": "the spread is even", "moved": 2,
                "completedAt": NOW - 50}
    plan = run(svc, tasks_of(svc, {"a": 2, "b": 2}), nodes("a", "b"), previous=previous)
    assert plan.status == previous


# -- what the rest of the controllers do with a move ------------------------------------

def test_the_scheduler_puts_a_start_first_replacement_on_the_emptiest_node() -> None:
    """The old task still counts on its (full) node while its replacement is placed, so
    the spread never puts the replacement back beside it, and a batch lands where the
    decision expected."""
    svc = service(6, order="start-first", parallelism=0)
    tasks = tasks_of(svc, {"a": 3, "b": 3})
    cluster = nodes("a", "b", "c")
    plan = run(svc, tasks, cluster)
    created = [Task.of(op.task) for op in plan.ops if isinstance(op, CreateTask)]
    assert len(created) == 2
    placed = plan_placements(created, cluster, tasks + created)
    assert [a.node_id for a in placed.assignments] == ["c", "c"]
    assert "1 from a to c, 1 from b to c" in str(plan.status)


def test_the_scheduler_places_a_stop_first_refill_on_the_emptiest_node() -> None:
    svc = service(4, order="stop-first")
    tasks = tasks_of(svc, {"a": 3, "b": 1})
    cluster = nodes("a", "b", "c")
    plan = run(svc, tasks, cluster)
    assert moved(plan.ops) == [("stop", "t3")]
    stopped = [t for t in tasks if t.id != "t3"]  # seen stopped: it holds nothing
    refill = _task(svc, "r3", 3, None, "pending")
    placed = plan_placements([refill], cluster, stopped + [refill])
    assert [a.node_id for a in placed.assignments] == ["c"]


def test_replication_leaves_a_rebalance_pair_alone() -> None:
    """Both tasks of a rebalance's pair are at the same version: still a pair."""
    svc = service(2, order="start-first")
    tasks = tasks_of(svc, {"a": 2}) + [
        _task(svc, "n2", 2, "b", "running", {REPLACES_ANNOTATION: "t2"})]
    decision = reconcile_service(svc, tasks, nodes("a", "b"), NOW, new_id=ids(),
                                 eligible=in_eu)
    assert decision.ops == []


def test_the_rollout_stops_the_old_task_once_its_replacement_runs() -> None:
    svc = service(2, order="start-first")
    previous = {"state": "completed", "specHash": fingerprint(svc["spec"]),
                "generation": 3, "forceUpdate": 0, "forceBase": 0}
    starting = tasks_of(svc, {"a": 2}) + [
        _task(svc, "n2", 2, "b", "starting", {REPLACES_ANNOTATION: "t2"})]
    assert rollout_decide(svc, starting, previous, 2, NOW).ops == []
    running = tasks_of(svc, {"a": 2}) + [
        _task(svc, "n2", 2, "b", "running", {REPLACES_ANNOTATION: "t2"})]
    ops = rollout_decide(svc, running, previous, 2, NOW).ops
    assert [(op.task["metadata"]["name"], op.task["spec"]["desiredState"])
            for op in ops if isinstance(op, UpdateTask)] == [("t2", "shutdown")]


def test_turning_rebalance_on_or_off_is_no_new_rollout_target() -> None:
    on, off = service(2), service(2, on=False)
    assert fingerprint(on["spec"]) == fingerprint(off["spec"])
