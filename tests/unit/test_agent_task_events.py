"""Which Event a task's state change makes on its node (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from kubeless.store.events import ttl_seconds
from kubeless_agent.task_events import TaskEvent, task_event

TASK: dict[str, Any] = {"metadata": {"name": "k3v9", "namespace": "default"},
                        "spec": {"serviceName": "web", "slot": 2}}


@pytest.mark.parametrize("previous, report, expected", [
    ("starting", {"state": "running", "containerId": "0123456789abcdef"},
     TaskEvent("Normal", "Started", "web.2 started (container 0123456789ab)")),
    ("running", {"state": "complete", "exitCode": 0}, TaskEvent("Normal", "Completed", "web.2 exited 0")),
    ("running", {"state": "failed", "exitCode": 3, "error": "task: non-zero exit (3)"},
     TaskEvent("Warning", "Failed", "web.2 failed (exit code 3: task: non-zero exit (3))")),
    ("running", {"state": "failed", "error": "container unhealthy"},
     TaskEvent("Warning", "Unhealthy", "web.2 failed its healthcheck: the container was stopped")),
    ("accepted", {"state": "rejected", "error": "image not found"},
     TaskEvent("Warning", "Rejected", "web.2 could not start: image not found")),
    ("running", {"state": "failed"}, TaskEvent("Warning", "Failed", "web.2 failed (no reason given)")),
    ("running", {"state": "shutdown", "exitCode": 0}, TaskEvent("Normal", "Stopped", "web.2 stopped")),
    ("accepted", {"state": "starting"}, None),
    ("running", {"state": "running"}, None),
])
def test_state_changes(previous: str, report: dict[str, Any], expected: TaskEvent | None) -> None:
    assert task_event(TASK, previous, report) == expected


def test_no_task_no_event() -> None:
    assert task_event(None, "starting", {"state": "running"}) is None


@pytest.mark.parametrize("text, seconds", [("1h", 3600), ("90m", 5400), ("0", 0), ("0s", 0),
                                           ("2", 2), ("30s", 30)])
def test_ttl(text: str, seconds: int) -> None:
    assert ttl_seconds(text) == seconds


@pytest.mark.parametrize("text", ["1s", "soon", "-5", "400d"])
def test_ttl_refused_with_one_line(text: str) -> None:
    with pytest.raises(ValueError, match="--events-ttl") as err:
        ttl_seconds(text)
    assert "\n" not in str(err.value)
