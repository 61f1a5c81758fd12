"""Progress toward what was asked (pure), and how the CLI draws it."""

from __future__ import annotations

from typing import Any

import pytest

from kubeless.api.progress import Line, Progress, Target, progress
from kubeless.api.tasks import Task
from kubeless_cli.progress import Printer


def svc(replicas: int = 2, generation: int = 2, **status: Any) -> dict[str, Any]:
    base = {"observedGeneration": generation,
            "updateStatus": {"generation": generation, "state": "completed"}}
    base.update(status)
    return {"metadata": {"name": "web", "generation": generation},
            "spec": {"replicas": replicas, "template": {"image": "web:2"}}, "status": base}


def task(slot: int, state: str = "running", version: int = 2, desired: str = "running",
         tid: str = "", **status: Any) -> Task:
    return Task.of({"metadata": {"name": tid or f"t{slot}{version}{state}"},
                    "spec": {"serviceName": "web", "slot": slot, "specVersion": version,
                             "desiredState": desired, "nodeName": "n1"},
                    "status": {"state": state, **status}})


def test_converged_when_every_slot_runs_once_and_the_controllers_saw_it() -> None:
    shown = progress(svc(), [task(1), task(2)], Target(2))
    assert shown.done and shown.failure is None
    assert shown.overall == "overall progress: 2 out of 2 tasks"
    assert shown.lines == (Line("1/2", "running"), Line("2/2", "running"))
    assert shown.notes == ("verify: Service converged",)


@pytest.mark.parametrize("service, tasks, why", [
    (svc(observedGeneration=1), [task(1), task(2)], "replication has not seen it"),
    (svc(updateStatus={"generation": 1, "state": "completed"}), [task(1), task(2)], "nor the rollout"),
    (svc(updateStatus={"generation": 2, "state": "updating"}), [task(1), task(2)], "rolling"),
    (svc(), [task(1), task(2, "starting")], "a slot starts"),
    (svc(), [task(1)], "a slot is empty"),
    (svc(), [task(1), task(2), task(2, version=1, tid="old")], "a start-first pair remains"),
])
def test_not_yet(service: dict[str, Any], tasks: list[Task], why: str) -> None:
    shown = progress(service, tasks, Target(2))
    assert not shown.done and shown.failure is None, why


def test_a_pending_slot_says_why() -> None:
    shown = progress(svc(), [task(1), task(2, "pending", message="no suitable node (1/3: x)")],
                     Target(2))
    assert shown.lines[1] == Line("2/2", "pending", "no suitable node (1/3: x)")


@pytest.mark.parametrize("update, rollback, failure", [
    ({"generation": 2, "state": "paused", "message": "update paused on failure of task t"},
     False, "update paused: update paused on failure of task t"),
    ({"generation": 2, "state": "rollback_completed", "rollback": True,
      "reason": "failure of task t"}, False, "update rolled back: failure of task t"),
    ({"generation": 2, "state": "rollback_completed", "rollback": True}, True, None),
])
def test_pauses_and_rollbacks(update: dict[str, Any], rollback: bool, failure: str | None) -> None:
    shown = progress(svc(updateStatus=update), [task(1), task(2)], Target(2, rollback))
    assert shown.failure == failure


def test_an_invalid_service_fails_at_once() -> None:
    shown = progress(svc(conditions=[{"type": "Valid", "status": "False", "message": "bad"}]),
                     [], Target(2))
    assert shown.failure == "invalid: bad"


def job(**status: Any) -> dict[str, Any]:
    doc = svc(job=status)
    doc["spec"]["mode"] = "replicated-job"
    return doc


def test_jobs_wait_for_the_run_after_the_write() -> None:
    assert not progress(job(run=1, state="complete"), [], Target(2, run_before=1)).done
    running = progress(job(run=2, state="running", total=6, succeeded=3, running=2), [],
                       Target(2, run_before=1))
    assert running.overall == "job progress: 3 out of 6 complete" and not running.done
    assert running.notes == ("active tasks: 2 running",)
    assert progress(job(run=1, state="complete", total=6, succeeded=6), [], Target(1)).done
    failed = progress(job(run=1, state="failed", failed=2), [], Target(1))
    assert failed.failure == "job run 1 failed: 2 task(s) failed"
    scheduled = job(run=0)
    scheduled["spec"]["schedule"] = "*/5 * * * *"
    assert progress(scheduled, [], Target(1)).done


def test_plain_output_prints_each_line_once_when_it_changes(capsys: pytest.CaptureFixture[str]) -> None:
    printer = Printer("web", tty=False)
    printer.show(Progress("overall progress: 0 out of 1 tasks", (Line("1/1", "pending"),)))
    printer.show(Progress("overall progress: 0 out of 1 tasks", (Line("1/1", "pending"),)))
    printer.show(Progress("overall progress: 1 out of 1 tasks", (Line("1/1", "running"),),
                          done=True, notes=("verify: Service converged",)))
    assert capsys.readouterr().out.splitlines() == [
        "overall progress: 0 out of 1 tasks", "1/1: pending",
        "overall progress: 1 out of 1 tasks", "1/1: running", "verify: Service converged"]


def test_a_terminal_is_redrawn_in_place(capsys: pytest.CaptureFixture[str]) -> None:
    printer = Printer("web", tty=True)
    printer.show(Progress("overall progress: 0 out of 1 tasks", (Line("1/1", "pending"),)))
    printer.show(Progress("overall progress: 1 out of 1 tasks", (Line("1/1", "running"),)))
    out = capsys.readouterr().out
    assert out.count("\x1b[2F") == 1  # back up over the two lines drawn first
    assert out.endswith("\x1b[2Koverall progress: 1 out of 1 tasks\n\x1b[2K1/1: running\n")
