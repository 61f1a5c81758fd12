"""Table tests for the rollout decision: which slots go next, and the update state."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controllers.ops import CreateTask, DeleteTask, Op, UpdateTask
from controllers.replication.slots import REPLACES_ANNOTATION
from controllers.rollout import annotations as ann
from controllers.rollout.decide import RolloutPlan, decide
from controllers.rollout.facts import fingerprint
from tests.unit.test_replication_sim import ids, with_effective

Resource = dict[str, Any]
NOW = 1_000_000.0


def service(image: str = "web:2", *, generation: int = 2, replicas: int = 4,
            force: int = 0, annotations: dict[str, str] | None = None, **update: Any) -> Resource:
    cfg = {"parallelism": 1, "delay": "0s", "failureAction": "pause", "monitor": "5s",
           "maxFailureRatio": 0, "order": "stop-first", **update}
    meta: Resource = {"name": "web", "namespace": "default", "uid": "u", "generation": generation}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "kubeless.io/v1", "kind": "Service", "metadata": meta,
            "spec": {"replicas": replicas, "template": {"image": image}, "forceUpdate": force,
                     "update": cfg, "rollback": {**cfg, "failureAction": "pause"}}}


def task(name: str, slot: int, image: str = "web:1", *, state: str = "running",
         desired: str = "running", version: int = 1, created: float = NOW - 100,
         ts: float = NOW - 50, replaces: str | None = None) -> Resource:
    meta: Resource = {"name": name, "namespace": "default", "resourceVersion": "3",
                      "creationTimestamp": created}
    if replaces:
        meta["annotations"] = {REPLACES_ANNOTATION: replaces}
    return with_effective({"kind": "Task", "metadata": meta,
                           "spec": {"serviceName": "web", "slot": slot, "specVersion": version,
                                    "template": {"image": image}, "placement": {}, "ports": [],
                                    "nodeName": "n1", "desiredState": desired},
                           "status": {"state": state, "timestamp": ts}}, None)


def olds(n: int = 4) -> list[Resource]:
    return [task(f"o{i}", i) for i in range(1, n + 1)]


def active(svc: Resource, **kw: Any) -> Resource:
    """The stored updateStatus of a rollout toward svc that started at NOW - 10."""
    return {"state": "updating", "startedAt": NOW - 10, "failuresSince": NOW - 10,
            "generation": svc["metadata"]["generation"], "forceUpdate": 0, "forceBase": 0,
            "specHash": fingerprint(svc["spec"]), "rollback": False, **kw}


def run(svc: Resource, tasks: list[Resource], prev: Resource | None = None,
        now: float = NOW) -> RolloutPlan:
    return decide(svc, tasks, prev, svc["spec"]["replicas"], now, new_id=ids())


def summary(ops: list[Op]) -> list[tuple[str, Any, Any]]:
    out: list[tuple[str, Any, Any]] = []
    for op in ops:
        if isinstance(op, CreateTask):
            out.append(("create", op.task["spec"]["slot"],
                        op.task["metadata"].get("annotations", {}).get(REPLACES_ANNOTATION)))
        elif isinstance(op, UpdateTask):
            out.append(("stop", op.task["metadata"]["name"], op.task["spec"]["desiredState"]))
        elif isinstance(op, DeleteTask):
            out.append(("delete", op.task["metadata"]["name"], None))
    return out


# ---- starting ------------------------------------------------------------------

def test_a_new_spec_starts_an_update_and_stops_parallelism_old_tasks() -> None:
    svc = service()
    plan = run(svc, olds(), {"specHash": "before", "generation": 1, "forceUpdate": 0})
    assert plan.update_status["state"] == "updating"
    assert plan.update_status["startedAt"] == NOW
    assert plan.events == ["started"]
    assert summary(plan.ops) == [("stop", "o1", "shutdown")]
    assert plan.replaced == 1


def test_a_new_service_records_its_target_without_a_rollout() -> None:
    svc = service("web:1", generation=1)
    plan = run(svc, [], None)
    assert "state" not in plan.update_status and plan.ops == [] and plan.events == []
    assert plan.update_status["specHash"] == fingerprint(svc["spec"])


def test_a_scale_or_config_change_replaces_nothing() -> None:
    svc = service("web:1", generation=5, replicas=4)
    prev = {"specHash": fingerprint(service("web:1")["spec"]), "generation": 4,
            "forceUpdate": 0, "forceBase": 0, "state": "completed"}
    plan = run(svc, olds())
    plan = run(svc, olds(), prev)
    assert plan.ops == [] and plan.update_status["state"] == "completed"


def test_force_update_makes_every_task_old() -> None:
    svc = service("web:1", generation=3, force=1)
    prev = {"specHash": fingerprint(service("web:1")["spec"]), "generation": 2,
            "forceUpdate": 0, "forceBase": 0, "state": "completed"}
    plan = run(svc, olds(), prev)
    assert plan.update_status["forceBase"] == 3
    assert plan.update_status["state"] == "updating"
    assert summary(plan.ops) == [("stop", "o1", "shutdown")]


# ---- batches -------------------------------------------------------------------

BATCHES: dict[str, tuple[Resource, list[Resource], list[tuple[str, Any, Any]]]] = {
    "parallelism 2: two slots, lowest first": (
        service(parallelism=2), olds(), [("stop", "o1", "shutdown"), ("stop", "o2", "shutdown")]),
    "parallelism 0: every slot": (
        service(parallelism=0), olds(), [("stop", f"o{i}", "shutdown") for i in range(1, 5)]),
    "a slot in flight (new task pending) uses the budget": (
        service(), [task("n1", 1, "web:2", state="pending", version=2)] + olds()[1:], []),
    "a free slot replication has yet to fill uses the budget": (
        service(), [task("o1", 1, desired="shutdown", state="shutdown")] + olds()[1:], []),
    "the new task runs: next slot": (
        service(), [task("n1", 1, "web:2", version=2)] + olds()[1:],
        [("stop", "o2", "shutdown")]),
    "old tasks that do not run go first": (
        service(), olds()[:2] + [task("o3", 3, state="pending"), task("o4", 4)],
        [("delete", "o3", None)]),  # never bound: deleted at once
    "start-first creates the new task in the same slot": (
        service(order="start-first"), olds(), [("create", 1, "o1")]),
    "start-first: the pair waits while the new task starts": (
        service(order="start-first"),
        olds() + [task("n1", 1, "web:2", state="starting", version=2, replaces="o1")], []),
    "start-first: the new task runs, the old one stops, the next slot starts": (
        service(order="start-first"),
        olds() + [task("n1", 1, "web:2", version=2, replaces="o1")],
        [("stop", "o1", "shutdown"), ("create", 2, "o2")]),
    "start-first on a slot whose old task ended: stop-first": (
        service(order="start-first"), [task("o1", 1, state="failed")] + olds()[1:],
        [("stop", "o1", "shutdown")]),
}


@pytest.mark.parametrize("case", list(BATCHES))
def test_batches(case: str) -> None:
    svc, tasks, expected = BATCHES[case]
    assert summary(run(svc, tasks, active(svc)).ops) == expected


def test_delay_waits_after_the_last_batch_ran() -> None:
    svc = service(delay="10s")
    tasks = [task("n1", 1, "web:2", version=2, ts=NOW - 4)] + olds()[1:]
    plan = run(svc, tasks, active(svc))
    assert plan.ops == [] and plan.requeue_after == pytest.approx(6)
    assert summary(run(svc, tasks, active(svc), now=NOW + 6).ops) == [("stop", "o2", "shutdown")]


# ---- monitor and failures ------------------------------------------------------------

def updated(n: int, *, ts: float = NOW - 50) -> list[Resource]:
    return [task(f"n{i}", i, "web:2", version=2, ts=ts) for i in range(1, n + 1)]


def test_completed_once_monitor_passed_after_the_last_task_ran() -> None:
    svc = service()
    plan = run(svc, updated(4, ts=NOW - 2), active(svc))
    assert plan.update_status["state"] == "updating" and plan.requeue_after == pytest.approx(3)
    plan = run(svc, updated(4, ts=NOW - 2), active(svc), now=NOW + 3)
    assert plan.update_status["state"] == "completed"
    assert plan.update_status["completedAt"] == NOW + 3 and plan.events == ["completed"]


def failing(slot: int = 1, *, created: float = NOW - 3, ended: float = NOW - 2) -> Resource:
    return task(f"f{slot}", slot, "web:2", state="failed", version=2, created=created, ts=ended)


def test_a_failure_within_monitor_pauses() -> None:
    svc = service()
    plan = run(svc, [failing()] + olds()[1:], active(svc))
    assert plan.ops == []
    assert plan.update_status["state"] == "paused"
    assert plan.update_status["pausedBy"] == "failure"
    assert "f1" in plan.update_status["message"] and plan.events == ["paused"]


def test_a_failure_after_monitor_does_not_count() -> None:
    svc = service()
    late = failing(created=NOW - 9, ended=NOW - 2)  # ran 7 s, monitor 5 s
    plan = run(svc, [late] + olds()[1:], active(svc))
    assert plan.update_status["state"] == "updating"


def test_failures_under_the_ratio_go_on() -> None:
    svc = service(maxFailureRatio=0.5, parallelism=1)
    tasks = [failing(1)] + updated(3)[1:] + [task("o4", 4)]
    plan = run(svc, tasks, active(svc))
    assert plan.update_status["state"] == "updating"  # 1 of 3 < 0.5
    assert summary(plan.ops) == [("stop", "o4", "shutdown")]


def test_continue_moves_on_and_does_not_retry_the_failed_slot() -> None:
    svc = service(failureAction="continue", order="start-first")
    tasks = olds() + [task("f1", 1, "web:2", state="failed", desired="shutdown", version=2,
                           created=NOW - 3, ts=NOW - 2, replaces="o1")]
    assert summary(run(svc, tasks, active(svc)).ops) == [("create", 2, "o2")]


def test_failure_action_rollback_asks_for_the_previous_spec() -> None:
    prev_spec = service("web:1")["spec"]
    svc = service(failureAction="rollback",
                  annotations={ann.PREVIOUS_SPEC: ann.previous_of(1, prev_spec)})
    plan = run(svc, [failing()] + olds()[1:], active(svc))
    assert plan.rollback is not None and "f1" in plan.rollback
    assert plan.update_status["state"] == "rollback_started"


def test_failure_action_rollback_without_a_previous_spec_pauses() -> None:
    svc = service(failureAction="rollback")
    plan = run(svc, [failing()] + olds()[1:], active(svc))
    assert plan.rollback is None and plan.update_status["state"] == "paused"


def test_a_failing_rollback_pauses_never_rolls_back() -> None:
    svc = service(failureAction="rollback")
    plan = run(svc, [failing()] + olds()[1:], active(svc, state="rollback_started",
                                                       rollback=True))
    assert plan.rollback is None and plan.update_status["state"] == "rollback_paused"


def test_failures_before_a_resume_are_forgiven() -> None:
    svc = service(annotations={ann.RESUMED: str(NOW - 1)})
    prev = active(svc, state="paused", pausedBy="failure", pausedAt=NOW - 2)
    plan = run(svc, [failing()] + olds()[1:], prev)
    assert plan.update_status["state"] == "updating"
    assert plan.update_status["failuresSince"] == NOW
    # slot 1 is the restart policy's now (its task ended): the next slot goes
    assert summary(plan.ops) == [("stop", "o2", "shutdown")]


def test_paused_on_failure_stays_paused_without_a_resume() -> None:
    svc = service()
    prev = active(svc, state="paused", pausedBy="failure", pausedAt=NOW - 2)
    plan = run(svc, [failing()] + olds()[1:], prev)
    assert plan.update_status["state"] == "paused" and plan.ops == []


# ---- pause, rollback, new spec ---------------------------------------------------

def test_the_user_pauses_and_resumes() -> None:
    svc = service(annotations={ann.PAUSED: "true"})
    plan = run(svc, olds(), active(svc))
    assert plan.update_status["state"] == "paused" and plan.ops == []
    plan = run(service(), olds(), plan.update_status)
    assert plan.update_status["state"] == "updating"
    assert summary(plan.ops) == [("stop", "o1", "shutdown")]


def test_a_rollback_generation_uses_the_rollback_config_and_states() -> None:
    marker = json.dumps({"generation": 3, "reason": "manually requested rollback"})
    svc = service("web:1", generation=3, annotations={ann.ROLLBACK: marker})
    svc["spec"]["rollback"]["parallelism"] = 2
    tasks = [task("n1", 1, "web:2", version=2), task("n2", 2, "web:2", version=2)] + olds()[2:]
    prev = active(service(), state="paused")
    plan = run(svc, tasks, prev)
    assert plan.update_status["state"] == "rollback_started"
    assert plan.update_status["message"] == "manually requested rollback"
    assert plan.events == ["rolled_back"]
    # slots 3 and 4 already run web:1: only the two updated slots go back
    assert summary(plan.ops) == [("stop", "n1", "shutdown"), ("stop", "n2", "shutdown")]


def test_a_new_spec_mid_rollout_restarts_toward_it() -> None:
    svc2 = service()
    prev = active(svc2, startedAt=NOW - 100)
    svc3 = service("web:3", generation=3)
    tasks = [task("n1", 1, "web:2", version=2)] + olds()[1:]
    plan = run(svc3, tasks, prev)
    assert plan.update_status["startedAt"] == NOW and plan.events == ["started"]
    assert summary(plan.ops) == [("stop", "n1", "shutdown")]


def test_rolled_back_swaps_current_and_previous() -> None:
    live = service("web:2", annotations={ann.PREVIOUS_SPEC: ann.previous_of(
        1, service("web:1")["spec"])})
    back = ann.rolled_back(live, "manual")
    assert back["spec"]["template"]["image"] == "web:1"
    assert back["metadata"]["generation"] == 3
    assert ann.rollback_reason(back) == "manual"
    previous = ann.previous_spec(back)
    assert previous is not None and previous[0] == 2
    assert previous[1]["template"]["image"] == "web:2"
    auto = ann.rolled_back(live, "auto", keep_current=False)
    assert ann.previous_spec(auto) is None
    with pytest.raises(ValueError):
        ann.rolled_back(service(), "x")


def test_keep_previous_on_a_spec_change_and_keep_rollout_annotations() -> None:
    live = service("web:1", annotations={ann.PAUSED: "true"})
    new = service("web:2", annotations={"mine": "x"})
    ann.keep_previous(new, live, spec_changed=True)
    got = new["metadata"]["annotations"]
    assert got["mine"] == "x" and got[ann.PAUSED] == "true"
    assert json.loads(got[ann.PREVIOUS_SPEC])["spec"]["template"]["image"] == "web:1"
