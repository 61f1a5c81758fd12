"""kubeless.api.conditions: what `kubeless wait --for=condition=X` waits for, on plain data."""

from __future__ import annotations

from typing import Any

import pytest

from kubeless.api.conditions import UnknownCondition, condition_check

Resource = dict[str, Any]


def svc(generation: int = 2, *, mode: str | None = None, **status: Any) -> Resource:
    spec: Resource = {"replicas": 3, "template": {"image": "web:1"}}
    if mode:
        spec["mode"] = mode
    return {"kind": "Service", "metadata": {"name": "web", "generation": generation},
            "spec": spec, "status": status}


SETTLED = {"replicas": 3, "runningReplicas": 3, "observedGeneration": 2,
           "updateStatus": {"state": "completed", "generation": 2}}


@pytest.mark.parametrize("case, status, met", [
    ("settled", SETTLED, True),
    ("more running than wanted (start-first pair)", {**SETTLED, "runningReplicas": 4}, True),
    ("a rollout under way", {**SETTLED, "updateStatus": {"state": "updating",
                                                         "generation": 2}}, False),
    ("a rollout paused", {**SETTLED, "updateStatus": {"state": "paused", "generation": 2}},
     False),
    ("a rollback done", {**SETTLED, "updateStatus": {"state": "rollback_completed",
                                                     "generation": 2}}, True),
    ("replication has not seen the generation", {**SETTLED, "observedGeneration": 1}, False),
    ("the rollout controller has not seen it", {**SETTLED, "updateStatus": {
        "state": "completed", "generation": 1}}, False),
    ("no status yet", {}, False),
    ("no rollout controller (no updateStatus)", {**SETTLED, "updateStatus": None}, True),
    ("too few running", {**SETTLED, "runningReplicas": 2}, False),
    ("invalid", {**SETTLED, "conditions": [{"type": "Valid", "status": "False",
                                            "message": "bad"}]}, False),
    ("a true condition is fine", {**SETTLED, "conditions": [{"type": "Valid",
                                                             "status": "True"}]}, True),
])
def test_service_available(case: str, status: Resource, met: bool) -> None:
    verdict = condition_check("Service", "Available")(svc(**status))
    assert (verdict.met, verdict.failed) == (met, False), (case, verdict)
    assert verdict.met or verdict.reason, case


@pytest.mark.parametrize("case, job, generation, met, failed", [
    ("complete", {"state": "complete"}, 2, True, False),
    ("running", {"state": "running"}, 2, False, False),
    ("not started", {}, 2, False, False),
    ("complete, but an older generation's run", {"state": "complete"}, 1, False, False),
    ("failed", {"state": "failed", "run": 1, "failed": 2, "succeeded": 1, "total": 3}, 2,
     False, True),
])
def test_job_complete(case: str, job: Resource, generation: int, met: bool,
                      failed: bool) -> None:
    s = svc(mode="replicated-job", replicas=3, observedGeneration=generation, job=job)
    verdict = condition_check("Service", "complete")(s)
    assert (verdict.met, verdict.failed) == (met, failed), (case, verdict)
    if failed:
        assert verdict.reason == "job run 1 failed (2 failed, 1 of 3 succeeded)"


def test_node_ready() -> None:
    ready = condition_check("Node", "READY")
    assert ready({"status": {"state": "ready"}}).met
    down = ready({"status": {"state": "down", "message": "heartbeat lease expired"}})
    assert (down.met, down.reason) == (False, "heartbeat lease expired")


@pytest.mark.parametrize("kind, condition, message", [
    ("Service", "Ready", "Service has no condition Ready (known: Available, Complete)"),
    ("Node", "Available", "Node has no condition Available (known: Ready)"),
    ("Secret", "Ready", "Secret has no condition Ready; wait on a Secret with --for=delete"),
])
def test_unknown_conditions(kind: str, condition: str, message: str) -> None:
    with pytest.raises(UnknownCondition, match=message.replace("(", r"\(").replace(")", r"\)")):
        condition_check(kind, condition)


def test_the_wrong_condition_for_the_mode() -> None:
    with pytest.raises(UnknownCondition, match="is a job: wait for condition=Complete"):
        condition_check("Service", "Available")(svc(mode="global-job"))
    with pytest.raises(UnknownCondition, match="is not a job: wait for condition=Available"):
        condition_check("Service", "Complete")(svc(**SETTLED))
