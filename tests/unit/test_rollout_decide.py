"""Table tests for the rollout decision: which slots go next, and the update state."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controllers.ops import CreateTask, DeleteTask, Op, UpdateTask
from controllers.rollout.decide import RolloutPlan, decide
from controllers.rollout.facts import fingerprint
from kubeless.api import rollout_annotations as ann
from kubeless.api.tasks import REPLACES_ANNOTATION, Task
from tests.support.builders import ids, with_effective

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
         ts: float = NOW - 50, replaces: str | None = None) -> Task:
    meta: Resource = {"name": name, "namespace": "default", "resourceVersion": "3",
                      "creationTimestamp": created}
    if replaces:
        meta["annotations"] = {REPLACES_ANNOTATION: replaces}
    return with_effective({"kind": "Task", "metadata": meta,
                           "spec": {"serviceName": "web", "slot": slot, "specVersion": version,
                                    "template": {"image": image}, "placement": {}, "ports": [],
                                    "nodeName": "n1", "desiredState": desired},
                           "status": {"state": state, "timestamp": ts}}, None)


def olds(n: int = 4) -> list[Task]:
    return [task(f"o{i}", i) for i in range(1, n + 1)]


def active(svc: Resource, **kw: Any) -> Resource:
    """The stored updateStatus of a rollout toward svc that started at NOW - 10."""
    return {"state": "updating", "startedAt": NOW - 10, "failuresSince": NOW - 10,
            "generation": svc["metadata"]["generation"], "forceUpdate": 0, "forceBase": 0,
            "specHash": fingerprint(svc["spec"]), "rollback": False, **kw}


def run(svc: Resource, tasks: list[Task], prev: Resource | None = None,
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

BATCHES: dict[str, tuple[Resource, list[Task], list[tuple[str, Any, Any]]]] = {
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


def new(slot: int, ran: float, state: str = "running") -> Task:
    return task(f"n{slot}", slot, "web:2", state=state, version=2, ts=NOW - ran)


# (parallelism, tasks, ops wanted, requeue_after wanted); delay 10s, rollout started NOW - 30
DELAYS: dict[str, tuple[int, list[Task], list[tuple[str, Any, Any]], float | None]] = {
    "parallelism 2: one of the batch ran, the other starts: nothing more": (
        2, [new(1, 4), new(2, 1, "starting")] + olds()[2:], [], 6),
    "parallelism 2: the batch ran 4 and 5 s ago: the first place frees in 5 s": (
        2, [new(1, 4), new(2, 5)] + olds()[2:], [], 5),
    "parallelism 2: one ran 11 s ago, one 4 s ago: one slot now": (
        2, [new(1, 11), new(2, 4)] + olds()[2:], [("stop", "o3", "shutdown")], 6),
    "parallelism 2: both ran over 10 s ago: the next batch": (
        2, [new(1, 11), new(2, 12)] + olds()[2:],
        [("stop", "o3", "shutdown"), ("stop", "o4", "shutdown")], None),
    "parallelism 3: one resting, one in flight: one slot now": (
        3, [new(1, 4), new(2, 1, "starting")] + olds()[2:], [("stop", "o3", "shutdown")], 6),
    "a new task that failed rests its slot too (Swarm waits after any end)": (
        2, [new(1, 4, "failed"), new(2, 3)] + olds()[2:], [], 6),
    "a task that ran before the rollout started does not rest": (
        1, [new(1, 40)] + olds()[1:], [("stop", "o2", "shutdown")], None),
    "parallelism 0: every slot at once, no delay": (
        0, [new(1, 4)] + olds()[1:], [("stop", f"o{i}", "shutdown") for i in (2, 3, 4)], None),
}


@pytest.mark.parametrize("case", list(DELAYS))
def test_delay_between_batches_whatever_the_parallelism(case: str) -> None:
    parallelism, tasks, wanted, requeue = DELAYS[case]
    for kind in ("update", "rollback"):
        svc = service(parallelism=parallelism, delay="10s")
        prev = active(svc, startedAt=NOW - 30, failuresSince=NOW - 30)
        if kind == "rollback":
            svc["spec"]["update"]["delay"] = "0s"  # only the rollback config counts
            prev.update(state="rollback_started", rollback=True)
        plan = run(svc, tasks, prev)
        assert summary(plan.ops) == wanted, kind
        assert plan.requeue_after == (None if requeue is None else pytest.approx(requeue)), kind


# ---- monitor and failures ------------------------------------------------------------

def updated(n: int, *, ts: float = NOW - 50) -> list[Task]:
    return [task(f"n{i}", i, "web:2", version=2, ts=ts) for i in range(1, n + 1)]


def test_completed_once_monitor_passed_after_the_last_task_ran() -> None:
    svc = service()
    plan = run(svc, updated(4, ts=NOW - 2), active(svc))
    assert plan.update_status["state"] == "updating" and plan.requeue_after == pytest.approx(3)
    plan = run(svc, updated(4, ts=NOW - 2), active(svc), now=NOW + 3)
    assert plan.update_status["state"] == "completed"
    assert plan.update_status["completedAt"] == NOW + 3 and plan.events == ["completed"]


def failing(slot: int = 1, *, created: float = NOW - 3, ended: float = NOW - 2) -> Task:
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


# ---- the delay, as a property of a whole rollout ---------------------------------------

def simulate(parallelism: int, delay: float, latencies: list[float]) -> list[tuple[float, float]]:
    """Roll a stop-first update over len(latencies) slots: each pass applies the plan,
    replication refills a stopped slot at once, a new task runs ``latency`` later.
    Returns (taken, ran) per slot: when its old task was stopped and its new one ran."""
    svc = service(parallelism=parallelism, delay=f"{delay}s", replicas=len(latencies))
    tasks = {i: task(f"o{i}", i) for i in range(1, len(latencies) + 1)}
    taken: dict[int, float] = {}
    ran: dict[int, float] = {}
    prev: Resource | None = {"specHash": "before", "generation": 1, "forceUpdate": 0}
    now = NOW
    for _ in range(10 * len(latencies) + 10):
        for slot, at in taken.items():  # the new tasks whose time has come run
            if slot not in ran and at + latencies[slot - 1] <= now:
                ran[slot] = at + latencies[slot - 1]
                tasks[slot] = new(slot, NOW - ran[slot])
        plan = decide(svc, list(tasks.values()), prev, len(latencies), now, new_id=ids())
        prev = plan.update_status
        for op in plan.ops:
            slot = op.task["spec"]["slot"]
            taken[slot] = now
            tasks[slot] = new(slot, NOW - now, "pending")
        if prev.get("state") == "completed":
            return [(taken[s], ran[s]) for s in sorted(taken)]
        waits = [taken[s] + latencies[s - 1] for s in taken if s not in ran]
        if plan.requeue_after is not None:
            waits.append(now + plan.requeue_after)
        now = min(waits)
    raise AssertionError("the rollout did not end")


@given(parallelism=st.integers(1, 4), delay=st.sampled_from([0.5, 3.0, 10.0]),
       latencies=st.lists(st.sampled_from([0.0, 0.2, 1.0, 4.0, 15.0]), min_size=1, max_size=8))
@settings(max_examples=150, deadline=None)
def test_no_slot_is_taken_while_parallelism_others_are_in_flight_or_resting(
        parallelism: int, delay: float, latencies: list[float]) -> None:
    """Swarm's workers: a slot holds its place from the moment it is taken until ``delay``
    after its new task ran; never more than ``parallelism`` places are held at once."""
    spans = simulate(parallelism, delay, latencies)
    assert len(spans) == len(latencies)  # every slot updated
    for taken, _ in spans:
        held = sum(1 for t, r in spans if t <= taken < r + delay)
        assert held <= parallelism


def test_six_tasks_parallelism_two_take_at_least_two_delays() -> None:
    spans = simulate(2, 10.0, [0.2, 1.0, 4.0] * 2)  # a batch whose tasks run apart
    assert max(t for t, _ in spans) - min(t for t, _ in spans) >= 20.0
