"""The worker's pure decisions: the next runtime call, and reports that never go back."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeless.api.tasks import TASK_STATES, is_terminal, state_index
from kubeless_agent.worker import TaskRecord, make_report, moves_forward, next_action, stop_grace


def task(desired: str = "running", grace: str | None = None) -> dict[str, Any]:
    template: dict[str, Any] = {"image": "web:1"}
    if grace is not None:
        template["stopGracePeriod"] = grace
    return {"metadata": {"name": "t1"}, "spec": {"desiredState": desired, "template": template}}


def rec(desired: str | None, **flags: Any) -> TaskRecord:
    return TaskRecord(task=task(desired or "running"), assigned=desired is not None, **flags)


@pytest.mark.parametrize("name, record, action", [
    ("new assignment starts", rec("running"), "start"),
    ("started and running: nothing", rec("running", started=True, state="running"), "none"),
    ("failed stays failed (controllers replace it)",
     rec("running", started=True, state="failed"), "none"),
    ("terminal from a previous process is not restarted", rec("running", state="complete"), "none"),
    ("shutdown of a running task stops it", rec("shutdown", started=True, state="running"), "stop"),
    ("remove of a running task stops it", rec("remove", started=True, state="running"), "stop"),
    ("shutdown after stop: nothing",
     rec("shutdown", started=True, stopped=True, state="shutdown"), "none"),
    ("shutdown before start reports shutdown", rec("shutdown"), "report-shutdown"),
    ("shutdown of a failed task: nothing", rec("shutdown", started=True, state="failed"), "none"),
    ("deleted while running: stop", rec(None, started=True, state="running"), "stop"),
    ("deleted after stop: remove", rec(None, started=True, stopped=True), "remove"),
    ("deleted and failed: remove", rec(None, started=True, state="failed"), "remove"),
    ("deleted and removed: forget", rec(None, started=True, stopped=True, removed=True), "forget"),
    ("deleted, never started: forget", rec(None), "forget"),
    ("running with its files: nothing", rec("running", started=True, state="running",
                                            files=True), "none"),
    ("stopped for good: its files go", rec("running", started=True, state="failed",
                                           files=True), "drop-files"),
    ("shut down: its files go", rec("shutdown", started=True, stopped=True, state="shutdown",
                                    files=True), "drop-files"),
    ("deleted and removed: its files go, then forget",
     rec(None, started=True, stopped=True, removed=True, files=True), "drop-files"),
    ("deleted while running: stop before the files go",
     rec(None, started=True, state="running", files=True), "stop"),
])
def test_next_action(name: str, record: TaskRecord, action: str) -> None:
    assert next_action(record) == action, name


def test_desired_state_defaults_to_running() -> None:
    r = TaskRecord(task={"metadata": {"name": "t"}, "spec": {}}, assigned=True)
    assert next_action(r) == "start"


@given(st.lists(st.sampled_from(TASK_STATES), min_size=1, max_size=30))
def test_accepted_reports_never_go_back_nor_rewrite_an_end(states: list[str]) -> None:
    current: str | None = None
    for s in states:
        if moves_forward(current, s):
            assert current is None or state_index(s) >= state_index(current)
            assert not is_terminal(current) or s == current
            current = s
    assert current is not None
    ended = [s for s in states if is_terminal(s)]
    if ended:  # the first end reported is the last word
        assert current == ended[0]
    else:
        assert state_index(current) == max(state_index(s) for s in states)


@pytest.mark.parametrize("current, new, ok", [
    (None, "accepted", True), ("accepted", "running", True), ("running", "running", True),
    ("running", "accepted", False), ("failed", "shutdown", False), ("running", "shutdown", True),
    ("complete", "running", False), ("shutdown", "shutdown", True),
    ("shutdown", "failed", False),  # a stopped container found again: 137 is not a failure
    ("shutdown", "rejected", False), ("complete", "failed", False), ("failed", "failed", True),
])
def test_moves_forward(current: str | None, new: str, ok: bool) -> None:
    assert moves_forward(current, new) is ok


def test_make_report_has_every_field_and_keeps_the_container() -> None:
    first = make_report("n1", {"state": "running", "containerId": "c1",
                               "ports": [{"target": 80, "published": 8080, "protocol": "tcp"}]},
                        None, 10.0)
    assert set(first) == {"state", "message", "error", "timestamp", "containerId", "exitCode",
                          "ports", "nodeName"}
    assert first["message"] == "started" and first["nodeName"] == "n1"
    later = make_report("n1", {"state": "shutdown"}, first, 11.0)
    assert later["containerId"] == "c1" and later["ports"] == first["ports"]
    assert later["timestamp"] == 11.0 and later["error"] is None


def test_stop_grace() -> None:
    assert stop_grace(task(grace="1m30s")) == 90.0
    assert stop_grace(task()) == 10.0
    assert stop_grace(task(grace="nonsense")) == 10.0
    assert stop_grace(None) == 10.0
