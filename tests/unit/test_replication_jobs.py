"""Jobs' decisions on plain data: completions, concurrency, failure, runs and schedules."""

from __future__ import annotations

import calendar
import random
from datetime import datetime
from typing import Any

from hypothesis import given, settings, strategies as st

from controllers.ops import CreateTask, DeleteTask, Op, UpdateTask
from controllers.replication import reconcile_service, service_status
from kubeless.api.tasks import Task
from tests.support.builders import NOW, ids, in_eu, node, service, task

Resource = dict[str, Any]
NODES = [node("n1"), node("n2"), node("n3"), node("us", zone="us")]


def job(replicas: int = 6, *, mode: str = "replicated-job", max_concurrent: int | None = 2,
        generation: int = 1, force: int = 0, schedule: str | None = None,
        restart: dict[str, Any] | None = None, runs: int | None = None) -> Resource:
    svc = service(replicas, mode=mode, generation=generation,
                  restart={"condition": "any", **(restart or {})})
    spec = svc["spec"]
    if max_concurrent is not None and mode == "replicated-job":
        spec["maxConcurrent"] = max_concurrent
    if force:
        spec["forceUpdate"] = force
    if schedule:
        spec["schedule"] = schedule
    if runs is not None:
        spec["runHistoryLimit"] = runs
    return svc


def jt(name: str, run: int, *, slot: int | None = None, node: str | None = "n1",
       state: str = "running", desired: str = "running", version: int = 1,
       ts: float = NOW - 100) -> Task:
    """A job's task of ``run``."""
    base = task(name, slot=slot, node=node, state=state, desired=desired, version=version, ts=ts)
    stored = {**base.stored, "spec": {**base.stored["spec"], "jobRun": run}}
    return Task.of(stored)


def decide(svc: Resource, tasks: list[Task], prev: Resource | None = None,
           now: float = NOW, nodes: list[Resource] = NODES) -> tuple[list[Op], Resource, Any]:
    d = reconcile_service(svc, tasks, nodes, now, new_id=ids(), eligible=in_eu, job=prev)
    assert d.job is not None
    return d.ops, d.job, d.requeue_after


def summary(ops: list[Op]) -> list[tuple[str, Any, Any]]:
    out: list[tuple[str, Any, Any]] = []
    for op in ops:
        if isinstance(op, CreateTask):
            spec = op.task["spec"]
            out.append(("create", spec.get("slot") or spec.get("nodeName"), spec["jobRun"]))
        elif isinstance(op, UpdateTask):
            out.append(("update", op.task["metadata"]["name"], op.task["spec"]["desiredState"]))
        elif isinstance(op, DeleteTask):
            out.append(("delete", op.task["metadata"]["name"], None))
    return out


def status(svc: Resource, tasks: list[Task], book: Resource,
           nodes: list[Resource] = NODES) -> Resource:
    return service_status(svc, tasks, nodes, eligible=in_eu, job=book, now=NOW)


RUN1 = {"run": 1, "trigger": "created", "startedAt": NOW - 500, "generation": 1,
        "forceUpdate": 0}


# -- replicated jobs ---------------------------------------------------------------

def test_creation_starts_run_1_with_max_concurrent_tasks() -> None:
    ops, book, _ = decide(job(), [])
    assert summary(ops) == [("create", 1, 1), ("create", 2, 1)]
    assert book["run"] == 1 and book["trigger"] == "created" and book["startedAt"] == NOW
    st_ = status(job(), [], book)
    assert (st_["replicas"], st_["runningReplicas"]) == (6, 0)
    assert st_["job"]["state"] == "running" and st_["job"]["total"] == 6


def test_a_completion_frees_its_place_for_the_next_index() -> None:
    tasks = [jt("a", 1, slot=1, state="complete"), jt("b", 1, slot=2)]
    ops, book, _ = decide(job(), tasks, RUN1)
    assert summary(ops) == [("create", 3, 1)]
    js = status(job(), tasks, book)["job"]
    assert (js["succeeded"], js["running"], js["state"]) == (1, 1, "running")


def test_complete_tasks_are_never_restarted_and_the_run_completes() -> None:
    tasks = [jt(f"t{i}", 1, slot=i, state="complete") for i in range(1, 7)]
    ops, book, _ = decide(job(), tasks, RUN1)
    assert ops == []
    st_ = status(job(), tasks, book)
    assert st_["job"]["state"] == "complete" and st_["job"]["completedAt"] == NOW
    assert st_["job"]["runs"] == [{"run": 1, "state": "complete", "succeeded": 6, "failed": 0,
                                   "startedAt": NOW - 500, "completedAt": NOW}]
    assert (st_["replicas"], st_["runningReplicas"]) == (6, 0)


def test_a_failure_is_retried_under_the_policy_within_the_concurrency() -> None:
    tasks = [jt("a", 1, slot=1, state="failed"), jt("b", 1, slot=2)]
    ops, _, _ = decide(job(restart={"condition": "on-failure", "delay": "0s"}), tasks, RUN1)
    assert summary(ops) == [("update", "a", "shutdown"), ("create", 1, 1)]
    tasks = [jt("a", 1, slot=1, state="failed"), jt("b", 1, slot=2), jt("c", 1, slot=3)]
    ops, _, _ = decide(job(max_concurrent=2, restart={"condition": "on-failure", "delay": "0s"}),
                       tasks, RUN1)
    assert summary(ops) == []  # two going already: the retry waits its turn


def test_a_retry_waits_the_delay() -> None:
    tasks = [jt("a", 1, slot=1, state="failed", ts=NOW - 1)]
    ops, _, requeue = decide(job(1, restart={"condition": "on-failure", "delay": "5s"}), tasks,
                             RUN1)
    assert ops == [] and requeue == 4.0


def test_the_run_fails_when_only_dead_places_are_left() -> None:
    svc = job(2, restart={"condition": "none"})
    tasks = [jt("a", 1, slot=1, state="complete"), jt("b", 1, slot=2, state="failed")]
    ops, book, _ = decide(svc, tasks, RUN1)
    assert ops == []
    js = status(svc, tasks, book)["job"]
    assert (js["state"], js["succeeded"], js["failed"]) == ("failed", 1, 1)


def test_a_new_generation_is_a_new_run_the_old_tasks_stopped() -> None:
    tasks = [jt("a", 1, slot=1, state="complete"), jt("b", 1, slot=2)]
    svc = job(generation=2)
    ops, book, _ = decide(svc, tasks, {**RUN1, "runs": [{"run": 1}]})
    assert summary(ops) == [("update", "b", "shutdown"), ("create", 1, 2), ("create", 2, 2)]
    assert (book["run"], book["trigger"], book["generation"]) == (2, "update", 2)
    assert book["runs"][0]["run"] == 1 and book["runs"][0]["state"] == "stopped"
    assert book["runs"][0]["succeeded"] == 1 and len(book["runs"]) == 1


def test_force_update_starts_a_new_run_of_a_completed_job() -> None:
    tasks = [jt(f"t{i}", 1, slot=i, state="complete") for i in (1, 2)]
    ops, book, _ = decide(job(2, generation=2, force=1), tasks, {**RUN1, "state": "complete"})
    assert summary(ops) == [("create", 1, 2), ("create", 2, 2)]
    assert book["trigger"] == "force"
    assert book["runs"] == [{"run": 1, "state": "complete", "succeeded": 2, "failed": 0,
                             "startedAt": NOW - 500, "completedAt": NOW}]


def test_a_leader_whose_status_write_was_lost_resumes_the_tasks_run() -> None:
    tasks = [jt("a", 2, slot=1, version=2), jt("old", 1, slot=1, state="complete")]
    ops, book, _ = decide(job(2, generation=2), tasks, RUN1)
    assert summary(ops) == [("create", 2, 2)]
    assert book["run"] == 2


def test_only_the_last_runs_keep_their_tasks() -> None:
    tasks = [jt("r1", 1, slot=1, state="complete"), jt("r2", 2, slot=1, state="complete"),
             jt("r3", 3, slot=1, version=3)]
    ops, _, _ = decide(job(1, generation=3, runs=2), tasks,
                       {**RUN1, "run": 3, "generation": 3})
    assert summary(ops) == [("delete", "r1", None)]


def test_tasks_without_a_run_are_stopped() -> None:
    ops, _, _ = decide(job(1), [task("plain", slot=1, node="n1")], RUN1)
    assert ("update", "plain", "shutdown") in summary(ops)


# -- global jobs ----------------------------------------------------------------------

def test_global_job_runs_once_per_eligible_node() -> None:
    svc = job(mode="global-job")
    ops, book, _ = decide(svc, [])
    assert summary(ops) == [("create", "n1", 1), ("create", "n2", 1), ("create", "n3", 1)]
    tasks = [jt("a", 1, node="n1", state="complete"), jt("b", 1, node="n2"),
             jt("c", 1, node="n3", state="complete")]
    ops, book, _ = decide(svc, tasks, book)
    assert ops == []
    js = status(svc, tasks, book)["job"]
    assert (js["total"], js["succeeded"], js["running"]) == (3, 2, 1)


def test_a_node_joining_after_the_run_completed_gets_nothing() -> None:
    svc = job(mode="global-job")
    tasks = [jt("a", 1, node="n1", state="complete")]
    nodes = [node("n1"), node("n2")]
    ops, _, _ = decide(svc, tasks, {**RUN1, "state": "complete"}, nodes=nodes)
    assert ops == []
    ops, _, _ = decide(svc, tasks, {**RUN1, "state": "running"}, nodes=nodes)
    assert summary(ops) == [("create", "n2", 1)]  # the run still going: it takes the node


# -- schedules ------------------------------------------------------------------------

def utc(text: str) -> float:
    return float(calendar.timegm(datetime.fromisoformat(text).timetuple()))


T0 = utc("2026-12-02T10:02:30")


def test_a_scheduled_job_waits_for_its_tick() -> None:
    svc = job(1, schedule="*/5 * * * *")
    ops, book, requeue = decide(svc, [], now=T0)
    assert ops == [] and book["nextRunAt"] == utc("2026-12-02T10:05:00") and requeue == 150
    ops, book, requeue = decide(svc, [], book, now=utc("2026-12-02T10:05:00"))
    assert summary(ops) == [("create", 1, 1)]
    assert (book["trigger"], book["scheduledAt"]) == ("schedule", utc("2026-12-02T10:05:00"))
    assert book["nextRunAt"] == utc("2026-12-02T10:10:00") and requeue == 300


def test_a_tick_during_a_run_is_skipped() -> None:
    svc = job(1, schedule="*/5 * * * *")
    book = {**RUN1, "trigger": "schedule", "nextRunAt": utc("2026-12-02T10:05:00")}
    ops, book, _ = decide(svc, [jt("a", 1, slot=1)], book, now=utc("2026-12-02T10:06:00"))
    assert ops == [] and book["run"] == 1
    assert (book["skipped"], book["lastSkipped"]) == (1, utc("2026-12-02T10:05:00"))
    assert book["nextRunAt"] == utc("2026-12-02T10:10:00")


def test_ticks_missed_while_no_leader_ran_start_one_run() -> None:
    svc = job(1, schedule="*/5 * * * *")
    book = {**RUN1, "state": "complete", "nextRunAt": utc("2026-12-02T10:05:00")}
    tasks = [jt("a", 1, slot=1, state="complete")]
    ops, book, _ = decide(svc, tasks, book, now=utc("2026-12-02T10:21:00"))
    assert summary(ops) == [("create", 1, 2)]
    assert (book["skipped"], book["scheduledAt"]) == (3, utc("2026-12-02T10:20:00"))


def test_editing_a_scheduled_job_after_its_run_does_not_fire_it() -> None:
    svc = job(1, schedule="0 * * * *", generation=2)
    book = {**RUN1, "state": "complete", "nextRunAt": utc("2026-12-02T11:00:00")}
    ops, book, _ = decide(svc, [jt("a", 1, slot=1, state="complete")], book, now=T0)
    assert ops == [] and book["run"] == 1 and book["generation"] == 2


# -- a simulated replicated job: never more than maxConcurrent going ----------------------

@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(0, 5), st.integers(0, 2**32))
def test_never_more_than_max_concurrent_and_every_index_completes(
        replicas: int, limit: int, seed: int) -> None:
    rng = random.Random(seed)
    svc = job(replicas, max_concurrent=limit, restart={"condition": "on-failure", "delay": "0s"})
    stored: dict[str, Resource] = {}
    book: Resource | None = None
    new_id = ids()
    for step in range(400):
        tasks = [Task.of(t) for t in stored.values()]
        d = reconcile_service(svc, tasks, NODES, NOW + step, new_id=new_id, eligible=in_eu,
                              job=book)
        book = d.job
        for op in d.ops:
            if isinstance(op, DeleteTask):
                stored.pop(op.task["metadata"]["name"])
            elif isinstance(op, (CreateTask, UpdateTask)):
                t = op.task
                if isinstance(op, CreateTask):
                    t = {**t, "spec": {**t["spec"], "nodeName": "n1"},
                         "status": {"state": "running", "timestamp": NOW + step}}
                stored[t["metadata"]["name"]] = t
        going = [t for t in stored.values() if t["status"]["state"] == "running"]
        assert len(going) <= (limit or replicas)
        for t in going:  # the agent: some end, most of them well
            if rng.random() < 0.5:
                t["status"] = {"state": rng.choice(["complete", "complete", "failed"]),
                               "timestamp": NOW + step}
        js = service_status(svc, [Task.of(t) for t in stored.values()], NODES,
                            eligible=in_eu, job=book, now=NOW + step)["job"]
        if js["state"] == "complete":
            break
    assert js["state"] == "complete" and js["succeeded"] == replicas
    done = {t["spec"]["slot"] for t in stored.values() if t["status"]["state"] == "complete"}
    assert done == set(range(1, replicas + 1))


def test_the_next_tick_stands_across_passes_before_the_first_run() -> None:
    svc = job(1, schedule="*/5 * * * *")
    _, book, _ = decide(svc, [], now=T0)
    stored = status(svc, [], book)["job"]
    _, again, _ = decide(svc, [], stored, now=T0 + 100)
    assert again["nextRunAt"] == book["nextRunAt"] == utc("2026-12-02T10:05:00")
